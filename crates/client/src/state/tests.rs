//! The whole client state against a real gateway engine, in memory and in simulated time: the
//! datagrams of each side are handed to the other, the portal's part (grants, candidates) is
//! played by the test.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use ember_engine::Grant;
use ember_packet::udp_packet;
use ember_protocol::ipc::ResourceState;
use ember_protocol::portal::{
    AccountInfo, ActorInfo, IceCredentials, Interface, PeerInfo, Resource, ResourceAddress,
    SiteInfo,
};

use super::*;
use ember_packet::addresses;

const ME: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);
const CLIENT_SOCKET: &str = "192.0.2.1:40000";
const GATEWAY_SOCKET: &str = "192.0.2.2:50000";
const PRESHARED_KEY: [u8; 32] = [9; 32];
/// The peer the gateway's engine knows the client as.
const CLIENT_PEER: PeerId = PeerId(77);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn resource(id: &str, address: ResourceAddress) -> Resource {
    Resource {
        id: id.into(),
        name: format!("Resource {id}"),
        address,
        address_description: None,
        site: SiteInfo {
            id: "site_berlin".into(),
            name: "Berlin".into(),
        },
        filters: Vec::new(),
    }
}

fn lan() -> Resource {
    resource(
        "lan",
        ResourceAddress::Cidr {
            cidr: "10.20.0.0/16".into(),
        },
    )
}

fn init(resources: Vec<Resource>) -> PortalToClient {
    PortalToClient::Init {
        account: AccountInfo {
            id: "acc".into(),
            slug: "acme".into(),
            name: "Acme".into(),
        },
        actor: ActorInfo {
            id: "ada".into(),
            name: "Ada".into(),
            email: "ada@acme.example".into(),
        },
        interface: Interface {
            ipv4: ME,
            ipv6: Ipv6Addr::LOCALHOST,
        },
        resources,
        relays: Vec::new(),
        heartbeat_interval_ms: 10_000,
    }
}

fn udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    udp_packet(from, to, payload).unwrap()
}

fn to_lan(host: &str, payload: &[u8]) -> Vec<u8> {
    udp(
        (ME, 40000).into(),
        SocketAddr::new(host.parse().unwrap(), 9),
        payload,
    )
}

/// A client state and a gateway engine joined by a loss-free wire.
struct World {
    client: ClientState,
    gateway: Engine,
    now: Instant,
}

impl World {
    fn new(resources: Vec<Resource>) -> Self {
        let now = Instant::now();
        let mut client = ClientState::new(
            ClientConfig {
                private_key: [1; 32],
                seed: 1,
                ipv6: false,
                internet_enabled: false,
            },
            now,
        );
        client.handle_portal_message(init(resources), now);
        client.handle_local_addresses(&[CLIENT_SOCKET.parse().unwrap()], now);
        let mut gateway = Engine::new(EngineConfig::new(Role::Gateway, [2; 32], 2), now);
        gateway.handle_local_addresses(&[GATEWAY_SOCKET.parse().unwrap()], now);
        Self {
            client,
            gateway,
            now,
        }
    }

    fn portal_messages(&mut self) -> Vec<ClientMessage> {
        std::iter::from_fn(|| self.client.poll_portal_message()).collect()
    }

    /// The portal's answer to `request_id`: the client hears of the gateway, the gateway of
    /// the client.
    fn grant(&mut self, request_id: u64, resource_id: &str) {
        let gateway_key = self.gateway.public_key();
        self.gateway
            .handle_grant(
                Grant {
                    peer: CLIENT_PEER,
                    peer_public_key: self.client.engine().public_key(),
                    preshared_key: PRESHARED_KEY,
                    local_ice: ember_engine::IceCredentials {
                        ufrag: "gw".into(),
                        pwd: "gateway-password-0123456789".into(),
                    },
                    remote_ice: ember_engine::IceCredentials {
                        ufrag: "cl".into(),
                        pwd: "client-password-0123456789".into(),
                    },
                },
                self.now,
            )
            .unwrap();
        self.client.handle_portal_message(
            PortalToClient::AccessGranted {
                request_id,
                resource_id: resource_id.into(),
                domain: None,
                gateway: PeerInfo {
                    id: "gw-1".into(),
                    public_key: b64(&gateway_key),
                    ipv4: Ipv4Addr::new(100, 64, 0, 1),
                    ipv6: Ipv6Addr::LOCALHOST,
                },
                preshared_key: b64(&PRESHARED_KEY).into(),
                local_ice: IceCredentials {
                    ufrag: "cl".into(),
                    pwd: "client-password-0123456789".into(),
                },
                remote_ice: IceCredentials {
                    ufrag: "gw".into(),
                    pwd: "gateway-password-0123456789".into(),
                },
            },
            self.now,
        );
    }

    /// Moves datagrams, candidates and time (1 ms steps, or to the next timer) until `done`
    /// holds or `limit` has passed; returns what the gateway's engine decrypted meanwhile.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> Vec<Vec<u8>> {
        let end = self.now + limit;
        let mut at_gateway = Vec::new();
        while self.now < end {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                self.gateway
                    .handle_network_packet(t.dst, t.src, &t.payload, self.now);
            }
            while let Some(t) = self.gateway.poll_transmit() {
                moved = true;
                self.client
                    .handle_network_packet(t.dst, t.src, &t.payload, self.now);
            }
            while let Some(event) = self.gateway.poll_event() {
                if let Event::LocalCandidate { candidate, .. } = event {
                    moved = true;
                    self.client.handle_portal_message(
                        PortalToClient::IceCandidates {
                            gateway_id: "gw-1".into(),
                            candidates: vec![candidate],
                        },
                        self.now,
                    );
                }
            }
            for message in self.portal_messages() {
                if let ClientMessage::IceCandidates { candidates, .. } = message {
                    moved = true;
                    for candidate in candidates {
                        let _ =
                            self.gateway
                                .handle_remote_candidate(CLIENT_PEER, &candidate, self.now);
                    }
                }
            }
            while let Some((_, packet)) = self.gateway.poll_packet() {
                at_gateway.push(packet);
            }
            if done(self) {
                break;
            }
            if !moved {
                let client = self.client.poll_timeout().map(|(at, _)| at);
                let gateway = self.gateway.poll_timeout().map(|(at, _)| at);
                let next = client.into_iter().chain(gateway).min().unwrap_or(end);
                self.now = next.clamp(self.now + Duration::from_millis(1), end);
                self.client.handle_timeout(self.now);
                self.gateway.handle_timeout(self.now);
            }
        }
        at_gateway
    }

    fn view(&mut self, id: &str) -> Option<ResourceView> {
        let mut last = None;
        while let Some(views) = self.client.poll_view() {
            last = Some(views);
        }
        last?.into_iter().find(|v| v.id == id)
    }
}

#[test]
fn the_first_packet_to_a_resource_asks_once_and_reaches_the_gateway_after_the_grant() {
    let mut world = World::new(vec![lan()]);
    let now = world.now;
    world
        .client
        .handle_tun_packet(&mut to_lan("10.20.0.5", b"first"), now);
    world
        .client
        .handle_tun_packet(&mut to_lan("10.20.0.6", b"second"), now);
    let asked = world.portal_messages();
    let [
        ClientMessage::RequestAccess {
            request_id,
            resource_id,
            new_connection: true,
            ..
        },
    ] = asked.as_slice()
    else {
        panic!("expected one request for a new connection, got {asked:?}");
    };
    assert_eq!(resource_id, "lan");
    assert_eq!(
        world.view("lan").map(|v| v.state),
        Some(ResourceState::Connecting)
    );

    world.grant(*request_id, "lan");
    let mut arrived = Vec::new();
    arrived.extend(world.run(Duration::from_secs(5), |_| false));
    let payloads: Vec<&[u8]> = arrived.iter().map(|p| &p[28..]).collect();
    assert_eq!(
        payloads,
        [b"first".as_slice(), b"second".as_slice()],
        "held packets arrive once, in order"
    );
    assert_eq!(
        world.view("lan").map(|v| v.state),
        Some(ResourceState::Active)
    );
}

#[test]
fn only_sources_of_the_granted_resource_may_enter_from_the_gateway() {
    let mut world = World::new(vec![lan()]);
    let now = world.now;
    world
        .client
        .handle_tun_packet(&mut to_lan("10.20.0.5", b"hello"), now);
    let Some(ClientMessage::RequestAccess { request_id, .. }) = world.portal_messages().pop()
    else {
        panic!("no request");
    };
    world.grant(request_id, "lan");
    world.run(Duration::from_secs(5), |_| false);
    while world.client.poll_tun_packet().is_some() {}

    for (source, payload) in [("10.20.0.5", b"reply".as_slice()), ("10.99.0.1", b"forged")] {
        let packet = udp(
            SocketAddr::new(source.parse().unwrap(), 9),
            (ME, 40000).into(),
            payload,
        );
        world
            .gateway
            .handle_tun_packet(CLIENT_PEER, &packet, world.now);
    }
    let mut entered = Vec::new();
    world.run(Duration::from_secs(1), |world| {
        while let Some(packet) = world.client.poll_tun_packet() {
            entered.push(packet);
        }
        false
    });
    let sources: Vec<IpAddr> = entered.iter().map(|p| addresses(p).unwrap().0).collect();
    assert_eq!(sources, ["10.20.0.5".parse::<IpAddr>().unwrap()]);
}

#[test]
fn other_names_go_to_the_upstream_resolvers_and_their_answer_comes_back_from_the_stub() {
    let mut world = World::new(vec![lan()]);
    let now = world.now;
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    let asker: SocketAddr = (ME, 5353).into();
    let sentinel: SocketAddr = (crate::SENTINEL_V4, 53).into();
    world
        .client
        .handle_tun_packet(&mut udp(asker, sentinel, &query), now);
    let forwarded = world.client.poll_dns_query().expect("a query to forward");
    assert_eq!(
        (forwarded.client, forwarded.sentinel, &forwarded.query),
        (asker, sentinel, &query)
    );

    let mut answer = query.clone();
    answer[2] |= 0x80;
    world.client.handle_input(
        ClientInput::DnsAnswer {
            client: asker,
            sentinel,
            answer: answer.clone(),
        },
        now,
    );
    let packet = world.client.poll_tun_packet().expect("the answer");
    assert_eq!(
        addresses(&packet),
        Some((sentinel.ip(), asker.ip())),
        "from the stub to the asker"
    );
    assert_eq!(&packet[28..], answer.as_slice());
}

#[test]
fn the_system_follows_the_resources_and_the_internet_switch() {
    let mut world = World::new(vec![
        lan(),
        resource(
            "corp",
            ResourceAddress::Dns {
                pattern: "*.corp.example".into(),
            },
        ),
        resource("internet", ResourceAddress::Internet),
    ]);
    let changes: Vec<SystemChange> =
        std::iter::from_fn(|| world.client.poll_system_change()).collect();
    let routes = changes.iter().find_map(|c| match c {
        SystemChange::Routes(routes) => Some(routes.clone()),
        _ => None,
    });
    let routes = routes.expect("the first init sets the routes");
    assert!(routes.contains(&"10.20.0.0/16".parse().unwrap()));
    assert!(!routes.iter().any(Prefix::is_empty), "internet off");
    assert!(changes.contains(&SystemChange::DnsPatterns(vec!["*.corp.example".into()])));
    assert!(changes.contains(&SystemChange::ResolveRelays(Vec::new())));

    let now = world.now;
    world.client.set_internet_enabled(true, now);
    let Some(SystemChange::Routes(routes)) = world.client.poll_system_change() else {
        panic!("the routes follow the switch");
    };
    assert!(routes.iter().any(Prefix::is_empty));
    assert_eq!(world.view("internet").and_then(|v| v.enabled), Some(true));
    world.client.set_internet_enabled(true, now);
    assert_eq!(world.client.poll_system_change(), None, "nothing changed");

    world.client.handle_portal_message(
        PortalToClient::ResourcesUpdated {
            resources: vec![lan()],
        },
        now,
    );
    let changes: Vec<SystemChange> =
        std::iter::from_fn(|| world.client.poll_system_change()).collect();
    assert!(changes.contains(&SystemChange::DnsPatterns(Vec::new())));
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, SystemChange::Routes(r) if !r.iter().any(Prefix::is_empty)))
    );
}

#[test]
fn relays_keep_their_engine_ids_across_credential_updates() {
    let mut world = World::new(Vec::new());
    let relay = |password: &str| {
        ["198.51.100.7:3478", "[2001:db8::7]:3478"]
            .into_iter()
            .map(|server| ResolvedRelay {
                relay_id: "relay-1".into(),
                server: server.parse().unwrap(),
                username: "1700000000:client".into(),
                password: password.into(),
            })
            .collect::<Vec<_>>()
    };
    let now = world.now;
    world.client.handle_relays(relay("a"), now);
    let first = world.client.relay_ids.clone();
    world.client.handle_relays(relay("b"), now);
    assert_eq!(first.len(), 2);
    assert_eq!(world.client.relay_ids, first);
}

#[test]
fn statistics_are_read_every_second_only_while_a_connection_is_in_use() {
    let mut world = World::new(vec![lan()]);
    assert!(
        world
            .client
            .poll_timeout()
            .is_none_or(|(_, why)| why != Timer::Stats.as_str()),
        "no connection, no statistics timer"
    );
    let now = world.now;
    world
        .client
        .handle_tun_packet(&mut to_lan("10.20.0.5", b"hello"), now);
    let Some(ClientMessage::RequestAccess { request_id, .. }) = world.portal_messages().pop()
    else {
        panic!("no request");
    };
    world.grant(request_id, "lan");
    world.run(Duration::from_secs(2), |_| false);
    assert!(world.client.timers.next().is_some(), "active: refreshed");
}
