//! The gateway's data-plane decisions, sans-IO: which client a packet from the TUN device goes
//! to, whether a packet from a client may pass, and the proxy-IP translation for DNS resources.
//!
//! - [`GatewayRouter::inbound`]: a packet decrypted from a client. Its source must be that
//!   client's tunnel address; a destination that is one of the client's proxy IPs is rewritten
//!   to the address the name resolved to here; then the [`PacketFilter`] checks the *real*
//!   destination, protocol and port against the client's grants. Anything else is dropped,
//!   logged at DEBUG and counted.
//! - [`GatewayRouter::outbound`]: a packet from the TUN device (a reply the kernel routed back
//!   to a tunnel address). It goes to the client with that address; replies of translated
//!   flows get the proxy IP back as their source.
//!
//! Translated flows are remembered (client port, real address and port → proxy IP), so two
//! names that resolve to one address, or two proxy IPs of one name, each get their own replies
//! right. Only replies of a remembered flow are rewritten: a reply of a flow the client started
//! by the real address (a CIDR resource covering a DNS resource's address) keeps its source.
//! The table has no clock: the caller calls [`GatewayRouter::tick`] now and then, and a flow
//! unused for [`FLOW_IDLE_TICKS`] ticks is forgotten.
//!
//! An ICMP error a client sends must be about a packet that client received: the quoted
//! packet's destination is the client's own address and its source is where the error goes.
//! Otherwise a client could make the site's hosts (or their connection tracking) act on an
//! error about another client's flow.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ember_engine::PeerId;
use ember_io::routes::Prefix;

pub use crate::filter::GrantKey;
use crate::filter::{Denied, GrantedResource, PacketFilter, Rule};
use crate::names::MAX_NAMES_PER_CLIENT;
use ember_packet::translate::{self, Endpoints, Rewrite};

/// Ticks without a packet after which a translated flow is forgotten.
pub const FLOW_IDLE_TICKS: u64 = 10;
/// Translated flows remembered at most; replies of flows beyond this are not rewritten.
pub const MAX_FLOWS: usize = 65_536;

/// What a grant allows, ready for the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGrant {
    /// Real addresses: the resource's CIDR or IP, or what its name resolved to.
    pub destinations: Vec<Prefix>,
    /// Addresses inside `destinations` the grant does not reach (the internet resource's
    /// private, link-local and metadata ranges, and the gateway's own addresses).
    pub excluded: Vec<Prefix>,
    /// Empty: every protocol and port.
    pub rules: Vec<Rule>,
    /// The client's proxy IPs and the real address each stands for (DNS resources).
    pub proxies: Vec<(IpAddr, IpAddr)>,
}

/// Packets counted by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub inbound_forwarded: u64,
    pub inbound_translated: u64,
    pub outbound_forwarded: u64,
    pub outbound_translated: u64,
    /// Not a packet the gateway understands (either way).
    pub dropped_malformed: u64,
    /// From a client, with a source other than its tunnel address (or an unknown peer).
    pub dropped_spoofed: u64,
    /// From a client, to an address outside its grants.
    pub dropped_no_resource: u64,
    /// From a client, to a granted address with a protocol or port outside the rules.
    pub dropped_not_allowed: u64,
    /// From the TUN device, to no client of this gateway.
    pub dropped_no_client: u64,
}

#[derive(Debug, Default)]
pub struct GatewayRouter {
    clients: HashMap<PeerId, Client>,
    by_address: HashMap<IpAddr, PeerId>,
    filter: PacketFilter,
    /// (client, protocol, client port, real address, real port) → proxy IP.
    flows: HashMap<FlowKey, FlowEntry>,
    tick: u64,
    stats: RouterStats,
}

#[derive(Debug)]
struct Client {
    addresses: Vec<IpAddr>,
    grants: BTreeMap<GrantKey, ResourceGrant>,
    /// Grants of single DNS names (keys with a domain), at most [`MAX_NAMES_PER_CLIENT`].
    names: usize,
    /// Proxy IP → real address, from every DNS grant, and the grant that claimed it first.
    proxies: HashMap<IpAddr, (IpAddr, GrantKey)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    peer: PeerId,
    protocol: u8,
    client_port: u16,
    real: IpAddr,
    real_port: u16,
}

#[derive(Debug, Clone, Copy)]
struct FlowEntry {
    proxy: IpAddr,
    last_used: u64,
}

impl GatewayRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one grant of the client `peer`, whose tunnel addresses are `addresses`.
    /// Only this grant is updated in the filter and the translation. Returns `false` (and
    /// changes nothing) for a new DNS name beyond [`MAX_NAMES_PER_CLIENT`].
    pub fn set_grant(
        &mut self,
        peer: PeerId,
        addresses: &[IpAddr],
        key: GrantKey,
        grant: ResourceGrant,
    ) -> bool {
        if !self.may_add(peer, &key) {
            return false;
        }
        let client = self.clients.entry(peer).or_insert_with(|| Client {
            addresses: Vec::new(),
            grants: BTreeMap::new(),
            names: 0,
            proxies: HashMap::new(),
        });
        if client.addresses != addresses {
            for old in &client.addresses {
                self.by_address.remove(old);
            }
            self.filter.remove_client(&client.addresses);
            client.addresses = addresses.to_vec();
            for (key, grant) in &client.grants {
                self.filter
                    .set_grant(addresses, key.clone(), granted_resource(key, grant));
            }
        }
        for address in addresses {
            self.by_address.insert(*address, peer);
        }
        self.filter
            .set_grant(addresses, key.clone(), granted_resource(&key, &grant));
        let mut lost = release_proxies(client, &key);
        for (proxy, real) in &grant.proxies {
            // The newest grant naming a proxy IP decides what it stands for: the client's stub
            // gives the addresses of a name it forgot to the next name.
            if let Some((before, _)) = client.proxies.insert(*proxy, (*real, key.clone()))
                && before != *real
            {
                lost.push((*proxy, before));
            }
        }
        lost.retain(|(proxy, real)| client.proxies.get(proxy).map(|(r, _)| r) != Some(real));
        if key.domain.is_some() && !client.grants.contains_key(&key) {
            client.names += 1;
        }
        client.grants.insert(key, grant);
        self.end_flows(peer, &lost);
        true
    }

    /// Whether `set_grant` would take this grant: a client holds at most
    /// [`MAX_NAMES_PER_CLIENT`] DNS names (renewing one it holds is always possible).
    pub fn may_add(&self, peer: PeerId, key: &GrantKey) -> bool {
        let Some(client) = self.clients.get(&peer) else {
            return true;
        };
        key.domain.is_none()
            || client.grants.contains_key(key)
            || client.names < MAX_NAMES_PER_CLIENT
    }

    /// DNS names the client `peer` holds grants for.
    pub fn names(&self, peer: PeerId) -> usize {
        self.clients.get(&peer).map_or(0, |c| c.names)
    }

    /// Withdraws grants of a client: those of the listed resources (every name of a DNS
    /// resource), or all of them when `resource_ids` is empty. Returns whether the client has
    /// grants left; without any it is forgotten.
    pub fn revoke(&mut self, peer: PeerId, resource_ids: &[String]) -> bool {
        let Some(client) = self.clients.get(&peer) else {
            return false;
        };
        let keys: Vec<GrantKey> = client
            .grants
            .keys()
            .filter(|key| resource_ids.is_empty() || resource_ids.contains(&key.resource_id))
            .cloned()
            .collect();
        for key in &keys {
            self.remove(peer, key);
        }
        self.forget_if_empty(peer)
    }

    /// Withdraws one grant (e.g. when it expires). Returns whether the client has grants left.
    pub fn revoke_grant(&mut self, peer: PeerId, key: &GrantKey) -> bool {
        self.remove(peer, key);
        self.forget_if_empty(peer)
    }

    /// The clients with at least one grant.
    pub fn clients(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.clients.keys().copied()
    }

    pub fn has_grant(&self, peer: PeerId, key: &GrantKey) -> bool {
        self.clients
            .get(&peer)
            .is_some_and(|c| c.grants.contains_key(key))
    }

    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Translated flows currently remembered.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Ages the flow table by one step and forgets flows idle for [`FLOW_IDLE_TICKS`].
    pub fn tick(&mut self) {
        self.tick += 1;
        let now = self.tick;
        self.flows
            .retain(|_, flow| now.saturating_sub(flow.last_used) < FLOW_IDLE_TICKS);
    }

    /// A packet decrypted from `peer`: `true` to write it (possibly rewritten) to the TUN device.
    pub fn inbound(&mut self, peer: PeerId, packet: &mut [u8]) -> bool {
        let Some(summary) = translate::summarize(packet) else {
            self.stats.dropped_malformed += 1;
            tracing::debug!(
                ?peer,
                len = packet.len(),
                "Dropped a malformed packet from a client"
            );
            return false;
        };
        let flow = summary.endpoints;
        let Some(client) = self.clients.get(&peer) else {
            self.stats.dropped_spoofed += 1;
            tracing::debug!(?peer, "Dropped a packet from a client without grants");
            return false;
        };
        if !client.addresses.contains(&flow.source) {
            self.stats.dropped_spoofed += 1;
            tracing::debug!(?peer, source = %flow.source, "Dropped a packet whose source is not the client's tunnel address");
            return false;
        }

        if let Some(quoted) = &summary.quoted
            && (!client.addresses.contains(&quoted.destination)
                || quoted.source != flow.destination)
        {
            self.stats.dropped_spoofed += 1;
            tracing::debug!(
                ?peer,
                "Dropped an ICMP error about a packet the client did not receive"
            );
            return false;
        }

        // Proxy IP → real address, for the packet itself and for what an ICMP error quotes.
        let real = client.proxies.get(&flow.destination).map(|(real, _)| *real);
        let quoted_real = summary
            .quoted
            .and_then(|q| client.proxies.get(&q.source).map(|(real, _)| *real));
        let translated = real.is_some() || quoted_real.is_some();
        if translated {
            let rewrite = Rewrite {
                destination: real,
                quoted_source: quoted_real,
                ..Rewrite::default()
            };
            if let Err(e) = translate::rewrite(packet, rewrite) {
                self.stats.dropped_malformed += 1;
                tracing::debug!(?peer, "Dropped a packet that cannot be translated: {e}");
                return false;
            }
        }

        match self.filter.check(packet) {
            Ok(_) => {}
            Err(denied) => {
                match denied {
                    Denied::Malformed => self.stats.dropped_malformed += 1,
                    Denied::UnknownSource(_) => self.stats.dropped_spoofed += 1,
                    Denied::NoResource(_) => self.stats.dropped_no_resource += 1,
                    Denied::NotAllowed { .. } => self.stats.dropped_not_allowed += 1,
                }
                tracing::debug!(
                    ?peer,
                    protocol = flow.protocol,
                    source_port = flow.source_port,
                    destination = %real.unwrap_or(flow.destination),
                    destination_port = flow.destination_port,
                    "Dropped a packet from a client: {denied}"
                );
                return false;
            }
        }

        if let Some(real) = real {
            self.remember_flow(peer, &flow, real, flow.destination);
        }
        self.stats.inbound_forwarded += 1;
        if translated {
            self.stats.inbound_translated += 1;
        }
        true
    }

    /// A packet read from the TUN device: the client it goes to, the source rewritten back to
    /// the proxy IP for translated flows; `None` drops it.
    pub fn outbound(&mut self, packet: &mut [u8]) -> Option<PeerId> {
        let Some(summary) = translate::summarize(packet) else {
            self.stats.dropped_malformed += 1;
            tracing::trace!(
                len = packet.len(),
                "Dropped a malformed packet from the TUN device"
            );
            return None;
        };
        let flow = summary.endpoints;
        let Some(&peer) = self.by_address.get(&flow.destination) else {
            // The kernel also sends its own chatter (IPv6 router solicitations…) into the device.
            self.stats.dropped_no_client += 1;
            tracing::trace!(destination = %flow.destination, "No client for a packet from the TUN device");
            return None;
        };
        let Some(client) = self.clients.get(&peer) else {
            self.stats.dropped_no_client += 1;
            return None;
        };

        let rewrite = if client.proxies.is_empty() {
            Rewrite::default()
        } else if let Some(quoted) = summary.quoted {
            // An ICMP error about a packet the client sent: (client → real) as the LAN saw it.
            let proxy = proxy_for(
                &mut self.flows,
                self.tick,
                peer,
                &quoted,
                Direction::ClientSent,
            );
            Rewrite {
                source: proxy.filter(|_| flow.source == quoted.destination),
                quoted_destination: proxy,
                ..Rewrite::default()
            }
        } else {
            Rewrite {
                source: proxy_for(&mut self.flows, self.tick, peer, &flow, Direction::Reply),
                ..Rewrite::default()
            }
        };
        if rewrite != Rewrite::default() {
            if let Err(e) = translate::rewrite(packet, rewrite) {
                self.stats.dropped_malformed += 1;
                tracing::debug!(?peer, "Dropped a reply that cannot be translated: {e}");
                return None;
            }
            self.stats.outbound_translated += 1;
        }
        self.stats.outbound_forwarded += 1;
        Some(peer)
    }

    fn remember_flow(&mut self, peer: PeerId, flow: &Endpoints, real: IpAddr, proxy: IpAddr) {
        let key = FlowKey {
            peer,
            protocol: flow.protocol,
            client_port: flow.source_port,
            real,
            real_port: flow.destination_port,
        };
        let tick = self.tick;
        if let Some(entry) = self.flows.get_mut(&key) {
            entry.proxy = proxy;
            entry.last_used = tick;
        } else if self.flows.len() < MAX_FLOWS {
            self.flows.insert(
                key,
                FlowEntry {
                    proxy,
                    last_used: tick,
                },
            );
        }
    }

    /// Removes one grant from the filter and the translation; flows through its proxy IPs end.
    fn remove(&mut self, peer: PeerId, key: &GrantKey) {
        let Some(client) = self.clients.get_mut(&peer) else {
            return;
        };
        let lost = release_proxies(client, key);
        if client.grants.remove(key).is_none() {
            return;
        }
        if key.domain.is_some() {
            client.names = client.names.saturating_sub(1);
        }
        self.filter.remove_grant(&client.addresses, key);
        self.end_flows(peer, &lost);
    }

    /// Forgets a client without grants. Returns whether it has grants left.
    fn forget_if_empty(&mut self, peer: PeerId) -> bool {
        let Some(client) = self.clients.get(&peer) else {
            return false;
        };
        if !client.grants.is_empty() {
            return true;
        }
        if let Some(client) = self.clients.remove(&peer) {
            for address in &client.addresses {
                self.by_address.remove(address);
            }
            self.filter.remove_client(&client.addresses);
        }
        self.flows.retain(|key, _| key.peer != peer);
        false
    }

    /// Flows of `peer` through proxy IPs that no longer stand for the same address end.
    fn end_flows(&mut self, peer: PeerId, lost: &[(IpAddr, IpAddr)]) {
        if lost.is_empty() {
            return;
        }
        self.flows
            .retain(|key, flow| key.peer != peer || !lost.contains(&(flow.proxy, key.real)));
    }
}

/// Drops the proxy IPs `key` claimed; returns them with the address each stood for.
fn release_proxies(client: &mut Client, key: &GrantKey) -> Vec<(IpAddr, IpAddr)> {
    let Some(grant) = client.grants.get(key) else {
        return Vec::new();
    };
    let mut released = Vec::new();
    for (proxy, _) in &grant.proxies {
        if let Some((real, owner)) = client.proxies.get(proxy)
            && owner == key
        {
            released.push((*proxy, *real));
            client.proxies.remove(proxy);
        }
    }
    released
}

fn granted_resource(key: &GrantKey, grant: &ResourceGrant) -> GrantedResource {
    GrantedResource {
        id: key.resource_id.clone(),
        destinations: grant.destinations.clone(),
        excluded: grant.excluded.clone(),
        rules: grant.rules.clone(),
    }
}

/// The proxy IP standing for the real end of `flow`, if it is a remembered translated flow.
fn proxy_for(
    flows: &mut HashMap<FlowKey, FlowEntry>,
    tick: u64,
    peer: PeerId,
    flow: &Endpoints,
    direction: Direction,
) -> Option<IpAddr> {
    let (real, real_port, client_port) = match direction {
        Direction::Reply => (flow.source, flow.source_port, flow.destination_port),
        Direction::ClientSent => (flow.destination, flow.destination_port, flow.source_port),
    };
    let key = FlowKey {
        peer,
        protocol: flow.protocol,
        client_port,
        real,
        real_port,
    };
    let entry = flows.get_mut(&key)?;
    entry.last_used = tick;
    Some(entry.proxy)
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    /// A packet from the real address to the client.
    Reply,
    /// A packet the client sent to the real address (quoted in an ICMP error).
    ClientSent,
}

#[cfg(test)]
mod tests;
