//! The product in simulated time: the client's whole [`ClientState`] (routing, access
//! requests, held packets, views — not just its engine), gateways, TURN relays and a portal
//! model that answers access requests and relays ICE candidates, on the same network model as
//! [`crate::Sim`] (NATs, links with latency, loss and cuts).
//!
//! The gateways run their whole `GatewayState` (grants, the packet filter, proxy-IP
//! translation, expiry); each one's site is the test: what the state let through to the site
//! is recorded, and the test answers with [`World::gateway_reply`]. DNS names of resources
//! resolve through `PortalModel::site_names`.
//!
//! The portal model keeps the promises the real portal makes: a request for a listed resource
//! that the policy allows is granted through an online gateway of its site (both sides get
//! fresh credentials and a preshared key), anything else is denied with the reason; while the
//! portal is down its messages are lost and nothing is granted; when it comes back the client
//! gets a new `init`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ember_client::{ClientConfig, ClientOutput, ClientState, ResolvedRelay};
use ember_engine::{Engine, EngineConfig, Role};
use ember_gateway::state::{GatewayConfig, GatewayState, Input, Output};
use ember_io::driver::State as _;
use ember_protocol::ipc::ResourceView;
use ember_protocol::portal::{
    ClientMessage, GatewayMessage, Interface, PortalToClient, PortalToGateway, Resource, SiteInfo,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::host::Link;
use crate::nat::{Nat, NatConfig};
use crate::relay::TurnServer;

mod network;
mod portal_model;

use network::attach;
use portal_model::account;

/// The client's tunnel address.
pub const CLIENT_TUN: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 7);
/// The portal's id of the one client device.
pub const CLIENT_ID: &str = "device-1";
/// The Unix time the simulation starts at (grants expire an hour after they are given).
const UNIX_START: u64 = 1_800_000_000;
const RELAY_USER: &str = "sim-user";
const RELAY_PASSWORD: &str = "sim-password";

/// Where a node is on the network: its socket, its NAT, its access link.
#[derive(Debug)]
struct Attachment {
    socket: SocketAddr,
    nat: Option<Nat>,
    link: Link,
}

impl Attachment {
    fn public_ip(&self) -> IpAddr {
        self.nat.as_ref().map_or(self.socket.ip(), Nat::public_ip)
    }
}

#[derive(Debug)]
pub struct ClientNode {
    pub state: ClientState,
    net: Attachment,
    /// Packets the client wrote to its TUN device, with when.
    pub tun: Vec<(Instant, Vec<u8>)>,
    /// What the app would show now.
    pub views: Vec<ResourceView>,
    next_timeout: Option<Instant>,
}

#[derive(Debug)]
pub struct GatewayNode {
    pub id: String,
    pub site_id: String,
    pub state: GatewayState,
    net: Attachment,
    /// Packets from the client the gateway let through to its site, with when.
    pub received: Vec<(Instant, Vec<u8>)>,
    pub online: bool,
    next_timeout: Option<Instant>,
}

/// The portal's part.
#[derive(Debug)]
pub struct PortalModel {
    pub up: bool,
    pub resources: Vec<Resource>,
    /// Resources listed to the client that no policy grants.
    pub forbidden: HashSet<String>,
    /// Requests granted so far.
    pub grants: u64,
    /// What DNS names resolve to at the sites.
    pub site_names: BTreeMap<String, Vec<IpAddr>>,
}

#[derive(Debug)]
enum Message {
    ToClient(Box<PortalToClient>),
    FromClient(ClientMessage),
    ToGateway(usize, Box<PortalToGateway>),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Client,
    Gateway(usize),
}

pub struct World {
    pub now: Instant,
    pub start: Instant,
    rng: ChaCha20Rng,
    pub client: ClientNode,
    pub gateways: Vec<GatewayNode>,
    pub relays: Vec<TurnServer>,
    pub portal: PortalModel,
    /// One way, portal ⇄ either side.
    pub signal_latency: Duration,
    /// Until then datagrams between the client and gateways are lost unless a relay sends
    /// them (a firewall that lets only the relay through, for a while).
    pub direct_blocked_until: Option<Instant>,
    network: BinaryHeap<Reverse<InFlight>>,
    messages: BinaryHeap<Reverse<(Instant, u64)>>,
    payloads: BTreeMap<u64, Message>,
    next_seq: u64,
    next_public: u8,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

impl World {
    /// A signed-in client (behind `nat`, or on a public address) that lists `resources`.
    #[must_use]
    pub fn new(seed: u64, resources: Vec<Resource>, nat: Option<NatConfig>) -> Self {
        // The only clock reading of the simulation: an arbitrary origin for simulated time.
        let start = Instant::now();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut private_key = [0u8; 32];
        rng.fill_bytes(&mut private_key);
        let state = ClientState::new(
            ClientConfig {
                private_key,
                seed: rng.next_u64(),
                ipv6: false,
                internet_enabled: false,
            },
            start,
        );
        let public = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let net = attach(
            public,
            Ipv4Addr::new(10, 1, 0, 2),
            nat,
            Duration::from_millis(10),
        );
        let mut world = Self {
            now: start,
            start,
            rng,
            client: ClientNode {
                state,
                net,
                tun: Vec::new(),
                views: Vec::new(),
                next_timeout: None,
            },
            gateways: Vec::new(),
            relays: Vec::new(),
            portal: PortalModel {
                up: true,
                resources,
                forbidden: HashSet::new(),
                grants: 0,
                site_names: BTreeMap::new(),
            },
            signal_latency: Duration::from_millis(20),
            direct_blocked_until: None,
            network: BinaryHeap::new(),
            messages: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            next_seq: 0,
            next_public: 2,
        };
        let socket = world.client.net.socket;
        world.client.state.handle_local_addresses(&[socket], start);
        let init = world.init();
        world.client.state.handle_portal_message(init, start);
        world.drain(Node::Client);
        world
    }

    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Adds an online gateway of `site_id` (behind `nat`, or on a public address).
    pub fn add_gateway(&mut self, site_id: &str, nat: Option<NatConfig>) -> usize {
        let index = self.gateways.len();
        let public = self.fresh_public_ip();
        let lan = Ipv4Addr::new(10, 2, u8::try_from(index).unwrap_or(u8::MAX), 2);
        let net = attach(public, lan, nat, Duration::from_millis(10));
        let id = format!("gw-{index}");
        let state = self.gateway_state(&id, site_id, &net);
        self.gateways.push(GatewayNode {
            id,
            site_id: site_id.to_owned(),
            state,
            net,
            received: Vec::new(),
            online: true,
            next_timeout: None,
        });
        self.drain(Node::Gateway(index));
        index
    }

    /// Adds a TURN relay on the public internet and tells everyone.
    pub fn add_relay(&mut self) -> usize {
        let index = self.relays.len();
        let ip = IpAddr::V4(Ipv4Addr::new(
            203,
            0,
            113,
            10 + u8::try_from(index).unwrap_or(0),
        ));
        let mut relay = TurnServer::new(SocketAddr::new(ip, 3478), "ember");
        relay.add_credentials(RELAY_USER, RELAY_PASSWORD);
        self.relays.push(relay);
        let now = self.now;
        let resolved = self.resolved_relays();
        self.client.state.handle_relays(resolved, now);
        self.drain(Node::Client);
        for index in 0..self.gateways.len() {
            let message = PortalToGateway::RelaysUpdated {
                relays: self.portal_relays(),
            };
            self.gateways[index]
                .state
                .handle_input(Input::Portal(Box::new(message)), now);
            self.drain(Node::Gateway(index));
        }
        index
    }

    /// A packet from an application on the client towards `dst` (UDP port 9).
    pub fn client_sends(&mut self, dst: Ipv4Addr, seq: u64) {
        self.client_sends_to_port(dst, 9, seq);
    }

    /// A UDP packet from an application on the client towards `dst`:`port`.
    pub fn client_sends_to_port(&mut self, dst: Ipv4Addr, port: u16, seq: u64) {
        let mut packet = udp_packet((CLIENT_TUN, 40000), (dst, port), seq);
        let now = self.now;
        self.client.state.handle_tun_packet(&mut packet, now);
        self.drain(Node::Client);
    }

    /// The resource host `src` behind gateway `gateway` answers the client.
    pub fn gateway_reply(&mut self, gateway: usize, src: Ipv4Addr, seq: u64) {
        let mut packet = udp_packet((src, 9), (CLIENT_TUN, 40000), seq);
        let now = self.now;
        self.gateways[gateway]
            .state
            .handle_tun_packet(&mut packet, now);
        self.drain(Node::Gateway(gateway));
    }

    /// The sequence numbers the gateway received from the client, in order.
    #[must_use]
    pub fn received_at(&self, gateway: usize) -> Vec<u64> {
        self.gateways[gateway]
            .received
            .iter()
            .filter_map(|(_, p)| packet_seq(p))
            .collect()
    }

    /// The portal goes away (its messages are lost) or comes back (the client gets `init`).
    pub fn set_portal_up(&mut self, up: bool) {
        self.portal.up = up;
        if up {
            let init = self.init();
            let at = self.now + self.signal_latency;
            self.schedule(at, Message::ToClient(Box::new(init)));
        }
    }

    /// The gateway restarts: a new state with a new key and no grants (the portal knows the
    /// new key at once; the client finds out when its connection fails).
    pub fn restart_gateway(&mut self, gateway: usize) {
        let (id, site_id) = (
            self.gateways[gateway].id.clone(),
            self.gateways[gateway].site_id.clone(),
        );
        let (socket, public) = {
            let net = &self.gateways[gateway].net;
            (net.socket, net.public_ip())
        };
        self.gateways[gateway].state = self.gateway_state_at(&id, &site_id, socket, public);
        self.gateways[gateway].next_timeout = None;
        self.drain(Node::Gateway(gateway));
    }

    /// A gateway's process stops: its portal link drops, so the portal marks it offline and
    /// tells the client at once (`GatewayOffline`), as the real portal does.
    pub fn stop_gateway(&mut self, gateway: usize) {
        self.gateways[gateway].online = false;
        let message = PortalToClient::GatewayOffline {
            gateway_id: self.gateways[gateway].id.clone(),
            resource_ids: self.portal.resources.iter().map(|r| r.id.clone()).collect(),
        };
        let at = self.now + self.signal_latency;
        self.schedule(at, Message::ToClient(Box::new(message)));
    }

    /// The stopped gateway starts again: a new state (a new key, no grants), online again.
    pub fn start_gateway(&mut self, gateway: usize) {
        self.restart_gateway(gateway);
        self.gateways[gateway].online = true;
    }

    /// A raw packet from the client's TUN side (e.g. with a forged source).
    pub fn client_sends_packet(&mut self, mut packet: Vec<u8>) {
        let now = self.now;
        self.client.state.handle_tun_packet(&mut packet, now);
        self.drain(Node::Client);
    }

    /// The client moves to another network: a new address behind a new NAT of the same kind
    /// (or a new public address); the OS tells the service, which starts connections over.
    pub fn move_client(&mut self) {
        let public = self.fresh_public_ip();
        let net = &mut self.client.net;
        net.socket = match net.nat.as_mut() {
            Some(nat) => {
                nat.renumber(public);
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 2)), net.socket.port())
            }
            None => SocketAddr::new(public, net.socket.port()),
        };
        let (socket, now) = (net.socket, self.now);
        self.client.state.handle_local_addresses(&[socket], now);
        self.client.state.handle_network_change(now);
        self.drain(Node::Client);
    }

    /// A relay restarts: every allocation, permission and channel is gone.
    pub fn restart_relay(&mut self, relay: usize) {
        self.relays[relay].restart();
    }

    /// The NAT in front of the client or a gateway forgets every mapping.
    pub fn flush_client_nat(&mut self) {
        if let Some(nat) = self.client.net.nat.as_mut() {
            nat.forget_all();
        }
    }

    pub fn flush_gateway_nat(&mut self, gateway: usize) {
        if let Some(nat) = self.gateways[gateway].net.nat.as_mut() {
            nat.forget_all();
        }
    }

    pub fn client_link(&mut self) -> &mut Link {
        &mut self.client.net.link
    }

    pub fn gateway_link(&mut self, gateway: usize) -> &mut Link {
        &mut self.gateways[gateway].net.link
    }

    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run_until(until);
    }

    /// Runs until `cond` holds or `limit` passes; whether it held.
    pub fn run_until_cond(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&World) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if cond(self) {
                return true;
            }
            let next = (self.now + Duration::from_millis(5)).min(end);
            self.run_until(next);
        }
        cond(self)
    }

    pub fn run_until(&mut self, until: Instant) {
        loop {
            let packet = self.network.peek().map(|Reverse(p)| (p.at, 0, 0));
            let message = self.messages.peek().map(|Reverse((at, _))| (*at, 1, 0));
            let client = self.client.next_timeout.map(|at| (at, 2, 0));
            let gateway = self
                .gateways
                .iter()
                .enumerate()
                .filter_map(|(i, g)| g.next_timeout.map(|at| (at, 3, i)))
                .min();
            let relay = self
                .relays
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.next_timeout().map(|at| (at, 4, i)))
                .min();
            let Some((at, kind, index)) = [packet, message, client, gateway, relay]
                .into_iter()
                .flatten()
                .min()
            else {
                self.now = until;
                return;
            };
            if at > until {
                self.now = until;
                return;
            }
            self.now = at.max(self.now);
            let now = self.now;
            match kind {
                0 => {
                    if let Some(Reverse(p)) = self.network.pop() {
                        self.arrive(p);
                    }
                }
                1 => {
                    if let Some(Reverse((_, seq))) = self.messages.pop()
                        && let Some(message) = self.payloads.remove(&seq)
                    {
                        self.deliver(message);
                    }
                }
                2 => {
                    self.client.state.handle_timeout(now);
                    self.drain(Node::Client);
                }
                3 => {
                    self.gateways[index].state.handle_timeout(now);
                    self.drain(Node::Gateway(index));
                }
                _ => {
                    let _ = self.relays[index].handle_timeout(now);
                }
            }
        }
    }

    // --- inside ----------------------------------------------------------------------------

    fn gateway_state(&mut self, id: &str, site_id: &str, net: &Attachment) -> GatewayState {
        self.gateway_state_at(id, site_id, net.socket, net.public_ip())
    }

    /// A gateway as it starts: a new key, then the portal's `init`.
    fn gateway_state_at(
        &mut self,
        id: &str,
        site_id: &str,
        socket: SocketAddr,
        public: IpAddr,
    ) -> GatewayState {
        let mut private_key = [0u8; 32];
        self.rng.fill_bytes(&mut private_key);
        let seed = self.rng.next_u64();
        let now = self.now;
        let engine = Engine::new(EngineConfig::new(Role::Gateway, private_key, seed), now);
        let interface = Interface {
            ipv4: Ipv4Addr::new(100, 64, 0, 1),
            ipv6: Ipv6Addr::LOCALHOST,
        };
        let mut state = GatewayState::new(
            engine,
            GatewayConfig {
                interface,
                own_addresses: vec![socket.ip(), public],
                reconfirm_within: Duration::from_secs(10),
            },
            self.unix_now(),
            now,
        );
        state.handle_local_addresses(&[socket], now);
        let init = PortalToGateway::Init {
            gateway_id: id.to_owned(),
            account: account(),
            site: SiteInfo {
                id: site_id.to_owned(),
                name: site_id.to_owned(),
            },
            interface,
            relays: self.portal_relays(),
            heartbeat_interval_ms: 10_000,
        };
        state.handle_input(Input::Portal(Box::new(init)), now);
        state
    }

    fn unix_now(&self) -> u64 {
        UNIX_START + self.elapsed().as_secs()
    }

    fn resolved_relays(&self) -> Vec<ResolvedRelay> {
        self.relays
            .iter()
            .enumerate()
            .map(|(i, r)| ResolvedRelay {
                relay_id: format!("relay-{i}"),
                server: r.addr(),
                username: RELAY_USER.into(),
                password: RELAY_PASSWORD.into(),
            })
            .collect()
    }

    fn fresh_public_ip(&mut self) -> IpAddr {
        let n = self.next_public;
        self.next_public = self.next_public.wrapping_add(1);
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
    }

    fn schedule(&mut self, at: Instant, message: Message) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.payloads.insert(seq, message);
        self.messages.push(Reverse((at, seq)));
    }

    /// Drains a node's outputs after an input.
    fn drain(&mut self, node: Node) {
        let now = self.now;
        let at = now + self.signal_latency;
        match node {
            Node::Client => {
                while let Some(transmit) = self.client.state.poll_transmit() {
                    self.send(Node::Client, transmit);
                }
                while let Some(packet) = self.client.state.poll_tun_packet() {
                    self.client.tun.push((now, packet));
                }
                while let Some(message) = self.client.state.poll_portal_message() {
                    if self.portal.up {
                        self.schedule(at, Message::FromClient(message));
                    }
                }
                while let Some(output) = self.client.state.poll_output() {
                    if let ClientOutput::Views(views) = output {
                        self.client.views = views;
                    }
                }
                self.client.next_timeout =
                    self.client.state.poll_timeout().map(|(at, _)| at.max(now));
            }
            Node::Gateway(index) => {
                while let Some(transmit) = self.gateways[index].state.poll_transmit() {
                    self.send(node, transmit);
                }
                let gateway = &mut self.gateways[index];
                while let Some(packet) = gateway.state.poll_tun_packet() {
                    gateway.received.push((now, packet));
                }
                let mut outputs = Vec::new();
                while let Some(output) = gateway.state.poll_output() {
                    outputs.push(output);
                }
                gateway.next_timeout = gateway.state.poll_timeout().map(|(at, _)| at.max(now));
                for output in outputs {
                    self.carry_out(index, output, at);
                }
            }
        }
    }

    /// What a gateway's state asks of its controller and the portal.
    fn carry_out(&mut self, index: usize, output: Output, at: Instant) {
        let now = self.now;
        match output {
            Output::Portal(GatewayMessage::IceCandidates { candidates, .. }) if self.portal.up => {
                let message = PortalToClient::IceCandidates {
                    gateway_id: self.gateways[index].id.clone(),
                    candidates,
                };
                self.schedule(at, Message::ToClient(Box::new(message)));
            }
            Output::Portal(_) => {}
            Output::Resolve { lookup, domain } => {
                let addresses = self
                    .portal
                    .site_names
                    .get(&domain)
                    .cloned()
                    .ok_or_else(|| format!("{domain} does not resolve at the site"));
                let input = Input::Resolved { lookup, addresses };
                self.gateways[index].state.handle_input(input, now);
                self.drain(Node::Gateway(index));
            }
            Output::ResolveRelays { query, relays } => {
                let relays = relays
                    .into_iter()
                    .map(|relay| {
                        let addresses = self
                            .relays
                            .iter()
                            .map(TurnServer::addr)
                            .filter(|a| relay.urls.contains(&format!("turn:{a}")))
                            .collect();
                        (relay, addresses)
                    })
                    .collect();
                let input = Input::RelaysResolved { query, relays };
                self.gateways[index].state.handle_input(input, now);
                self.drain(Node::Gateway(index));
            }
        }
    }

    fn deliver(&mut self, message: Message) {
        let now = self.now;
        match message {
            Message::ToClient(message) => {
                if self.portal.up {
                    self.client.state.handle_portal_message(*message, now);
                    self.drain(Node::Client);
                }
            }
            Message::FromClient(message) => self.portal_handles(message),
            Message::ToGateway(index, message) => {
                self.gateways[index]
                    .state
                    .handle_input(Input::Portal(message), now);
                self.drain(Node::Gateway(index));
            }
        }
    }
}

/// An IPv4/UDP packet (checksums right) from `src` to `dst` carrying `seq`: 36 bytes, the
/// sequence number at 28..36.
#[must_use]
pub fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), seq: u64) -> Vec<u8> {
    ember_packet::udp_packet(src.into(), dst.into(), &seq.to_be_bytes()).unwrap_or_default()
}

/// The sequence number of a packet made by [`udp_packet`].
#[must_use]
pub fn packet_seq(packet: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(packet.get(28..36)?.try_into().ok()?))
}
