//! The client's router, sans-IO: which peer a packet from the TUN device goes to, which packets
//! from a peer may enter the device, and what the service has to ask the portal for.
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
//! Inputs are `handle_*` and the two packet methods; outputs queue up as [`Output`]s for the
//! service to carry out (portal messages, driver commands, DNS forwards).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ember_dns::tun_packets::{self, Intercepted};
use ember_dns::{DnsResource, NamePattern, ProxyRanges, StubResolver};
use ember_engine::{
    ConnectionState, ConnectionStats, FailureReason, Grant, IceCredentials, PacketBuffer, PeerId,
};
use ember_io::routes::Prefix;
use ember_protocol::PresharedKey;
use ember_protocol::ipc::{ConnectionPath, ResourceState, ResourceView};
use ember_protocol::portal::{self, Resource, ResourceAddress};
use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, icmpv4, icmpv6};

/// Where the stub resolver listens (ARCHITECTURE §3).
pub const SENTINEL_V4: Ipv4Addr = Ipv4Addr::new(100, 100, 111, 1);
pub const SENTINEL_V6: Ipv6Addr =
    Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0x8000, 0x100, 0x100, 0x111, 1);
/// Packets held per resource (per name, for DNS resources) until its grant arrives.
pub const HELD_PER_RESOURCE: usize = 128;
/// After a denial, packets for the resource are dropped for this long before it is asked again.
pub const RETRY_AFTER_DENIAL: Duration = Duration::from_secs(5);
/// An access request unanswered for this long is sent again with the next packet.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The prefixes always routed into the tunnel: the proxy ranges and the sentinel networks.
pub fn fixed_routes() -> Vec<Prefix> {
    let ranges = ProxyRanges::default();
    [
        Prefix::new(ranges.ipv4.0.into(), ranges.ipv4.1),
        Prefix::new(ranges.ipv6.0.into(), ranges.ipv6.1),
        Prefix::new(SENTINEL_V4.into(), 24),
        Prefix::new(SENTINEL_V6.into(), 120),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What the service has to carry out for the router.
#[derive(Debug)]
pub enum Output {
    /// Ask the portal (`ClientMessage::RequestAccess`).
    RequestAccess {
        request_id: u64,
        resource_id: String,
        domain: Option<String>,
        proxy_ips: Vec<IpAddr>,
        new_connection: bool,
    },
    /// Driver commands.
    Grant(Box<Grant>),
    SendPackets {
        peer: PeerId,
        packets: Vec<Vec<u8>>,
    },
    RemovePeer(PeerId),
    WriteTun(Vec<u8>),
    /// A DNS query for a name that is not a resource: send `query` to an upstream resolver and
    /// write its answer, wrapped with `tun_packets::wrap_reply(sentinel, client, …)`.
    ForwardDns {
        query: Vec<u8>,
        client: SocketAddr,
        sentinel: SocketAddr,
    },
}

/// A grant the portal sent, as it came (keys still in base64).
#[derive(Debug, Clone)]
pub struct AccessGranted {
    pub request_id: u64,
    pub resource_id: String,
    pub domain: Option<String>,
    pub gateway: portal::PeerInfo,
    pub preshared_key: PresharedKey,
    pub local_ice: portal::IceCredentials,
    pub remote_ice: portal::IceCredentials,
}

#[derive(Debug)]
pub struct ClientRouter {
    stub: StubResolver,
    sentinels: Vec<IpAddr>,
    /// The networks around the sentinels: nothing there but the stub.
    sentinel_nets: Vec<Prefix>,
    resources: BTreeMap<String, Resource>,
    /// CIDR and IP resources, longest prefix first: (length, prefix → resource id); last, the
    /// internet resource's `/0` prefixes while it is switched on.
    prefixes: Vec<(u8, HashMap<Prefix, String>)>,
    /// Whether the internet resource, when the user has one, takes the traffic no other
    /// resource covers.
    internet_enabled: bool,
    /// Resource id → its grant.
    granted: HashMap<String, ResourceGrant>,
    /// Packets waiting for a grant, with the request that asks for it.
    pending: HashMap<Key, Pending>,
    requests: HashMap<u64, Request>,
    denied: HashMap<String, Denial>,
    peers: BTreeMap<PeerId, Peer>,
    site_peer: HashMap<String, PeerId>,
    gateway_peer: HashMap<String, PeerId>,
    next_peer: u64,
    next_request: u64,
    outputs: VecDeque<Output>,
}

/// A resource, and for a DNS resource the name it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    resource: String,
    domain: Option<String>,
}

#[derive(Debug)]
struct ResourceGrant {
    peer: PeerId,
    /// A CIDR/IP resource: every address of it.
    whole: bool,
    /// A DNS resource: the names granted.
    domains: HashSet<String>,
}

#[derive(Debug)]
struct Pending {
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
struct Denial {
    message: String,
    at: Instant,
}

#[derive(Debug)]
struct Peer {
    gateway_id: String,
    site_id: String,
    reconnecting: bool,
    failure: Option<FailureReason>,
}

impl ClientRouter {
    pub fn new(ipv6: bool) -> Self {
        let mut sentinels = vec![IpAddr::V4(SENTINEL_V4)];
        if ipv6 {
            sentinels.push(IpAddr::V6(SENTINEL_V6));
        }
        Self {
            stub: StubResolver::new(ProxyRanges::default()),
            sentinels,
            sentinel_nets: fixed_routes().split_off(2),
            resources: BTreeMap::new(),
            prefixes: Vec::new(),
            internet_enabled: false,
            granted: HashMap::new(),
            pending: HashMap::new(),
            requests: HashMap::new(),
            denied: HashMap::new(),
            peers: BTreeMap::new(),
            site_peer: HashMap::new(),
            gateway_peer: HashMap::new(),
            next_peer: 1,
            next_request: 1,
            outputs: VecDeque::new(),
        }
    }

    /// The addresses the stub resolver answers on.
    pub fn sentinels(&self) -> &[IpAddr] {
        &self.sentinels
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn has_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// The routes the resources need on top of [`fixed_routes`].
    pub fn resource_routes(&self) -> Vec<Prefix> {
        self.prefixes
            .iter()
            .flat_map(|(_, map)| map.keys().copied())
            .collect()
    }

    /// The DNS resources' patterns (for split DNS through systemd-resolved).
    pub fn dns_patterns(&self) -> Vec<String> {
        self.resources
            .values()
            .filter_map(|r| match &r.address {
                ResourceAddress::Dns { pattern } => Some(pattern.clone()),
                _ => None,
            })
            .collect()
    }

    /// The resource list from `init` or `resources_updated`. Grants, held packets and denials
    /// of resources that are gone or changed are dropped; peers left without a grant too.
    pub fn handle_resources(&mut self, resources: &[Resource]) {
        let new: BTreeMap<String, Resource> = resources
            .iter()
            .map(|r| (r.id.clone(), r.clone()))
            .collect();
        let changed: Vec<String> = self
            .resources
            .iter()
            .filter(|(id, old)| new.get(*id) != Some(*old))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &changed {
            self.granted.remove(id);
        }
        self.pending
            .retain(|key, _| new.contains_key(&key.resource) && !changed.contains(&key.resource));
        // A policy may have changed: let the next packet ask again.
        self.denied.clear();
        self.resources = new;

        let dns = self
            .resources
            .values()
            .filter_map(|resource| {
                let ResourceAddress::Dns { pattern } = &resource.address else {
                    return None;
                };
                match pattern.parse::<NamePattern>() {
                    Ok(pattern) => Some(DnsResource {
                        id: resource.id.clone(),
                        pattern,
                    }),
                    Err(e) => {
                        tracing::warn!(resource = %resource.id, "Unusable DNS resource: {e}");
                        None
                    }
                }
            })
            .collect();
        self.stub.set_resources(dns);
        self.index_prefixes();
        self.remove_unused_peers();
    }

    /// Switches the internet resource: on, it takes every packet that no other resource
    /// covers (default routes into the tunnel). `false` when nothing changed.
    pub fn set_internet_enabled(&mut self, enabled: bool) -> bool {
        if self.internet_enabled == enabled {
            return false;
        }
        self.internet_enabled = enabled;
        self.index_prefixes();
        true
    }

    /// A packet read from the TUN device: the peer that gets it, or `None` when the router
    /// kept it (held for a grant, a DNS query) or dropped it.
    pub fn outbound(&mut self, packet: &mut [u8], now: Instant) -> Option<PeerId> {
        let (_, dst) = addresses(packet)?;
        if self.is_sentinel_net(dst) {
            match tun_packets::intercept(&mut self.stub, &self.sentinels, packet, now) {
                Intercepted::Reply(reply) => self.outputs.push_back(Output::WriteTun(reply)),
                Intercepted::Forward {
                    query,
                    client,
                    sentinel,
                } => self.outputs.push_back(Output::ForwardDns {
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
        let resource = self.lookup_prefix(dst)?;
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
    pub fn inbound(&mut self, peer: PeerId, packet: &mut [u8]) -> bool {
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
        self.lookup_prefix(src).is_some_and(|resource| {
            self.granted
                .get(resource)
                .is_some_and(|g| g.peer == peer && g.whole)
        })
    }

    /// The portal granted access: the engine gets the grant, then the held packets.
    pub fn handle_access_granted(&mut self, granted: AccessGranted, now: Instant) {
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
        let Some(site_id) = self.resources.get(&key.resource).map(|r| r.site.id.clone()) else {
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
        if let Some(state) = self.peers.get_mut(&peer) {
            state.reconnecting = false;
            state.failure = None;
        }
        self.outputs.push_back(Output::Grant(Box::new(Grant {
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
        if let Some(mut pending) = self.pending.remove(&key) {
            let packets: Vec<Vec<u8>> = pending.packets.drain().collect();
            if !packets.is_empty() {
                self.outputs
                    .push_back(Output::SendPackets { peer, packets });
            }
        }
    }

    /// The portal denied access: the resource is unreachable for a while, its held packets
    /// are dropped.
    pub fn handle_access_denied(
        &mut self,
        request_id: u64,
        resource_id: &str,
        message: String,
        now: Instant,
    ) {
        let key = match self.requests.remove(&request_id) {
            Some(Request::Access(key)) => key,
            Some(Request::Reconnect(peer, key)) => {
                if let Some(state) = self.peers.get_mut(&peer) {
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
    }

    /// Packets wait in the engine for `peer`, which has no connection.
    pub fn handle_connection_needed(&mut self, peer: PeerId) {
        self.reconnect(peer);
    }

    /// The engine gave up the connection to `peer`.
    pub fn handle_connection_failed(&mut self, peer: PeerId, reason: FailureReason) {
        // A replaced connection has its successor already.
        if reason == FailureReason::Replaced {
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.failure = Some(reason);
        }
        self.reconnect(peer);
    }

    /// A gateway went away: its peer is removed and its grants forgotten; the next packet for
    /// one of its resources asks for access again.
    pub fn handle_gateway_offline(&mut self, gateway_id: &str) {
        let Some(peer) = self.gateway_peer.get(gateway_id).copied() else {
            return;
        };
        self.remove_peer(peer);
    }

    /// The portal link is up again (after `init`): the portal forgot this device's grants
    /// while it was away, so every grant and every unanswered request is asked for again.
    pub fn handle_portal_connected(&mut self, now: Instant) {
        self.requests.clear();
        self.denied.clear();
        // Connections that failed while the portal was away (a network change resets both)
        // still need fresh ones: asked again as such, not as the grant they had.
        let failed: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, state)| state.reconnecting)
            .map(|(peer, _)| *peer)
            .collect();
        for state in self.peers.values_mut() {
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
    pub fn peer_of_gateway(&self, gateway_id: &str) -> Option<PeerId> {
        self.gateway_peer.get(gateway_id).copied()
    }

    /// Which gateway a peer is, for ICE candidates to the portal.
    pub fn gateway_of(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(&peer).map(|p| p.gateway_id.as_str())
    }

    /// What the app shows per resource, from the router's state and the engine's statistics.
    pub fn resource_views(&self, stats: &HashMap<PeerId, ConnectionStats>) -> Vec<ResourceView> {
        self.resources
            .values()
            .map(|resource| {
                let mut view = ResourceView {
                    id: resource.id.clone(),
                    name: resource.name.clone(),
                    address: match &resource.address {
                        ResourceAddress::Cidr { cidr } => cidr.clone(),
                        ResourceAddress::Ip { ip } => ip.to_string(),
                        ResourceAddress::Dns { pattern } => pattern.clone(),
                        ResourceAddress::Internet => "Internet".into(),
                    },
                    address_description: resource.address_description.clone(),
                    site: resource.site.name.clone(),
                    state: ResourceState::Unknown,
                    reason: None,
                    path: None,
                    rtt_ms: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    enabled: (resource.address == ResourceAddress::Internet)
                        .then_some(self.internet_enabled),
                };
                if let Some(denial) = self.denied.get(&resource.id) {
                    view.state = ResourceState::Unreachable;
                    view.reason = Some(denial.message.clone());
                } else if let Some(grant) = self.granted.get(&resource.id) {
                    let failure = self.peers.get(&grant.peer).and_then(|p| p.failure);
                    match stats.get(&grant.peer) {
                        Some(stats) => {
                            view.state = match stats.state {
                                ConnectionState::Connecting => ResourceState::Connecting,
                                ConnectionState::Active => ResourceState::Active,
                                ConnectionState::Idle => ResourceState::Idle,
                                ConnectionState::Broken => ResourceState::Broken,
                            };
                            view.path = stats.path.map(|_| {
                                if stats.through_relay {
                                    ConnectionPath::Relayed
                                } else {
                                    ConnectionPath::Direct
                                }
                            });
                            view.rtt_ms = stats
                                .rtt
                                .map(|rtt| u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX));
                            view.rx_bytes = stats.rx_bytes;
                            view.tx_bytes = stats.tx_bytes;
                        }
                        None => match failure {
                            Some(reason) => {
                                view.state = ResourceState::Broken;
                                view.reason = Some(failure_text(reason).into());
                            }
                            None => view.state = ResourceState::Connecting,
                        },
                    }
                } else if self.pending.keys().any(|k| k.resource == resource.id) {
                    view.state = ResourceState::Connecting;
                }
                view
            })
            .collect()
    }

    fn index_prefixes(&mut self) {
        let mut by_len: BTreeMap<u8, HashMap<Prefix, String>> = BTreeMap::new();
        for resource in self.resources.values() {
            let prefixes: Vec<Prefix> = match &resource.address {
                ResourceAddress::Cidr { cidr } => match parse_cidr(cidr) {
                    Some(prefix) => vec![prefix],
                    None => {
                        tracing::warn!(resource = %resource.id, "The portal sent an unusable CIDR; ignored");
                        continue;
                    }
                },
                ResourceAddress::Ip { ip } => Prefix::new(*ip, if ip.is_ipv4() { 32 } else { 128 })
                    .into_iter()
                    .collect(),
                ResourceAddress::Internet if self.internet_enabled => {
                    [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
                        .into_iter()
                        .filter_map(|any: IpAddr| Prefix::new(any, 0))
                        .collect()
                }
                ResourceAddress::Internet | ResourceAddress::Dns { .. } => continue,
            };
            for prefix in prefixes {
                by_len
                    .entry(prefix.len())
                    .or_default()
                    .insert(prefix, resource.id.clone());
            }
        }
        self.prefixes = by_len.into_iter().rev().collect();
    }

    fn is_sentinel_net(&self, ip: IpAddr) -> bool {
        self.sentinel_nets.iter().any(|prefix| prefix.contains(ip))
    }

    fn lookup_prefix(&self, ip: IpAddr) -> Option<&str> {
        self.prefixes.iter().find_map(|(len, map)| {
            let prefix = Prefix::new(ip, *len)?;
            map.get(&prefix).map(String::as_str)
        })
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
                    self.outputs.push_back(Output::WriteTun(icmp));
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
        self.resources
            .get(resource)
            .is_some_and(|r| self.site_peer.contains_key(&r.site.id))
    }

    /// Queues an access request for `key` and returns its id.
    fn request(&mut self, key: &Key, new_connection: bool) -> u64 {
        let request_id = self.next_request;
        self.next_request += 1;
        let proxy_ips = match &key.domain {
            Some(domain) => self.proxy_ips_of(domain),
            None => Vec::new(),
        };
        self.outputs.push_back(Output::RequestAccess {
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
                    self.outputs.push_back(Output::WriteTun(icmp));
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
        let Some(state) = self.peers.get(&peer) else {
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
        if let Some(state) = self.peers.get_mut(&peer) {
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
        if let Some(peer) = self.gateway_peer.get(gateway_id) {
            return *peer;
        }
        if let Some(old) = self.site_peer.get(site_id).copied() {
            self.remove_peer(old);
        }
        let peer = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(
            peer,
            Peer {
                gateway_id: gateway_id.to_owned(),
                site_id: site_id.to_owned(),
                reconnecting: false,
                failure: None,
            },
        );
        self.site_peer.insert(site_id.to_owned(), peer);
        self.gateway_peer.insert(gateway_id.to_owned(), peer);
        peer
    }

    fn remove_peer(&mut self, peer: PeerId) {
        let Some(state) = self.peers.remove(&peer) else {
            return;
        };
        self.granted.retain(|_, g| g.peer != peer);
        self.requests
            .retain(|_, r| !matches!(r, Request::Reconnect(p, _) if *p == peer));
        if self.site_peer.get(&state.site_id) == Some(&peer) {
            self.site_peer.remove(&state.site_id);
        }
        if self.gateway_peer.get(&state.gateway_id) == Some(&peer) {
            self.gateway_peer.remove(&state.gateway_id);
        }
        self.outputs.push_back(Output::RemovePeer(peer));
    }

    fn remove_unused_peers(&mut self) {
        let unused: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|peer| !self.granted.values().any(|g| g.peer == **peer))
            .copied()
            .collect();
        for peer in unused {
            self.remove_peer(peer);
        }
    }
}

/// Source and destination of an IPv4 or IPv6 packet.
pub fn addresses(packet: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some((src.into(), dst.into()))
        }
        6 if packet.len() >= 40 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some((src.into(), dst.into()))
        }
        _ => None,
    }
}

/// An ICMP "administratively prohibited" for `packet`, back to its sender, so an application
/// fails at once instead of waiting out its timeout. `None` for ICMP other than echo requests
/// (an error is never answered with an error), later fragments and what does not parse.
pub fn prohibited(packet: &[u8]) -> Option<Vec<u8>> {
    let (src, dst) = addresses(packet)?;
    let mut reply = Vec::new();
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let header_len = usize::from(packet.first()? & 0x0f) * 4;
            let fragment_offset = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            let is_icmp = *packet.get(9)? == 1;
            if header_len < 20
                || fragment_offset != 0
                || (is_icmp && packet.get(header_len) != Some(&8))
            {
                return None;
            }
            let quoted = packet.get(..packet.len().min(header_len + 8))?;
            PacketBuilder::ipv4(dst.octets(), src.octets(), 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    icmpv4::DestUnreachableHeader::FilterProhibited,
                ))
                .write(&mut reply, quoted)
                .ok()?;
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let is_icmp = *packet.get(6)? == 58;
            if is_icmp && packet.get(40) != Some(&128) {
                return None;
            }
            // The error fits the minimum MTU: 40 + 8 bytes of headers, the rest quoted.
            let quoted = packet.get(..packet.len().min(1280 - 48))?;
            PacketBuilder::ipv6(dst.octets(), src.octets(), 64)
                .icmpv6(Icmpv6Type::DestinationUnreachable(
                    icmpv6::DestUnreachableCode::Prohibited,
                ))
                .write(&mut reply, quoted)
                .ok()?;
        }
        _ => return None,
    }
    Some(reply)
}

/// `10.0.0.0/24`, or a bare address as a host prefix.
fn parse_cidr(text: &str) -> Option<Prefix> {
    match text.split_once('/') {
        Some((addr, len)) => Prefix::new(addr.trim().parse().ok()?, len.trim().parse().ok()?),
        None => {
            let ip: IpAddr = text.trim().parse().ok()?;
            Prefix::new(ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?
        .try_into()
        .ok()
}

fn failure_text(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::ConnectTimeout => "no path to the gateway could be found",
        FailureReason::PathDead => "the path to the gateway stopped working",
        FailureReason::PeerSilent => "the gateway stopped answering",
        FailureReason::Reset => "the network changed",
        FailureReason::Replaced => "the connection was replaced",
    }
}

#[cfg(test)]
mod tests {
    use ember_dns::tun_packets::wrap_reply;
    use ember_engine::PathInfo;
    use ember_protocol::portal::SiteInfo;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);
    const KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

    fn site(name: &str) -> SiteInfo {
        SiteInfo {
            id: format!("site_{name}"),
            name: name.into(),
        }
    }

    fn resource(id: &str, address: ResourceAddress, site_name: &str) -> Resource {
        Resource {
            id: id.into(),
            name: format!("Resource {id}"),
            address,
            address_description: None,
            site: site(site_name),
            filters: Vec::new(),
        }
    }

    fn cidr(id: &str, cidr: &str, site_name: &str) -> Resource {
        resource(id, ResourceAddress::Cidr { cidr: cidr.into() }, site_name)
    }

    fn dns(id: &str, pattern: &str, site_name: &str) -> Resource {
        resource(
            id,
            ResourceAddress::Dns {
                pattern: pattern.into(),
            },
            site_name,
        )
    }

    fn router() -> ClientRouter {
        let mut router = ClientRouter::new(true);
        router.handle_resources(&[
            cidr("lan", "10.20.0.0/16", "Berlin"),
            cidr("db-net", "10.20.5.0/24", "Paris"),
            resource(
                "host",
                ResourceAddress::Ip {
                    ip: "10.30.0.1".parse().unwrap(),
                },
                "Berlin",
            ),
            dns("corp", "*.corp.example", "Berlin"),
        ]);
        router
    }

    fn udp(from: (IpAddr, u16), to: (IpAddr, u16), payload: &[u8]) -> Vec<u8> {
        wrap_reply(SocketAddr::from(from), SocketAddr::from(to), payload).unwrap()
    }

    fn to(dst: &str, marker: u8) -> Vec<u8> {
        udp((ME.into(), 40000), (dst.parse().unwrap(), 9), &[marker])
    }

    fn from(src: &str) -> Vec<u8> {
        udp((src.parse().unwrap(), 9), (ME.into(), 40000), b"reply")
    }

    fn outputs(router: &mut ClientRouter) -> Vec<Output> {
        std::iter::from_fn(|| router.poll_output()).collect()
    }

    /// Request id, resource, domain, proxy IPs, new connection.
    type Asked = (u64, String, Option<String>, Vec<IpAddr>, bool);

    fn requests(outputs: &[Output]) -> Vec<Asked> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::RequestAccess {
                    request_id,
                    resource_id,
                    domain,
                    proxy_ips,
                    new_connection,
                } => Some((
                    *request_id,
                    resource_id.clone(),
                    domain.clone(),
                    proxy_ips.clone(),
                    *new_connection,
                )),
                _ => None,
            })
            .collect()
    }

    fn grant(
        request_id: u64,
        resource_id: &str,
        domain: Option<&str>,
        gateway: &str,
    ) -> AccessGranted {
        AccessGranted {
            request_id,
            resource_id: resource_id.into(),
            domain: domain.map(Into::into),
            gateway: portal::PeerInfo {
                id: gateway.into(),
                public_key: KEY.into(),
                ipv4: Ipv4Addr::new(100, 64, 0, 1),
                ipv6: Ipv6Addr::LOCALHOST,
            },
            preshared_key: KEY.into(),
            local_ice: portal::IceCredentials {
                ufrag: "cl".into(),
                pwd: "client-password".into(),
            },
            remote_ice: portal::IceCredentials {
                ufrag: "gw".into(),
                pwd: "gateway-password".into(),
            },
        }
    }

    /// Grants `resource_id` after one packet to `dst`; returns the peer.
    fn granted(
        router: &mut ClientRouter,
        dst: &str,
        resource_id: &str,
        gateway: &str,
        now: Instant,
    ) -> PeerId {
        assert_eq!(router.outbound(&mut to(dst, 0), now), None);
        let asked = requests(&outputs(router));
        let [(id, resource, domain, _, _)] = asked.as_slice() else {
            panic!("expected one request, got {asked:?}");
        };
        assert_eq!(resource, resource_id);
        router.handle_access_granted(grant(*id, resource_id, domain.as_deref(), gateway), now);
        let out = outputs(router);
        let Some(Output::Grant(grant)) = out.first() else {
            panic!("expected a grant first, got {out:?}");
        };
        grant.peer
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 4242;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        udp(
            (ME.into(), 5353),
            (SENTINEL_V4.into(), 53),
            &message.to_vec().unwrap(),
        )
    }

    /// Resolves `name` through the stub and returns the A records.
    fn resolve(router: &mut ClientRouter, name: &str, now: Instant) -> Vec<Ipv4Addr> {
        assert_eq!(router.outbound(&mut query(name, RecordType::A), now), None);
        let out = outputs(router);
        let [Output::WriteTun(reply)] = out.as_slice() else {
            panic!("expected an answer, got {out:?}");
        };
        let (src, dst) = addresses(reply).unwrap();
        assert_eq!((src, dst), (IpAddr::V4(SENTINEL_V4), IpAddr::V4(ME)));
        let message = Message::from_vec(&reply[28..]).unwrap();
        assert_eq!(message.metadata.id, 4242);
        message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_longest_prefix_picks_the_resource_and_only_one_request_goes_out() {
        let mut router = router();
        let now = Instant::now();
        for marker in 0..5 {
            assert_eq!(router.outbound(&mut to("10.20.5.9", marker), now), None);
        }
        assert_eq!(router.outbound(&mut to("10.20.9.9", 9), now), None);
        let asked = requests(&outputs(&mut router));
        let resources: Vec<(&str, bool)> = asked.iter().map(|r| (r.1.as_str(), r.4)).collect();
        // No connection to either site yet: fresh credentials, whatever a gateway still holds.
        assert_eq!(resources, vec![("db-net", true), ("lan", true)]);
        assert!(asked.iter().all(|r| r.2.is_none() && r.3.is_empty()));
        assert_eq!(
            router.outbound(&mut to("192.0.2.1", 0), now),
            None,
            "not a resource"
        );
        assert!(
            outputs(&mut router).is_empty(),
            "no request for a non-resource"
        );
    }

    #[test]
    fn the_internet_resource_takes_only_what_no_other_resource_covers_and_only_while_on() {
        let mut router = router();
        let mut resources: Vec<Resource> = router.resources.values().cloned().collect();
        resources.push(resource("internet", ResourceAddress::Internet, "Exit"));
        router.handle_resources(&resources);
        let now = Instant::now();
        let view_of = |router: &ClientRouter, id: &str| {
            router
                .resource_views(&HashMap::new())
                .into_iter()
                .find(|v| v.id == id)
                .unwrap()
        };
        let internet_view = |router: &ClientRouter| view_of(router, "internet");

        // Only the internet resource can be switched: only its view carries a switch.
        assert!(
            internet_view(&router).enabled.is_some() && view_of(&router, "lan").enabled.is_none()
        );
        assert_eq!(internet_view(&router).enabled, Some(false));
        assert!(!router.resource_routes().iter().any(|p| p.is_empty()));
        assert_eq!(router.outbound(&mut to("203.0.113.9", 0), now), None);
        assert!(
            outputs(&mut router).is_empty(),
            "off: not the tunnel's business"
        );

        assert!(router.set_internet_enabled(true));
        assert!(
            !router.set_internet_enabled(true),
            "no change the second time"
        );
        assert_eq!(internet_view(&router).enabled, Some(true));
        let defaults: Vec<String> = router
            .resource_routes()
            .iter()
            .filter(|p| p.is_empty())
            .map(ToString::to_string)
            .collect();
        assert_eq!(defaults.len(), 2, "{defaults:?}");
        router.outbound(&mut to("203.0.113.9", 0), now);
        router.outbound(&mut to("10.20.5.9", 1), now);
        let asked: Vec<String> = requests(&outputs(&mut router))
            .into_iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(asked, ["internet", "db-net"], "more specific resources win");

        assert!(router.set_internet_enabled(false));
        assert!(!router.resource_routes().iter().any(|p| p.is_empty()));
    }

    #[test]
    fn a_site_with_a_connection_shares_its_credentials_and_one_without_asks_for_new_ones() {
        let mut router = router();
        let now = Instant::now();
        granted(&mut router, "10.20.9.9", "lan", "gw-berlin", now);
        // `host` is in Berlin too: the connection that exists serves it.
        router.outbound(&mut to("10.30.0.1", 0), now);
        let asked = requests(&outputs(&mut router));
        assert_eq!(asked.len(), 1);
        assert!(!asked[0].4, "{asked:?}");
        // After a portal reconnect, the grant that works is asked for as it is.
        router.handle_portal_connected(now);
        let asked = requests(&outputs(&mut router));
        assert!(asked.iter().all(|r| !r.4), "{asked:?}");
    }

    #[test]
    fn held_packets_are_released_in_order_after_the_grant() {
        let mut router = router();
        let now = Instant::now();
        for marker in 0..3 {
            assert_eq!(router.outbound(&mut to("10.30.0.1", marker), now), None);
        }
        let asked = requests(&outputs(&mut router));
        assert_eq!(asked.len(), 1);
        router.handle_access_granted(grant(asked[0].0, "host", None, "gw-berlin-1"), now);
        let out = outputs(&mut router);
        let [Output::Grant(grant), Output::SendPackets { peer, packets }] = out.as_slice() else {
            panic!("{out:?}");
        };
        assert_eq!(*peer, grant.peer);
        assert_eq!(grant.preshared_key.len(), 32);
        let markers: Vec<u8> = packets.iter().map(|p| p[28]).collect();
        assert_eq!(markers, vec![0, 1, 2]);
        assert_eq!(router.outbound(&mut to("10.30.0.1", 3), now), Some(*peer));
        assert!(outputs(&mut router).is_empty());
    }

    #[test]
    fn held_packets_are_bounded_and_the_oldest_go_first() {
        let mut router = router();
        let now = Instant::now();
        for i in 0..(HELD_PER_RESOURCE + 10) {
            let mut packet = udp(
                (ME.into(), 40000),
                ("10.30.0.1".parse().unwrap(), 9),
                &(i as u32).to_be_bytes(),
            );
            router.outbound(&mut packet, now);
        }
        let asked = requests(&outputs(&mut router));
        assert_eq!(asked.len(), 1);
        router.handle_access_granted(grant(asked[0].0, "host", None, "gw"), now);
        let Some(Output::SendPackets { packets, .. }) = outputs(&mut router).into_iter().nth(1)
        else {
            panic!("no packets released");
        };
        assert_eq!(packets.len(), HELD_PER_RESOURCE);
        assert_eq!(
            u32::from_be_bytes(packets[0][28..32].try_into().unwrap()),
            10
        );
    }

    #[test]
    fn resources_of_one_site_share_a_peer_and_sites_get_their_own() {
        let mut router = router();
        let now = Instant::now();
        let lan = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
        let host = granted(&mut router, "10.30.0.1", "host", "gw-berlin", now);
        let paris = granted(&mut router, "10.20.5.1", "db-net", "gw-paris", now);
        assert_eq!(lan, host);
        assert_ne!(lan, paris);
        assert_eq!(router.peer_of_gateway("gw-paris"), Some(paris));
        assert_eq!(router.gateway_of(lan), Some("gw-berlin"));
    }

    #[test]
    fn a_new_gateway_for_a_site_replaces_the_old_peer_and_its_grants() {
        let mut router = router();
        let now = Instant::now();
        let old = granted(&mut router, "10.20.1.1", "lan", "gw-berlin-1", now);
        router.outbound(&mut to("10.30.0.1", 0), now);
        let asked = requests(&outputs(&mut router));
        router.handle_access_granted(grant(asked[0].0, "host", None, "gw-berlin-2"), now);
        let out = outputs(&mut router);
        assert!(
            matches!(out.first(), Some(Output::RemovePeer(p)) if *p == old),
            "{out:?}"
        );
        let Some(Output::Grant(new)) = out.get(1) else {
            panic!("{out:?}");
        };
        assert_ne!(new.peer, old);
        // The LAN went through the old gateway: it asks again.
        assert_eq!(router.outbound(&mut to("10.20.1.1", 0), now), None);
        assert_eq!(requests(&outputs(&mut router)).len(), 1);
    }

    #[test]
    fn dns_resource_names_get_proxy_ips_and_their_packets_ask_with_the_name() {
        let mut router = router();
        let now = Instant::now();
        let ips = resolve(&mut router, "app.corp.example.", now);
        assert_eq!(ips.len(), ember_dns::PROXY_IPS_PER_NAME);
        assert!(ips.iter().all(|ip| ip.octets()[..2] == [100, 96]));

        router.outbound(&mut to(&ips[1].to_string(), 0), now);
        let asked = requests(&outputs(&mut router));
        let [(id, resource, domain, proxy_ips, true)] = asked.as_slice() else {
            panic!("{asked:?}");
        };
        assert_eq!(
            (resource.as_str(), domain.as_deref()),
            ("corp", Some("app.corp.example"))
        );
        assert_eq!(proxy_ips.len(), 2 * ember_dns::PROXY_IPS_PER_NAME);
        assert!(ips.iter().all(|ip| proxy_ips.contains(&IpAddr::V4(*ip))));

        router.handle_access_granted(grant(*id, "corp", domain.as_deref(), "gw"), now);
        let out = outputs(&mut router);
        let Some(Output::Grant(g)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(
            router.outbound(&mut to(&ips[3].to_string(), 1), now),
            Some(g.peer)
        );

        // Another name under the same wildcard needs its own grant.
        let other = resolve(&mut router, "wiki.corp.example.", now);
        assert_eq!(
            router.outbound(&mut to(&other[0].to_string(), 0), now),
            None
        );
        let asked = requests(&outputs(&mut router));
        assert_eq!(asked[0].2.as_deref(), Some("wiki.corp.example"));
    }

    #[test]
    fn other_names_are_forwarded_and_other_sentinel_traffic_is_dropped() {
        let mut router = router();
        let now = Instant::now();
        router.outbound(&mut query("example.org.", RecordType::A), now);
        let out = outputs(&mut router);
        let [
            Output::ForwardDns {
                client,
                sentinel,
                query,
            },
        ] = out.as_slice()
        else {
            panic!("{out:?}");
        };
        assert_eq!(*client, SocketAddr::from((ME, 5353)));
        assert_eq!(*sentinel, SocketAddr::from((SENTINEL_V4, 53)));
        assert_eq!(Message::from_vec(query).unwrap().metadata.id, 4242);

        assert_eq!(router.outbound(&mut to("100.100.111.1", 0), now), None);
        assert_eq!(router.outbound(&mut to("100.100.111.9", 0), now), None);
        assert!(outputs(&mut router).is_empty());
    }

    #[test]
    fn a_denial_makes_the_resource_unreachable_drops_held_packets_and_waits_before_asking_again() {
        let mut router = router();
        let now = Instant::now();
        router.outbound(&mut to("10.20.5.1", 0), now);
        let asked = requests(&outputs(&mut router));
        router.handle_access_denied(
            asked[0].0,
            "db-net",
            "all gateways of Paris are offline".into(),
            now,
        );
        let view = router
            .resource_views(&HashMap::new())
            .into_iter()
            .find(|v| v.id == "db-net")
            .unwrap();
        assert_eq!(view.state, ResourceState::Unreachable);
        assert_eq!(
            view.reason.as_deref(),
            Some("all gateways of Paris are offline")
        );
        // The held packet is dropped; its sender learns at once.
        let out = outputs(&mut router);
        let [Output::WriteTun(icmp)] = out.as_slice() else {
            panic!("expected one ICMP error, got {out:?}");
        };
        assert_prohibited(icmp, "10.20.5.1");

        router.outbound(&mut to("10.20.5.1", 1), now + Duration::from_secs(1));
        let out = outputs(&mut router);
        assert!(
            matches!(out.as_slice(), [Output::WriteTun(icmp)] if addresses(icmp).is_some()),
            "no request storm, only an ICMP error: {out:?}"
        );
        router.outbound(&mut to("10.20.5.1", 2), now + RETRY_AFTER_DENIAL);
        assert_eq!(requests(&outputs(&mut router)).len(), 1);
    }

    fn assert_prohibited(icmp: &[u8], from: &str) {
        let sliced = etherparse::SlicedPacket::from_ip(icmp).unwrap();
        let (src, dst) = addresses(icmp).unwrap();
        assert_eq!((src, dst), (from.parse().unwrap(), IpAddr::V4(ME)));
        let Some(etherparse::TransportSlice::Icmpv4(header)) = sliced.transport else {
            panic!("not ICMPv4");
        };
        assert_eq!((header.type_u8(), header.code_u8()), (3, 13));
        // A checksum the kernel accepts.
        assert_eq!(
            header.checksum(),
            header.header().icmp_type.calc_checksum(header.payload())
        );
    }

    #[test]
    fn icmp_errors_are_never_answered_with_icmp_errors() {
        let unreachable = prohibited(&to("10.20.5.1", 0)).unwrap();
        assert_eq!(prohibited(&unreachable), None);
        let echo = etherparse::PacketBuilder::ipv4(ME.octets(), [10, 20, 5, 1], 64)
            .icmpv4_echo_request(1, 1);
        let mut ping = Vec::new();
        echo.write(&mut ping, b"ping").unwrap();
        assert!(
            prohibited(&ping).is_some(),
            "a ping learns it is prohibited"
        );
        let v6 = udp(
            ("fd00::1".parse().unwrap(), 1),
            ("fd00:2021:1111:8000::5".parse().unwrap(), 2),
            &[0; 2000],
        );
        let error = prohibited(&v6).unwrap();
        assert_eq!(error.len(), 1280, "an ICMPv6 error fits the minimum MTU");
    }

    #[test]
    fn an_unanswered_request_is_sent_again_after_its_timeout() {
        let mut router = router();
        let now = Instant::now();
        router.outbound(&mut to("10.30.0.1", 0), now);
        let first = requests(&outputs(&mut router));
        router.outbound(&mut to("10.30.0.1", 1), now + REQUEST_TIMEOUT);
        let second = requests(&outputs(&mut router));
        assert_eq!(second.len(), 1);
        assert_ne!(first[0].0, second[0].0);
        // The late answer to the first request still counts as a grant, and both packets go.
        router.handle_access_granted(grant(second[0].0, "host", None, "gw"), now);
        let Some(Output::SendPackets { packets, .. }) = outputs(&mut router).into_iter().nth(1)
        else {
            panic!("nothing released");
        };
        assert_eq!(packets.len(), 2);
    }

    #[test]
    fn only_sources_granted_through_a_peer_may_enter() {
        let mut router = router();
        let now = Instant::now();
        let berlin = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
        let paris = granted(&mut router, "10.20.5.1", "db-net", "gw-paris", now);
        assert!(router.inbound(berlin, &mut from("10.20.1.1")));
        assert!(router.inbound(paris, &mut from("10.20.5.200")));
        // Paris serves 10.20.5.0/24; Berlin may not answer for it, nor for a host it was not
        // granted, nor for anything else.
        assert!(!router.inbound(berlin, &mut from("10.20.5.200")));
        assert!(!router.inbound(paris, &mut from("10.20.1.1")));
        assert!(!router.inbound(berlin, &mut from("10.30.0.1")));
        assert!(!router.inbound(berlin, &mut from("192.0.2.1")));
        assert!(!router.inbound(berlin, &mut [0x45, 0, 0]));

        let ips = resolve(&mut router, "app.corp.example.", now);
        let other = resolve(&mut router, "wiki.corp.example.", now);
        router.outbound(&mut to(&ips[0].to_string(), 0), now);
        let asked = requests(&outputs(&mut router));
        router.handle_access_granted(
            grant(asked[0].0, "corp", asked[0].2.as_deref(), "gw-berlin"),
            now,
        );
        outputs(&mut router);
        assert!(router.inbound(berlin, &mut from(&ips[2].to_string())));
        assert!(!router.inbound(paris, &mut from(&ips[2].to_string())));
        assert!(
            !router.inbound(berlin, &mut from(&other[0].to_string())),
            "a name that was not granted"
        );
    }

    #[test]
    fn a_failed_connection_asks_once_for_a_new_one() {
        let mut router = router();
        let now = Instant::now();
        let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
        router.handle_connection_failed(peer, FailureReason::PathDead);
        router.handle_connection_needed(peer);
        let asked = requests(&outputs(&mut router));
        let [(id, resource, None, _, true)] = asked.as_slice() else {
            panic!("{asked:?}");
        };
        assert_eq!(resource, "lan");
        let views = router.resource_views(&HashMap::new());
        let lan = views.iter().find(|v| v.id == "lan").unwrap();
        assert_eq!(lan.state, ResourceState::Broken);
        assert!(lan.reason.is_some());

        router.handle_access_granted(grant(*id, "lan", None, "gw-berlin"), now);
        let out = outputs(&mut router);
        assert!(
            matches!(out.as_slice(), [Output::Grant(g)] if g.peer == peer),
            "{out:?}"
        );
        router.handle_connection_failed(peer, FailureReason::Replaced);
        assert!(
            outputs(&mut router).is_empty(),
            "a replaced connection needs nothing"
        );
    }

    #[test]
    fn an_offline_gateway_is_removed_and_its_resources_ask_again() {
        let mut router = router();
        let now = Instant::now();
        let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
        router.handle_gateway_offline("gw-berlin");
        let out = outputs(&mut router);
        assert!(
            matches!(out.as_slice(), [Output::RemovePeer(p)] if *p == peer),
            "{out:?}"
        );
        assert_eq!(router.outbound(&mut to("10.20.1.1", 0), now), None);
        assert_eq!(requests(&outputs(&mut router)).len(), 1);
        assert!(!router.inbound(peer, &mut from("10.20.1.1")));
    }

    #[test]
    fn a_removed_resource_loses_its_grant_and_an_unused_peer_goes() {
        let mut router = router();
        let now = Instant::now();
        let peer = granted(&mut router, "10.30.0.1", "host", "gw-berlin", now);
        router.outbound(&mut to("10.20.1.1", 0), now);
        outputs(&mut router);
        router.handle_resources(&[cidr("lan", "10.20.0.0/16", "Berlin")]);
        let out = outputs(&mut router);
        assert!(
            matches!(out.as_slice(), [Output::RemovePeer(p)] if *p == peer),
            "{out:?}"
        );
        assert_eq!(router.outbound(&mut to("10.30.0.1", 0), now), None);
        assert!(outputs(&mut router).is_empty(), "no longer a resource");
        let routes = router.resource_routes();
        assert_eq!(
            routes,
            vec![Prefix::new("10.20.0.0".parse().unwrap(), 16).unwrap()]
        );
    }

    #[test]
    fn after_the_portal_reconnects_grants_and_open_requests_are_asked_again() {
        let mut router = router();
        let now = Instant::now();
        let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
        router.outbound(&mut to("10.30.0.1", 0), now);
        outputs(&mut router);
        router.handle_portal_connected(now);
        let asked = requests(&outputs(&mut router));
        let mut resources: Vec<&str> = asked.iter().map(|r| r.1.as_str()).collect();
        resources.sort();
        assert_eq!(resources, vec!["host", "lan"]);
        // Traffic keeps flowing meanwhile.
        assert_eq!(router.outbound(&mut to("10.20.1.1", 0), now), Some(peer));
        let lan = asked.iter().find(|r| r.1 == "lan").unwrap();
        router.handle_access_granted(grant(lan.0, "lan", None, "gw-berlin"), now);
        assert!(matches!(outputs(&mut router).as_slice(), [Output::Grant(g)] if g.peer == peer));
    }

    #[test]
    fn views_show_the_engines_state_path_rtt_and_bytes() {
        let mut router = router();
        let now = Instant::now();
        let peer = granted(&mut router, "10.20.1.1", "lan", "gw-berlin", now);
        let stats = ConnectionStats {
            state: ConnectionState::Active,
            path: Some(PathInfo {
                local: "198.51.100.2:5000".parse().unwrap(),
                remote: "198.51.100.3:5000".parse().unwrap(),
                relayed: true,
            }),
            through_relay: true,
            rtt: Some(Duration::from_millis(23)),
            tx_packets: 3,
            tx_bytes: 300,
            rx_packets: 2,
            rx_bytes: 200,
            last_handshake: None,
        };
        let views = router.resource_views(&HashMap::from([(peer, stats)]));
        let lan = views.iter().find(|v| v.id == "lan").unwrap();
        assert_eq!(lan.state, ResourceState::Active);
        assert_eq!(lan.path, Some(ConnectionPath::Relayed));
        assert_eq!(
            (lan.rtt_ms, lan.rx_bytes, lan.tx_bytes),
            (Some(23), 200, 300)
        );
        assert_eq!(lan.site, "Berlin");
        assert_eq!(lan.address, "10.20.0.0/16");
        let corp = views.iter().find(|v| v.id == "corp").unwrap();
        assert_eq!(
            (corp.state, corp.address.as_str()),
            (ResourceState::Unknown, "*.corp.example")
        );
    }

    #[test]
    fn garbage_from_either_side_is_dropped_without_a_panic() {
        let mut router = router();
        let now = Instant::now();
        for len in 0..64u8 {
            let mut packet: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ len).collect();
            if let Some(first) = packet.first_mut() {
                *first = if len % 2 == 0 { 0x45 } else { 0x60 };
            }
            let _ = router.outbound(&mut packet.clone(), now);
            assert!(!router.inbound(PeerId(1), &mut packet));
        }
    }
}
