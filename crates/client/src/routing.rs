//! The client's routing, sans-IO: which peer a packet from the TUN device goes to, which
//! packets from a peer may enter the device, and what to ask the portal for.
//!
//! - A packet's destination picks a resource: a proxy IP leads to the DNS resource and the
//!   name it was handed out for; otherwise the longest CIDR/IP prefix wins. DNS queries to the
//!   sentinel addresses are answered (or handed out for forwarding) here.
//! - A resource (a DNS resource: a name of it) with a grant goes to the peer of its site's
//!   gateway — one gateway per site at a time. Without a grant its packets are held (bounded,
//!   oldest dropped) and exactly one access request goes out; the grant releases them in order.
//! - A packet from a peer enters only when its source belongs to a resource granted through
//!   that peer: a gateway cannot inject traffic for addresses it does not serve.
//!
//! What it decides queues up as [`Effect`]s, which [`crate::ClientState`] applies to the
//! engine and its own outputs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ember_dns::tun_packets::{self, Intercepted};
use ember_dns::{ProxyRanges, StubResolver};
use ember_engine::{FailureReason, Grant, IceCredentials, PacketBuffer, PeerId};
use ember_protocol::portal::{self, Resource};
use ember_protocol::{Prefix, PresharedKey, WireGuardKey};

use crate::peers::Peers;
use crate::resources::{ResourceTable, sentinel_nets};
use crate::{SENTINEL_V4, SENTINEL_V6};
use ember_packet::{addresses, prohibited};

/// Packets held per resource (per name, for DNS resources) until its grant arrives.
pub const HELD_PER_RESOURCE: usize = 128;
/// After a denial, packets for the resource are dropped for this long before it is asked again.
pub const RETRY_AFTER_DENIAL: Duration = Duration::from_secs(5);
/// An access request unanswered for this long is sent again with the next packet.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the routing decided, for [`crate::ClientState`] to carry out.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Ask the portal (`ClientMessage::RequestAccess`).
    RequestAccess {
        request_id: u64,
        resource_id: String,
        domain: Option<String>,
        proxy_ips: Vec<IpAddr>,
        new_connection: bool,
    },
    /// For the engine.
    Grant(Box<Grant>),
    SendPackets {
        peer: PeerId,
        packets: Vec<Vec<u8>>,
    },
    RemovePeer(PeerId),
    /// For the TUN device: a DNS answer, an ICMP error.
    WriteTun(Vec<u8>),
    /// A DNS query for a name that is not a resource: for the upstream resolvers.
    ForwardDns {
        query: Vec<u8>,
        client: SocketAddr,
        sentinel: SocketAddr,
    },
}

/// A grant the portal sent, as it came (keys still in base64).
#[derive(Debug, Clone)]
pub(crate) struct AccessGranted {
    pub(crate) request_id: u64,
    pub(crate) resource_id: String,
    pub(crate) domain: Option<String>,
    pub(crate) gateway: portal::PeerInfo,
    pub(crate) preshared_key: PresharedKey,
    pub(crate) local_ice: portal::IceCredentials,
    pub(crate) remote_ice: portal::IceCredentials,
}

#[derive(Debug)]
pub(crate) struct Routing {
    stub: StubResolver,
    sentinels: Vec<IpAddr>,
    sentinel_nets: Vec<Prefix>,
    pub(crate) table: ResourceTable,
    /// Resource id → its grant.
    pub(crate) granted: HashMap<String, ResourceGrant>,
    /// Packets waiting for a grant, with the request that asks for it.
    pub(crate) pending: HashMap<Key, Pending>,
    requests: HashMap<u64, Request>,
    pub(crate) denied: HashMap<String, Denial>,
    /// Grants of a gateway that went offline, being asked for again.
    rejoin: HashMap<Key, Rejoin>,
    pub(crate) peers: Peers,
    next_request: u64,
    effects: VecDeque<Effect>,
}

/// A resource, and for a DNS resource the name it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) resource: String,
    pub(crate) domain: Option<String>,
}

#[derive(Debug)]
pub(crate) struct ResourceGrant {
    pub(crate) peer: PeerId,
    /// A CIDR/IP resource: every address of it.
    pub(crate) whole: bool,
    /// A DNS resource: the names granted.
    pub(crate) domains: HashSet<String>,
}

#[derive(Debug)]
pub(crate) struct Pending {
    packets: PacketBuffer,
    request_id: u64,
    asked_at: Instant,
}

#[derive(Debug, Clone)]
enum Request {
    Access(Key),
    /// A fresh connection for a peer whose connection failed, through one of its grants.
    Reconnect(PeerId, Key),
}

#[derive(Debug)]
pub(crate) struct Denial {
    pub(crate) message: String,
    at: Instant,
}

impl Routing {
    pub(crate) fn new(ipv6: bool) -> Self {
        let mut sentinels = vec![IpAddr::V4(SENTINEL_V4)];
        if ipv6 {
            sentinels.push(IpAddr::V6(SENTINEL_V6));
        }
        Self {
            stub: StubResolver::new(ProxyRanges::default()),
            sentinels,
            sentinel_nets: sentinel_nets(),
            table: ResourceTable::default(),
            granted: HashMap::new(),
            pending: HashMap::new(),
            requests: HashMap::new(),
            denied: HashMap::new(),
            rejoin: HashMap::new(),
            peers: Peers::default(),
            next_request: 1,
            effects: VecDeque::new(),
        }
    }

    /// The addresses the stub resolver answers on.
    pub(crate) fn sentinels(&self) -> &[IpAddr] {
        &self.sentinels
    }

    pub(crate) fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The resource list from `init` or `resources_updated`. Grants, held packets and denials
    /// of resources that are gone or changed are dropped; peers left without a grant too.
    pub(crate) fn handle_resources(&mut self, resources: &[Resource]) {
        let changed = self.table.set(resources);
        for id in &changed {
            self.granted.remove(id);
        }
        let table = &self.table;
        self.pending
            .retain(|key, _| table.contains(&key.resource) && !changed.contains(&key.resource));
        // A policy may have changed: let the next packet ask again.
        self.denied.clear();
        self.rejoin.retain(|key, _| table.contains(&key.resource));
        self.stub.set_resources(self.table.dns_resources());
        self.remove_unused_peers();
    }

    /// Switches the internet resource: on, it takes every packet that no other resource
    /// covers (default routes into the tunnel). `false` when nothing changed.
    pub(crate) fn set_internet_enabled(&mut self, enabled: bool) -> bool {
        self.table.set_internet_enabled(enabled)
    }

    /// A packet read from the TUN device: the peer that gets it, or `None` when the router
    /// kept it (held for a grant, a DNS query) or dropped it.
    pub(crate) fn outbound(&mut self, packet: &mut [u8], now: Instant) -> Option<PeerId> {
        let (_, dst) = addresses(packet)?;
        if self.is_sentinel_net(dst) {
            match tun_packets::intercept(&mut self.stub, &self.sentinels, packet, now) {
                Intercepted::Reply(reply) => self.effects.push_back(Effect::WriteTun(reply)),
                Intercepted::Forward {
                    query,
                    client,
                    sentinel,
                } => self.effects.push_back(Effect::ForwardDns {
                    query,
                    client,
                    sentinel,
                }),
                Intercepted::NotDns | Intercepted::Dropped => {}
            }
            return None;
        }
        self.stub.handle_traffic(dst, now);
        if let Some(proxy) = self.stub.lookup_proxy_ip(dst) {
            // No resource covers the name any more: nowhere to go.
            let resource = proxy.resource_id.as_deref()?;
            if let Some(grant) = self.granted.get(resource)
                && grant.domains.contains(&proxy.name)
            {
                return Some(grant.peer);
            }
            let key = Key {
                resource: resource.to_owned(),
                domain: Some(proxy.name.clone()),
            };
            self.hold(key, packet, now);
            return None;
        }
        let resource = self.table.lookup_prefix(dst)?;
        if let Some(grant) = self.granted.get(resource)
            && grant.whole
        {
            return Some(grant.peer);
        }
        let key = Key {
            resource: resource.to_owned(),
            domain: None,
        };
        self.hold(key, packet, now);
        None
    }

    /// A packet decrypted from `peer`: `true` when its source belongs to a resource granted
    /// through that peer.
    pub(crate) fn inbound(&mut self, peer: PeerId, packet: &mut [u8]) -> bool {
        let Some((src, _)) = addresses(packet) else {
            return false;
        };
        if let Some(proxy) = self.stub.lookup_proxy_ip(src) {
            return proxy.resource_id.as_deref().is_some_and(|resource| {
                self.granted
                    .get(resource)
                    .is_some_and(|g| g.peer == peer && g.domains.contains(&proxy.name))
            });
        }
        self.table.lookup_prefix(src).is_some_and(|resource| {
            self.granted
                .get(resource)
                .is_some_and(|g| g.peer == peer && g.whole)
        })
    }

    /// The portal granted access: the engine gets the grant, then the held packets.
    pub(crate) fn handle_access_granted(&mut self, granted: AccessGranted, now: Instant) {
        let request = self.requests.remove(&granted.request_id);
        let key = match &request {
            Some(Request::Access(key) | Request::Reconnect(_, key)) => key.clone(),
            None => Key {
                resource: granted.resource_id.clone(),
                domain: granted.domain.clone(),
            },
        };
        if key.resource != granted.resource_id {
            tracing::warn!(
                request_id = granted.request_id,
                "A grant for another resource than asked; ignored"
            );
            return;
        }
        let Some(site_id) = self.table.get(&key.resource).map(|r| r.site.id.clone()) else {
            tracing::debug!(resource = %key.resource, "A grant for a resource no longer listed; ignored");
            return;
        };
        let (peer_public_key, preshared_key) = match (
            decode_key(&granted.gateway.public_key),
            decode_key(granted.preshared_key.expose()),
        ) {
            (Some(public), Some(preshared)) => (public, preshared),
            _ => {
                tracing::warn!(resource = %key.resource, "The portal sent a grant with malformed keys");
                self.deny(&key, "the portal sent an unusable grant".into(), now);
                return;
            }
        };

        let peer = self.peer_for(&granted.gateway.id, &site_id);
        if let Some(state) = self.peers.get_mut(peer) {
            state.reconnecting = false;
            state.failure = None;
        }
        self.effects.push_back(Effect::Grant(Box::new(Grant {
            peer,
            peer_public_key,
            preshared_key,
            local_ice: IceCredentials {
                ufrag: granted.local_ice.ufrag,
                pwd: granted.local_ice.pwd.expose().to_owned(),
            },
            remote_ice: IceCredentials {
                ufrag: granted.remote_ice.ufrag,
                pwd: granted.remote_ice.pwd.expose().to_owned(),
            },
        })));
        let grant = self
            .granted
            .entry(key.resource.clone())
            .or_insert_with(|| ResourceGrant {
                peer,
                whole: false,
                domains: HashSet::new(),
            });
        if grant.peer != peer {
            // The resource's site has a new gateway: earlier names went through the old one.
            grant.peer = peer;
            grant.whole = false;
            grant.domains.clear();
        }
        match &key.domain {
            Some(domain) => {
                grant.domains.insert(domain.clone());
            }
            None => grant.whole = true,
        }
        self.denied.remove(&key.resource);
        self.rejoin.remove(&key);
        if let Some(mut pending) = self.pending.remove(&key) {
            let packets: Vec<Vec<u8>> = pending.packets.drain().collect();
            if !packets.is_empty() {
                self.effects
                    .push_back(Effect::SendPackets { peer, packets });
            }
        }
    }

    /// The portal denied access: the resource is unreachable for a while, its held packets
    /// are dropped.
    pub(crate) fn handle_access_denied(
        &mut self,
        request_id: u64,
        resource_id: &str,
        offline: bool,
        message: String,
        now: Instant,
    ) {
        let key = match self.requests.remove(&request_id) {
            Some(Request::Access(key)) => key,
            Some(Request::Reconnect(peer, key)) => {
                if let Some(state) = self.peers.get_mut(peer) {
                    state.reconnecting = false;
                }
                key
            }
            None => Key {
                resource: resource_id.to_owned(),
                domain: None,
            },
        };
        self.deny(&key, message, now);
        self.rejoin_denied(&key, offline, now);
    }

    /// Packets wait in the engine for `peer`, which has no connection.
    pub(crate) fn handle_connection_needed(&mut self, peer: PeerId) {
        self.reconnect(peer);
    }

    /// The engine gave up the connection to `peer`.
    pub(crate) fn handle_connection_failed(&mut self, peer: PeerId, reason: FailureReason) {
        // A replaced connection has its successor already.
        if reason == FailureReason::Replaced {
            return;
        }
        if let Some(state) = self.peers.get_mut(peer) {
            state.failure = Some(reason);
        }
        self.reconnect(peer);
    }

    /// The portal link is up again (after `init`): the portal forgot this device's grants
    /// while it was away, so every grant and every unanswered request is asked for again.
    pub(crate) fn handle_portal_connected(&mut self, now: Instant) {
        self.requests.clear();
        self.denied.clear();
        self.rejoin_after_reconnect(now);
        // Connections that failed while the portal was away (a network change resets both)
        // still need fresh ones: asked again as such, not as the grant they had.
        let failed: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, state)| state.reconnecting)
            .map(|(peer, _)| peer)
            .collect();
        for state in self.peers.iter_mut() {
            state.reconnecting = false;
        }
        for peer in &failed {
            self.reconnect(*peer);
        }
        let mut keys: Vec<Key> = self.pending.keys().cloned().collect();
        for (resource, grant) in &self.granted {
            if failed.contains(&grant.peer) {
                continue;
            }
            if grant.whole {
                keys.push(Key {
                    resource: resource.clone(),
                    domain: None,
                });
            }
            for domain in &grant.domains {
                keys.push(Key {
                    resource: resource.clone(),
                    domain: Some(domain.clone()),
                });
            }
        }
        keys.sort();
        keys.dedup();
        for key in keys {
            let request_id = self.request(&key, !self.has_connection_for(&key.resource));
            self.requests
                .insert(request_id, Request::Access(key.clone()));
            if let Some(pending) = self.pending.get_mut(&key) {
                pending.request_id = request_id;
                pending.asked_at = now;
            }
        }
    }

    /// Which peer a gateway is, for ICE candidates from the portal.
    pub(crate) fn peer_of_gateway(&self, gateway_id: &str) -> Option<PeerId> {
        self.peers.of_gateway(gateway_id)
    }

    /// Which gateway a peer is, for ICE candidates to the portal.
    pub(crate) fn gateway_of(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(peer).map(|p| p.gateway_id.as_str())
    }

    fn is_sentinel_net(&self, ip: IpAddr) -> bool {
        self.sentinel_nets.iter().any(|prefix| prefix.contains(ip))
    }

    fn hold(&mut self, key: Key, packet: &[u8], now: Instant) {
        if let Some(pending) = self.pending.get_mut(&key) {
            pending.packets.push(packet.to_vec());
            if now.saturating_duration_since(pending.asked_at) >= REQUEST_TIMEOUT {
                let request_id = self.request(&key, false);
                if let Some(pending) = self.pending.get_mut(&key) {
                    self.requests.remove(&pending.request_id);
                    pending.request_id = request_id;
                    pending.asked_at = now;
                }
                self.requests.insert(request_id, Request::Access(key));
            }
            return;
        }
        if let Some(denial) = self.denied.get(&key.resource) {
            if now.saturating_duration_since(denial.at) < RETRY_AFTER_DENIAL {
                if let Some(icmp) = prohibited(packet) {
                    self.effects.push_back(Effect::WriteTun(icmp));
                }
                return;
            }
            self.denied.remove(&key.resource);
        }
        let request_id = self.request(&key, !self.has_connection_for(&key.resource));
        self.requests
            .insert(request_id, Request::Access(key.clone()));
        let mut packets = PacketBuffer::new(HELD_PER_RESOURCE);
        packets.push(packet.to_vec());
        self.pending.insert(
            key,
            Pending {
                packets,
                request_id,
                asked_at: now,
            },
        );
    }

    /// Whether a connection to a gateway of `resource`'s site exists. Without one, a request
    /// asks for fresh credentials: the gateway may still hold a connection from an earlier
    /// run of this device (a restarted service keeps its key), and only a grant that differs
    /// makes it start over with us instead of waiting out its timeout.
    fn has_connection_for(&self, resource: &str) -> bool {
        self.table
            .get(resource)
            .is_some_and(|r| self.peers.of_site(&r.site.id).is_some())
    }

    /// Queues an access request for `key` and returns its id.
    fn request(&mut self, key: &Key, new_connection: bool) -> u64 {
        let request_id = self.next_request;
        self.next_request += 1;
        let proxy_ips = match &key.domain {
            Some(domain) => self.proxy_ips_of(domain),
            None => Vec::new(),
        };
        self.effects.push_back(Effect::RequestAccess {
            request_id,
            resource_id: key.resource.clone(),
            domain: key.domain.clone(),
            proxy_ips,
            new_connection,
        });
        request_id
    }

    fn proxy_ips_of(&self, name: &str) -> Vec<IpAddr> {
        // Every proxy IP of a name leads back to the same entry; find it through any of them.
        self.stub
            .proxy_ips_of(name)
            .map(|proxy| {
                proxy
                    .ipv4
                    .iter()
                    .map(|ip| IpAddr::V4(*ip))
                    .chain(proxy.ipv6.iter().map(|ip| IpAddr::V6(*ip)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn deny(&mut self, key: &Key, message: String, now: Instant) {
        if let Some(mut pending) = self.pending.remove(key) {
            for packet in pending.packets.drain() {
                if let Some(icmp) = prohibited(&packet) {
                    self.effects.push_back(Effect::WriteTun(icmp));
                }
            }
        }
        if let Some(grant) = self.granted.get_mut(&key.resource) {
            match &key.domain {
                Some(domain) => {
                    grant.domains.remove(domain);
                }
                None => grant.whole = false,
            }
            if !grant.whole && grant.domains.is_empty() {
                self.granted.remove(&key.resource);
            }
        }
        self.denied
            .insert(key.resource.clone(), Denial { message, at: now });
        self.remove_unused_peers();
    }

    fn reconnect(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        if state.reconnecting {
            return;
        }
        let Some(key) = self.keys_of(peer).into_iter().next() else {
            // Nothing granted through it any more.
            self.remove_peer(peer);
            return;
        };
        let request_id = self.request(&key, true);
        self.requests
            .insert(request_id, Request::Reconnect(peer, key));
        if let Some(state) = self.peers.get_mut(peer) {
            state.reconnecting = true;
        }
    }

    fn keys_of(&self, peer: PeerId) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .granted
            .iter()
            .filter(|(_, g)| g.peer == peer)
            .flat_map(|(resource, grant)| {
                let whole = grant.whole.then(|| Key {
                    resource: resource.clone(),
                    domain: None,
                });
                whole.into_iter().chain(grant.domains.iter().map(|d| Key {
                    resource: resource.clone(),
                    domain: Some(d.clone()),
                }))
            })
            .collect();
        keys.sort();
        keys
    }

    /// The peer of `gateway_id`, new if needed. A site has one gateway at a time: a new one
    /// replaces the old one's peer and grants.
    fn peer_for(&mut self, gateway_id: &str, site_id: &str) -> PeerId {
        if let Some(peer) = self.peers.of_gateway(gateway_id) {
            return peer;
        }
        if let Some(old) = self.peers.of_site(site_id) {
            self.remove_peer(old);
        }
        self.peers.insert(gateway_id, site_id)
    }

    fn remove_peer(&mut self, peer: PeerId) {
        if self.peers.remove(peer).is_none() {
            return;
        }
        self.granted.retain(|_, g| g.peer != peer);
        self.requests
            .retain(|_, r| !matches!(r, Request::Reconnect(p, _) if *p == peer));
        self.effects.push_back(Effect::RemovePeer(peer));
    }

    fn remove_unused_peers(&mut self) {
        let unused: Vec<PeerId> = self
            .peers
            .iter()
            .map(|(peer, _)| peer)
            .filter(|peer| !self.granted.values().any(|g| g.peer == *peer))
            .collect();
        for peer in unused {
            self.remove_peer(peer);
        }
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    text.parse::<WireGuardKey>()
        .ok()
        .map(WireGuardKey::to_bytes)
}

mod rejoin;
#[cfg(test)]
mod tests;

use rejoin::Rejoin;
