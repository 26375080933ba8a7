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
//! right. The table has no clock: the caller calls [`GatewayRouter::tick`] now and then, and a
//! flow unused for [`FLOW_IDLE_TICKS`] ticks is forgotten.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ember_engine::PeerId;
use ember_io::routes::Prefix;

use crate::filter::{Denied, GrantedResource, PacketFilter, Rule};
use crate::translate::{self, Endpoints, Rewrite};

/// Ticks without a packet after which a translated flow is forgotten.
pub const FLOW_IDLE_TICKS: u64 = 10;
/// Translated flows remembered at most; beyond this replies fall back to the first proxy IP
/// of their address.
pub const MAX_FLOWS: usize = 65_536;

/// One grant of a client: a resource, or for DNS resources one name of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantKey {
    pub resource_id: String,
    pub domain: Option<String>,
}

/// What a grant allows, ready for the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGrant {
    /// Real addresses: the resource's CIDR or IP, or what its name resolved to.
    pub destinations: Vec<Prefix>,
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
    /// Proxy IP → real address, from every DNS grant.
    proxies: HashMap<IpAddr, IpAddr>,
    /// Real address → the first proxy IP standing for it: for replies of unknown flows.
    first_proxy: HashMap<IpAddr, IpAddr>,
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
    pub fn set_grant(
        &mut self,
        peer: PeerId,
        addresses: &[IpAddr],
        key: GrantKey,
        grant: ResourceGrant,
    ) {
        let client = self.clients.entry(peer).or_insert_with(|| Client {
            addresses: Vec::new(),
            grants: BTreeMap::new(),
            proxies: HashMap::new(),
            first_proxy: HashMap::new(),
        });
        if client.addresses != addresses {
            for old in &client.addresses {
                self.by_address.remove(old);
            }
            self.filter.remove_client(&client.addresses);
            client.addresses = addresses.to_vec();
        }
        for address in addresses {
            self.by_address.insert(*address, peer);
        }
        client.grants.insert(key, grant);
        self.refresh(peer);
    }

    /// Withdraws grants of a client: those of the listed resources (every name of a DNS
    /// resource), or all of them when `resource_ids` is empty. Returns whether the client has
    /// grants left; without any it is forgotten.
    pub fn revoke(&mut self, peer: PeerId, resource_ids: &[String]) -> bool {
        let Some(client) = self.clients.get_mut(&peer) else {
            return false;
        };
        if resource_ids.is_empty() {
            client.grants.clear();
        } else {
            client
                .grants
                .retain(|key, _| !resource_ids.contains(&key.resource_id));
        }
        self.refresh(peer)
    }

    /// Withdraws one grant (e.g. when it expires). Returns whether the client has grants left.
    pub fn revoke_grant(&mut self, peer: PeerId, key: &GrantKey) -> bool {
        let Some(client) = self.clients.get_mut(&peer) else {
            return false;
        };
        client.grants.remove(key);
        self.refresh(peer)
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

        // Proxy IP → real address, for the packet itself and for what an ICMP error quotes.
        let real = client.proxies.get(&flow.destination).copied();
        let quoted_real = summary
            .quoted
            .and_then(|q| client.proxies.get(&q.source).copied());
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
                client,
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
                source: proxy_for(
                    &mut self.flows,
                    self.tick,
                    peer,
                    client,
                    &flow,
                    Direction::Reply,
                ),
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

    /// Recomputes what the filter and the translation know of one client from its grants.
    /// Returns whether it has grants left; a client without any is forgotten.
    fn refresh(&mut self, peer: PeerId) -> bool {
        let Some(client) = self.clients.get_mut(&peer) else {
            return false;
        };
        if client.grants.is_empty() {
            let addresses = std::mem::take(&mut client.addresses);
            for address in &addresses {
                self.by_address.remove(address);
            }
            self.filter.remove_client(&addresses);
            self.clients.remove(&peer);
            self.flows.retain(|key, _| key.peer != peer);
            return false;
        }
        let resources: Vec<GrantedResource> = client
            .grants
            .iter()
            .map(|(key, grant)| GrantedResource {
                id: key.resource_id.clone(),
                destinations: grant.destinations.clone(),
                rules: grant.rules.clone(),
            })
            .collect();
        client.proxies.clear();
        client.first_proxy.clear();
        for (proxy, real) in client.grants.values().flat_map(|g| g.proxies.iter()) {
            client.proxies.insert(*proxy, *real);
            client.first_proxy.entry(*real).or_insert(*proxy);
        }
        self.filter.set_grants(&client.addresses, resources);
        // Flows through a proxy IP that is gone or now stands for another address end.
        let proxies = &client.proxies;
        self.flows
            .retain(|key, flow| key.peer != peer || proxies.get(&flow.proxy) == Some(&key.real));
        true
    }
}

/// The proxy IP standing for the real end of `flow`, if it is a translated flow.
fn proxy_for(
    flows: &mut HashMap<FlowKey, FlowEntry>,
    tick: u64,
    peer: PeerId,
    client: &Client,
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
    match flows.get_mut(&key) {
        Some(entry) => {
            entry.last_used = tick;
            Some(entry.proxy)
        }
        None => client.first_proxy.get(&real).copied(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    /// A packet from the real address to the client.
    Reply,
    /// A packet the client sent to the real address (quoted in an ICMP error).
    ClientSent,
}

#[cfg(test)]
mod tests {
    use etherparse::{Icmpv4Type, PacketBuilder, icmpv4};

    use super::*;
    use crate::filter::Protocol;

    const PEER: PeerId = PeerId(1);
    const OTHER: PeerId = PeerId(2);
    const CLIENT: [u8; 4] = [100, 64, 0, 7];
    const CLIENT6: [u8; 16] = [
        0xfd, 0, 0x20, 0x21, 0x11, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
    ];
    const OTHER_CLIENT: [u8; 4] = [100, 64, 0, 8];
    const WEB: [u8; 4] = [10, 77, 0, 10];
    const NEIGHBOUR: [u8; 4] = [10, 77, 0, 11];
    const PROXY_A: [u8; 4] = [100, 96, 0, 1];
    const PROXY_B: [u8; 4] = [100, 96, 0, 2];
    const PROXY_C: [u8; 4] = [100, 96, 0, 5];
    const PROXY6: [u8; 16] = [
        0xfd, 0, 0x20, 0x21, 0x11, 0x11, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];

    fn addresses() -> Vec<IpAddr> {
        vec![IpAddr::from(CLIENT), IpAddr::from(CLIENT6)]
    }

    fn host(a: [u8; 4]) -> Prefix {
        Prefix::new(IpAddr::from(a), 32).unwrap()
    }

    fn key(resource: &str, domain: Option<&str>) -> GrantKey {
        GrantKey {
            resource_id: resource.into(),
            domain: domain.map(Into::into),
        }
    }

    fn http_only() -> Vec<Rule> {
        vec![Rule {
            protocol: Protocol::Tcp,
            ports: Some(80..=80),
        }]
    }

    /// The web server by IP, TCP/80 only.
    fn cidr_grant() -> ResourceGrant {
        ResourceGrant {
            destinations: vec![host(WEB)],
            rules: http_only(),
            proxies: vec![],
        }
    }

    /// `web.corp.example` resolved to WEB; the client's proxies A and B (v4) and one v6 proxy
    /// that has no IPv6 address to stand for.
    fn dns_grant() -> ResourceGrant {
        ResourceGrant {
            destinations: vec![host(WEB)],
            rules: http_only(),
            proxies: vec![
                (IpAddr::from(PROXY_A), IpAddr::from(WEB)),
                (IpAddr::from(PROXY_B), IpAddr::from(WEB)),
            ],
        }
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut packet = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1024)
            .write(&mut packet, b"GET /")
            .unwrap();
        packet
    }

    fn source(packet: &[u8]) -> [u8; 4] {
        packet[12..16].try_into().unwrap()
    }

    fn destination(packet: &[u8]) -> [u8; 4] {
        packet[16..20].try_into().unwrap()
    }

    #[test]
    fn granted_traffic_passes_both_ways_unchanged() {
        let mut router = GatewayRouter::new();
        router.set_grant(PEER, &addresses(), key("web", None), cidr_grant());
        let mut request = tcp(CLIENT, WEB, 40000, 80);
        let sent = request.clone();
        assert!(router.inbound(PEER, &mut request));
        assert_eq!(request, sent);
        let mut reply = tcp(WEB, CLIENT, 80, 40000);
        assert_eq!(router.outbound(&mut reply), Some(PEER));
        assert_eq!(reply, tcp(WEB, CLIENT, 80, 40000));
        let stats = router.stats();
        assert_eq!((stats.inbound_forwarded, stats.outbound_forwarded), (1, 1));
    }

    #[test]
    fn a_port_or_address_outside_the_grant_is_dropped_and_counted() {
        let mut router = GatewayRouter::new();
        router.set_grant(PEER, &addresses(), key("web", None), cidr_grant());
        assert!(!router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 22)));
        assert!(!router.inbound(PEER, &mut tcp(CLIENT, NEIGHBOUR, 40000, 80)));
        assert!(!router.inbound(PEER, &mut [0x45, 0, 0]));
        let stats = router.stats();
        assert_eq!(stats.dropped_not_allowed, 1);
        assert_eq!(stats.dropped_no_resource, 1);
        assert_eq!(stats.dropped_malformed, 1);
        assert_eq!(stats.inbound_forwarded, 0);
    }

    #[test]
    fn a_client_cannot_send_as_another_client() {
        let mut router = GatewayRouter::new();
        router.set_grant(PEER, &addresses(), key("web", None), cidr_grant());
        router.set_grant(
            OTHER,
            &[IpAddr::from(OTHER_CLIENT)],
            key("web", None),
            cidr_grant(),
        );
        // PEER forges OTHER's address (which has the same grant): still dropped.
        assert!(!router.inbound(PEER, &mut tcp(OTHER_CLIENT, WEB, 40000, 80)));
        assert!(!router.inbound(PeerId(99), &mut tcp(CLIENT, WEB, 40000, 80)));
        assert_eq!(router.stats().dropped_spoofed, 2);
        assert!(router.inbound(OTHER, &mut tcp(OTHER_CLIENT, WEB, 40000, 80)));
    }

    #[test]
    fn replies_go_to_the_client_with_that_tunnel_address_only() {
        let mut router = GatewayRouter::new();
        router.set_grant(PEER, &addresses(), key("web", None), cidr_grant());
        router.set_grant(
            OTHER,
            &[IpAddr::from(OTHER_CLIENT)],
            key("web", None),
            cidr_grant(),
        );
        assert_eq!(router.outbound(&mut tcp(WEB, CLIENT, 80, 1)), Some(PEER));
        assert_eq!(
            router.outbound(&mut tcp(WEB, OTHER_CLIENT, 80, 1)),
            Some(OTHER)
        );
        assert_eq!(router.outbound(&mut tcp(WEB, [100, 64, 0, 9], 80, 1)), None);
        assert_eq!(router.stats().dropped_no_client, 1);
    }

    #[test]
    fn proxy_ips_are_translated_to_the_real_address_and_back() {
        let mut router = GatewayRouter::new();
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        let mut request = tcp(CLIENT, PROXY_A, 40000, 80);
        assert!(router.inbound(PEER, &mut request));
        assert_eq!(request, tcp(CLIENT, WEB, 40000, 80));

        let mut reply = tcp(WEB, CLIENT, 80, 40000);
        assert_eq!(router.outbound(&mut reply), Some(PEER));
        assert_eq!(reply, tcp(PROXY_A, CLIENT, 80, 40000));

        // The filter checks the real destination: port 22 behind the proxy is still denied.
        let mut ssh = tcp(CLIENT, PROXY_A, 40001, 22);
        assert!(!router.inbound(PEER, &mut ssh));
        assert_eq!(router.stats().dropped_not_allowed, 1);
        assert_eq!(router.stats().inbound_translated, 1);
    }

    #[test]
    fn each_flow_gets_replies_from_the_proxy_ip_it_used() {
        let mut router = GatewayRouter::new();
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        // A second name resolving to the same address, with its own proxy IP.
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("www.corp.example")),
            ResourceGrant {
                proxies: vec![(IpAddr::from(PROXY_C), IpAddr::from(WEB))],
                ..dns_grant()
            },
        );
        for (proxy, port) in [(PROXY_B, 41000), (PROXY_C, 42000), (PROXY_A, 43000)] {
            assert!(router.inbound(PEER, &mut tcp(CLIENT, proxy, port, 80)));
        }
        for (proxy, port) in [(PROXY_A, 43000), (PROXY_B, 41000), (PROXY_C, 42000)] {
            let mut reply = tcp(WEB, CLIENT, 80, port);
            assert_eq!(router.outbound(&mut reply), Some(PEER));
            assert_eq!(source(&reply), proxy, "reply to port {port}");
        }
        assert_eq!(router.flows(), 3);
    }

    #[test]
    fn idle_flows_are_forgotten_and_replies_fall_back_to_the_first_proxy() {
        let mut router = GatewayRouter::new();
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        assert!(router.inbound(PEER, &mut tcp(CLIENT, PROXY_B, 41000, 80)));
        for _ in 0..FLOW_IDLE_TICKS - 1 {
            router.tick();
        }
        assert_eq!(router.flows(), 1);
        // Used again: stays.
        let mut reply = tcp(WEB, CLIENT, 80, 41000);
        router.outbound(&mut reply);
        assert_eq!(source(&reply), PROXY_B);
        router.tick();
        assert_eq!(router.flows(), 1);
        for _ in 0..FLOW_IDLE_TICKS {
            router.tick();
        }
        assert_eq!(router.flows(), 0);
        let mut reply = tcp(WEB, CLIENT, 80, 41000);
        assert_eq!(router.outbound(&mut reply), Some(PEER));
        assert_eq!(source(&reply), PROXY_A);
    }

    #[test]
    fn icmp_errors_about_translated_flows_are_translated_too() {
        let mut router = GatewayRouter::new();
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        let mut request = tcp(CLIENT, PROXY_B, 41000, 80);
        assert!(router.inbound(PEER, &mut request));
        // A router on the LAN reports "fragmentation needed" about the translated packet.
        let mut error = Vec::new();
        PacketBuilder::ipv4([10, 77, 0, 1], CLIENT, 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1200 },
            ))
            .write(&mut error, &request[..28])
            .unwrap();
        assert_eq!(router.outbound(&mut error), Some(PEER));
        // The outer source is the LAN router's, untouched; the quote names the proxy again.
        assert_eq!(source(&error), [10, 77, 0, 1]);
        assert_eq!(destination(&error[28..]), PROXY_B);
        let (header, rest) = etherparse::Ipv4Header::from_slice(&error).unwrap();
        assert_eq!(header.header_checksum, header.calc_header_checksum());
        let icmp = etherparse::Icmpv4Slice::from_slice(rest).unwrap();
        let recomputed = icmp.header().icmp_type.calc_checksum(icmp.payload());
        assert_eq!(icmp.checksum(), recomputed);
    }

    #[test]
    fn a_proxy_ip_without_a_real_address_of_its_family_reaches_nothing() {
        let mut router = GatewayRouter::new();
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        let mut packet = Vec::new();
        PacketBuilder::ipv6(CLIENT6, PROXY6, 64)
            .tcp(40000, 80, 1, 1024)
            .write(&mut packet, b"")
            .unwrap();
        assert!(!router.inbound(PEER, &mut packet));
        assert_eq!(router.stats().dropped_no_resource, 1);
    }

    #[test]
    fn revoking_stops_the_flow_at_once_and_forgets_a_client_without_grants() {
        let mut router = GatewayRouter::new();
        router.set_grant(PEER, &addresses(), key("web", None), cidr_grant());
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        assert!(router.inbound(PEER, &mut tcp(CLIENT, PROXY_A, 40000, 80)));

        assert!(router.revoke(PEER, &["web-dns".into()]));
        assert!(!router.inbound(PEER, &mut tcp(CLIENT, PROXY_A, 40000, 80)));
        assert_eq!(router.flows(), 0);
        assert!(router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 80)));

        assert!(!router.revoke_grant(PEER, &key("web", None)));
        assert!(!router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 80)));
        assert_eq!(router.clients().count(), 0);
        assert_eq!(router.outbound(&mut tcp(WEB, CLIENT, 80, 40000)), None);
    }

    #[test]
    fn revoking_everything_with_an_empty_list() {
        let mut router = GatewayRouter::new();
        router.set_grant(PEER, &addresses(), key("web", None), cidr_grant());
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        assert!(!router.revoke(PEER, &[]));
        assert!(!router.inbound(PEER, &mut tcp(CLIENT, WEB, 40000, 80)));
        assert!(!router.revoke(PeerId(42), &[]));
    }

    #[test]
    fn garbage_either_way_is_dropped_never_a_panic() {
        let mut router = GatewayRouter::new();
        router.set_grant(
            PEER,
            &addresses(),
            key("web-dns", Some("web.corp.example")),
            dns_grant(),
        );
        let sample = tcp(CLIENT, PROXY_A, 40000, 80);
        for len in 0..sample.len() {
            let mut cut = sample[..len].to_vec();
            assert!(!router.inbound(PEER, &mut cut));
            let mut cut = tcp(WEB, CLIENT, 80, 40000)[..len].to_vec();
            assert_eq!(router.outbound(&mut cut), None);
        }
        for seed in 0..1000u32 {
            let mut bytes: Vec<u8> = (0..(seed % 80) as usize)
                .map(|i| ((i as u32).wrapping_mul(2654435761) ^ seed) as u8)
                .collect();
            let _ = router.inbound(PEER, &mut bytes.clone());
            let _ = router.outbound(&mut bytes);
        }
    }
}
