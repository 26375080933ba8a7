//! The gateway's state with a client engine, in simulated time: datagrams go straight from
//! one to the other, the test plays the portal, and time jumps to the next timer of either.

use std::net::{Ipv4Addr, Ipv6Addr};

use ember_engine::{ConnectionState, EngineConfig, Grant, Role};
use ember_protocol::portal::{
    AccountInfo, ActorInfo, ClientPeer, Filter, FilterProtocol, IceCredentials as PortalIce,
    PortRange, Resource, ResourceAddress, SiteInfo,
};
use ember_protocol::{IcePassword, PresharedKey, RelayPassword};
use etherparse::PacketBuilder;

use super::*;
use crate::grants::encode_key;

const UNIX_START: u64 = 1_800_000_000;
const CLIENT_ID: &str = "client-1";
/// How the client's engine knows the gateway.
const GATEWAY: PeerId = PeerId(1);
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 7);
const WEB: [u8; 4] = [10, 77, 0, 10];
const NEIGHBOUR: [u8; 4] = [10, 77, 0, 11];
const PROXY: [u8; 4] = [100, 96, 0, 1];
const GATEWAY_SOCKET: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
const CLIENT_SOCKET: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 40000);
const GATEWAY_UFRAG: &str = "gwuf";
const GATEWAY_PWD: &str = "gateway-ice-password-0123456789";
const CLIENT_UFRAG: &str = "cluf";
const CLIENT_PWD: &str = "client-ice-password-0123456789";
const PSK: [u8; 32] = [7; 32];
const RECONFIRM: Duration = Duration::from_secs(120);

/// The gateway's state, a client's engine and what came out of both.
struct Pair {
    start: Instant,
    now: Instant,
    gateway: GatewayState,
    client: Engine,
    /// Packets the gateway wrote to its TUN device.
    forwarded: Vec<Vec<u8>>,
    /// Packets the client's engine decrypted.
    delivered: Vec<Vec<u8>>,
    /// Messages for the portal other than ICE candidates.
    to_portal: Vec<GatewayMessage>,
    resolve: Vec<(LookupId, String)>,
    resolve_relays: Vec<(u64, Vec<Relay>)>,
    /// Destinations of the gateway's datagrams that went nowhere (relays).
    elsewhere: Vec<SocketAddr>,
}

impl Pair {
    fn new() -> Self {
        let start = Instant::now();
        let engine = Engine::new(EngineConfig::new(Role::Gateway, [2; 32], 2), start);
        let config = GatewayConfig {
            interface: interface(),
            own_addresses: vec![],
            reconfirm_within: RECONFIRM,
        };
        let mut gateway = GatewayState::new(engine, config, UNIX_START, start);
        gateway.handle_local_addresses(&[GATEWAY_SOCKET], start);
        let mut client = Engine::new(EngineConfig::new(Role::Client, [1; 32], 1), start);
        client.handle_local_addresses(&[CLIENT_SOCKET], start);
        let mut pair = Self {
            start,
            now: start,
            gateway,
            client,
            forwarded: Vec::new(),
            delivered: Vec::new(),
            to_portal: Vec::new(),
            resolve: Vec::new(),
            resolve_relays: Vec::new(),
            elsewhere: Vec::new(),
        };
        pair.portal(init());
        pair
    }

    fn portal(&mut self, message: PortalToGateway) {
        self.gateway
            .handle_input(Input::Portal(Box::new(message)), self.now);
        self.settle();
    }

    fn input(&mut self, input: Input) {
        self.gateway.handle_input(input, self.now);
        self.settle();
    }

    /// The portal's grant reaches both ends.
    fn grant(&mut self, resource: Resource, domain: Option<&str>, expires_at: u64) {
        let grant = Grant {
            peer: GATEWAY,
            peer_public_key: self.gateway.engine().public_key(),
            preshared_key: PSK,
            local_ice: ember_engine::IceCredentials {
                ufrag: CLIENT_UFRAG.into(),
                pwd: CLIENT_PWD.into(),
            },
            remote_ice: ember_engine::IceCredentials {
                ufrag: GATEWAY_UFRAG.into(),
                pwd: GATEWAY_PWD.into(),
            },
        };
        // Again for a connected client: the engine keeps the connection it has.
        let _ = self.client.handle_grant(grant, self.now);
        let message = grant_message(&self.client, resource, domain, expires_at);
        self.portal(message);
    }

    /// Runs every output of both sides until neither has anything to say.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            while let Some(t) = self.gateway.poll_transmit() {
                busy = true;
                if t.dst == CLIENT_SOCKET {
                    self.client
                        .handle_network_packet(t.dst, t.src, &t.payload, self.now);
                } else {
                    self.elsewhere.push(t.dst);
                }
            }
            while let Some(t) = self.client.poll_transmit() {
                busy = true;
                if t.dst == GATEWAY_SOCKET {
                    self.gateway
                        .handle_network_packet(t.dst, t.src, &t.payload, self.now);
                }
            }
            while let Some(packet) = self.gateway.poll_tun_packet() {
                busy = true;
                self.forwarded.push(packet);
            }
            while let Some((_, packet)) = self.client.poll_packet() {
                busy = true;
                self.delivered.push(packet);
            }
            while let Some(output) = self.gateway.poll_output() {
                busy = true;
                match output {
                    Output::Portal(GatewayMessage::IceCandidates { candidates, .. }) => {
                        for candidate in candidates {
                            let _ = self
                                .client
                                .handle_remote_candidate(GATEWAY, &candidate, self.now);
                        }
                    }
                    Output::Portal(message) => self.to_portal.push(message),
                    Output::Resolve { lookup, domain } => self.resolve.push((lookup, domain)),
                    Output::ResolveRelays { query, relays } => {
                        self.resolve_relays.push((query, relays));
                    }
                }
            }
            while let Some(event) = self.client.poll_event() {
                busy = true;
                if let Event::LocalCandidate { candidate, .. } = event {
                    let candidates = PortalToGateway::IceCandidates {
                        client_id: CLIENT_ID.into(),
                        candidates: vec![candidate],
                    };
                    self.gateway
                        .handle_input(Input::Portal(Box::new(candidates)), self.now);
                }
            }
            if !busy {
                return;
            }
        }
        panic!("the pair does not settle");
    }

    /// Runs both sides' timers up to `at` (after the start), in order.
    fn run_until(&mut self, at: Duration) {
        let until = self.start + at;
        for _ in 0..1_000_000 {
            self.settle();
            let next = [
                self.gateway.poll_timeout().map(|(at, _)| at),
                self.client.poll_timeout().map(|(at, _)| at),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|next| *next <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            if self
                .gateway
                .poll_timeout()
                .is_some_and(|(at, _)| at <= self.now)
            {
                self.gateway.handle_timeout(self.now);
            }
            if self
                .client
                .poll_timeout()
                .is_some_and(|(at, _)| at <= self.now)
            {
                self.client.handle_timeout(self.now);
            }
        }
        panic!("the timers do not move on");
    }

    /// Until both ends have an active connection.
    fn connect(&mut self) {
        for _ in 0..100 {
            let peer = self.gateway.peer_of(CLIENT_ID).unwrap();
            if self.client.state(GATEWAY) == Some(ConnectionState::Active)
                && self.gateway.engine().state(peer) == Some(ConnectionState::Active)
            {
                return;
            }
            let next = self.now + Duration::from_millis(50);
            self.run_until(next - self.start);
        }
        panic!("no connection within 5 s");
    }

    /// The client sends a packet into its tunnel; whether the gateway forwarded it.
    fn client_sends(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let before = self.forwarded.len();
        self.client.handle_tun_packet(GATEWAY, packet, self.now);
        self.settle();
        self.forwarded
            .get(before..)
            .and_then(|new| new.first().cloned())
    }

    fn health(&self) -> Vec<u32> {
        self.to_portal
            .iter()
            .filter_map(|m| match m {
                GatewayMessage::Health { connections, .. } => Some(*connections),
                _ => None,
            })
            .collect()
    }
}

fn interface() -> Interface {
    Interface {
        ipv4: Ipv4Addr::new(100, 64, 0, 1),
        ipv6: Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 1),
    }
}

fn init() -> PortalToGateway {
    PortalToGateway::Init {
        gateway_id: "gw-1".into(),
        account: AccountInfo {
            id: "acc-1".into(),
            slug: "acme".into(),
            name: "Acme".into(),
        },
        site: site(),
        interface: interface(),
        relays: vec![],
        heartbeat_interval_ms: 1000,
    }
}

fn site() -> SiteInfo {
    SiteInfo {
        id: "site-1".into(),
        name: "Site".into(),
    }
}

/// The web server by address, TCP/80 only.
fn web() -> Resource {
    resource("web", ResourceAddress::Ip { ip: WEB.into() })
}

/// The web server by name, TCP/80 only.
fn web_by_name() -> Resource {
    resource(
        "web-by-name",
        ResourceAddress::Dns {
            pattern: "web.corp.example".into(),
        },
    )
}

fn resource(id: &str, address: ResourceAddress) -> Resource {
    Resource {
        id: id.into(),
        name: id.into(),
        address,
        address_description: None,
        site: site(),
        filters: vec![Filter {
            protocol: FilterProtocol::Tcp,
            ports: Some(PortRange { start: 80, end: 80 }),
        }],
    }
}

fn grant_message(
    client: &Engine,
    resource: Resource,
    domain: Option<&str>,
    expires_at: u64,
) -> PortalToGateway {
    PortalToGateway::Grant {
        client: ClientPeer {
            id: CLIENT_ID.into(),
            public_key: encode_key(&client.public_key()),
            ipv4: CLIENT_V4,
            ipv6: CLIENT_V6,
            actor: ActorInfo {
                id: "actor-1".into(),
                name: "Ada".into(),
                email: "ada@acme.example".into(),
            },
        },
        resource,
        domain: domain.map(Into::into),
        proxy_ips: vec![PROXY.into()],
        preshared_key: PresharedKey::new(encode_key(&PSK)),
        local_ice: PortalIce {
            ufrag: GATEWAY_UFRAG.into(),
            pwd: IcePassword::new(GATEWAY_PWD),
        },
        remote_ice: PortalIce {
            ufrag: CLIENT_UFRAG.into(),
            pwd: IcePassword::new(CLIENT_PWD),
        },
        expires_at,
    }
}

fn tcp(src: Ipv4Addr, dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst, 64)
        .tcp(sport, dport, 1, 1024)
        .write(&mut packet, b"GET /")
        .unwrap();
    packet
}

fn destination(packet: &[u8]) -> [u8; 4] {
    packet[16..20].try_into().unwrap()
}

fn source(packet: &[u8]) -> [u8; 4] {
    packet[12..16].try_into().unwrap()
}

#[test]
fn a_grant_lets_its_client_reach_the_granted_port_and_nothing_else() {
    let mut pair = Pair::new();
    assert_eq!(pair.gateway.peer_of(CLIENT_ID), None);
    pair.grant(web(), None, UNIX_START + 3600);
    let peer = pair.gateway.peer_of(CLIENT_ID).unwrap();
    assert_eq!(pair.gateway.engine().peers().collect::<Vec<_>>(), [peer]);
    pair.connect();

    let to_web = pair.client_sends(&tcp(CLIENT_V4, WEB, 40_001, 80));
    assert_eq!(to_web.map(|p| destination(&p)), Some(WEB));
    assert_eq!(pair.client_sends(&tcp(CLIENT_V4, WEB, 40_002, 22)), None);
    assert_eq!(
        pair.client_sends(&tcp(CLIENT_V4, NEIGHBOUR, 40_003, 80)),
        None
    );
    // A source other than the client's own tunnel address is a forgery.
    let forged = Ipv4Addr::new(100, 64, 0, 8);
    assert_eq!(pair.client_sends(&tcp(forged, WEB, 40_004, 80)), None);
    let stats = pair.gateway.router().stats();
    assert_eq!(stats.inbound_forwarded, 1);
    assert_eq!(stats.dropped_not_allowed, 1);
    assert_eq!(stats.dropped_no_resource, 1);
    assert_eq!(stats.dropped_spoofed, 1);
}

#[test]
fn a_reply_from_the_site_goes_back_to_the_client_it_is_for() {
    let mut pair = Pair::new();
    pair.grant(web(), None, UNIX_START + 3600);
    pair.connect();
    let mut reply = tcp(Ipv4Addr::from(WEB), CLIENT_V4.octets(), 80, 40_001);
    pair.gateway.handle_tun_packet(&mut reply, pair.now);
    pair.settle();
    assert_eq!(pair.delivered.last(), Some(&reply));
    // Nobody has the neighbour's address: dropped at the gateway.
    let mut stray = tcp(Ipv4Addr::from(WEB), NEIGHBOUR, 80, 40_001);
    pair.gateway.handle_tun_packet(&mut stray, pair.now);
    pair.settle();
    assert_eq!(pair.delivered.len(), 1);
    assert_eq!(pair.gateway.router().stats().dropped_no_client, 1);
}

#[test]
fn revoking_the_last_grant_removes_the_client_and_its_connection() {
    let mut pair = Pair::new();
    pair.grant(web(), None, UNIX_START + 3600);
    pair.connect();
    assert!(
        pair.client_sends(&tcp(CLIENT_V4, WEB, 40_001, 80))
            .is_some()
    );
    pair.portal(PortalToGateway::Revoke {
        client_id: CLIENT_ID.into(),
        resource_ids: vec!["web".into()],
    });
    assert_eq!(pair.gateway.peer_of(CLIENT_ID), None);
    assert_eq!(pair.gateway.engine().peers().count(), 0);
    assert_eq!(pair.client_sends(&tcp(CLIENT_V4, WEB, 40_001, 80)), None);
}

#[test]
fn a_grant_ends_at_its_expiry_time_and_not_before() {
    let mut pair = Pair::new();
    pair.grant(web(), None, UNIX_START + 3600);
    pair.connect();
    let key = GrantKey {
        resource_id: "web".into(),
        domain: None,
    };
    let peer = pair.gateway.peer_of(CLIENT_ID).unwrap();
    pair.run_until(Duration::from_secs(3599));
    assert!(pair.gateway.router().has_grant(peer, &key));
    pair.run_until(Duration::from_secs(3600));
    assert!(!pair.gateway.router().has_grant(peer, &key));
    assert_eq!(pair.gateway.peer_of(CLIENT_ID), None);
    assert_eq!(pair.gateway.engine().peers().count(), 0);
}

#[test]
fn a_wall_clock_that_jumps_ahead_ends_grants_at_once() {
    let mut pair = Pair::new();
    pair.grant(web(), None, UNIX_START + 3600);
    pair.run_until(Duration::from_secs(60));
    assert!(pair.gateway.peer_of(CLIENT_ID).is_some());
    pair.input(Input::WallClock {
        unix_secs: UNIX_START + 3600,
    });
    assert!(pair.gateway.poll_timeout().unwrap().0 <= pair.now);
    pair.run_until(Duration::from_secs(60));
    assert_eq!(pair.gateway.peer_of(CLIENT_ID), None);
}

#[test]
fn a_grant_that_has_expired_already_is_ignored() {
    let mut pair = Pair::new();
    pair.grant(web(), None, UNIX_START);
    assert_eq!(pair.gateway.peer_of(CLIENT_ID), None);
    assert_eq!(pair.gateway.engine().peers().count(), 0);
}

#[test]
fn a_name_is_granted_once_resolved_and_its_proxy_ip_is_translated() {
    let mut pair = Pair::new();
    pair.grant(web_by_name(), Some("web.corp.example"), UNIX_START + 3600);
    assert_eq!(
        pair.gateway.peer_of(CLIENT_ID),
        None,
        "waits for the lookup"
    );
    let (lookup, domain) = pair.resolve.pop().unwrap();
    assert_eq!(domain, "web.corp.example");
    pair.input(Input::Resolved {
        lookup,
        addresses: Ok(vec![WEB.into()]),
    });
    assert!(pair.gateway.peer_of(CLIENT_ID).is_some());
    pair.connect();

    let forwarded = pair
        .client_sends(&tcp(CLIENT_V4, PROXY, 40_001, 80))
        .unwrap();
    assert_eq!(destination(&forwarded), WEB);
    let mut reply = tcp(Ipv4Addr::from(WEB), CLIENT_V4.octets(), 80, 40_001);
    pair.gateway.handle_tun_packet(&mut reply, pair.now);
    pair.settle();
    assert_eq!(pair.delivered.last().map(|p| source(p)), Some(PROXY));
}

#[test]
fn a_clients_messages_wait_behind_the_lookup_of_its_name() {
    let mut pair = Pair::new();
    pair.grant(web_by_name(), Some("web.corp.example"), UNIX_START + 3600);
    // The portal withdraws the grant before the name is resolved: the withdrawal must not
    // overtake the grant, or the grant would stay.
    pair.portal(PortalToGateway::Revoke {
        client_id: CLIENT_ID.into(),
        resource_ids: vec![],
    });
    let (lookup, _) = pair.resolve.pop().unwrap();
    pair.input(Input::Resolved {
        lookup,
        addresses: Ok(vec![WEB.into()]),
    });
    assert_eq!(pair.gateway.peer_of(CLIENT_ID), None);
    assert_eq!(pair.gateway.engine().peers().count(), 0);
}

#[test]
fn a_name_that_does_not_resolve_grants_nothing() {
    let mut pair = Pair::new();
    pair.grant(web_by_name(), Some("web.corp.example"), UNIX_START + 3600);
    let (lookup, _) = pair.resolve.pop().unwrap();
    pair.input(Input::Resolved {
        lookup,
        addresses: Err("NXDOMAIN".into()),
    });
    assert_eq!(pair.gateway.peer_of(CLIENT_ID), None);
}

#[test]
fn grants_the_portal_does_not_send_again_after_a_reconnect_are_dropped() {
    let mut pair = Pair::new();
    let other = resource(
        "other",
        ResourceAddress::Ip {
            ip: NEIGHBOUR.into(),
        },
    );
    pair.grant(web(), None, UNIX_START + 3600);
    pair.grant(other, None, UNIX_START + 3600);
    let peer = pair.gateway.peer_of(CLIENT_ID).unwrap();
    pair.run_until(Duration::from_secs(30));
    // The link came back: a new `init`, then the portal confirms only the web grant.
    pair.portal(init());
    pair.run_until(Duration::from_secs(31));
    pair.grant(web(), None, UNIX_START + 3600);
    let has = |pair: &Pair, id: &str| {
        let key = GrantKey {
            resource_id: id.into(),
            domain: None,
        };
        pair.gateway.router().has_grant(peer, &key)
    };
    pair.run_until(Duration::from_secs(30) + RECONFIRM - Duration::from_secs(1));
    assert!(has(&pair, "web") && has(&pair, "other"));
    pair.run_until(Duration::from_secs(30) + RECONFIRM);
    assert!(has(&pair, "web"));
    assert!(!has(&pair, "other"));
}

#[test]
fn health_reports_count_the_clients_every_ten_seconds() {
    let mut pair = Pair::new();
    pair.run_until(Duration::from_secs(5));
    assert_eq!(pair.health(), [0]);
    pair.grant(web(), None, UNIX_START + 3600);
    pair.run_until(Duration::from_secs(25));
    assert_eq!(pair.health(), [0, 1, 1]);
}

#[test]
fn only_the_answer_for_the_newest_relay_list_is_used() {
    let mut pair = Pair::new();
    let relay = |id: &str| Relay {
        id: id.into(),
        urls: vec![format!("turn:{id}.example:3478")],
        username: "1800003600:gw".into(),
        password: RelayPassword::new("turn-password"),
        expires_at: UNIX_START + 3600,
    };
    pair.portal(PortalToGateway::RelaysUpdated {
        relays: vec![relay("old")],
    });
    pair.portal(PortalToGateway::RelaysUpdated {
        relays: vec![relay("new")],
    });
    let (new_query, new) = pair.resolve_relays.pop().unwrap();
    let (old_query, old) = pair.resolve_relays.pop().unwrap();
    let old_server: SocketAddr = "203.0.113.1:3478".parse().unwrap();
    let new_server: SocketAddr = "203.0.113.2:3478".parse().unwrap();
    pair.input(Input::RelaysResolved {
        query: old_query,
        relays: old.into_iter().map(|r| (r, vec![old_server])).collect(),
    });
    pair.input(Input::RelaysResolved {
        query: new_query,
        relays: new.into_iter().map(|r| (r, vec![new_server])).collect(),
    });
    assert!(pair.elsewhere.contains(&new_server));
    assert!(!pair.elsewhere.contains(&old_server));
}
