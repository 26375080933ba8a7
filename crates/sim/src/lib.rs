//! A simulated network in simulated time for Ember's sans-IO engine.
//!
//! Hosts run an [`Engine`] each, optionally behind a NAT router (endpoint-independent or
//! symmetric mapping; endpoint-independent, address-dependent or address-and-port-dependent
//! filtering; mappings that expire when unused). Links have a one-way latency and random loss
//! and can be cut and restored. A small TURN relay model and a stub portal (grants and
//! candidate trickling with a signalling latency) complete the picture.
//!
//! Time only moves when the simulation says so: an hour of idle costs milliseconds.
//!
//! NAT model: a mapping is refreshed by every packet through it in either direction (as Linux
//! conntrack does for UDP) and removed once it has been unused for the NAT's timeout.

pub mod bench;
pub mod logging;
pub mod relay;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ember_engine::{
    ConnectionState, Engine, EngineConfig, Event, Grant, IceCredentials, LivenessPolicy, PeerId,
    RelayConfig, RelayId, Role, Transmit,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub use relay::TurnServer;

/// A host in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub usize);

impl HostId {
    /// The engine-level peer id other hosts use for this host.
    #[must_use]
    pub fn peer(self) -> PeerId {
        PeerId(self.0 as u64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    EndpointIndependent,
    /// A new external port for every destination.
    Symmetric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    EndpointIndependent,
    AddressDependent,
    AddressPortDependent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub timeout: Duration,
}

impl NatConfig {
    /// A typical home router: endpoint-independent mapping, port-restricted filtering.
    #[must_use]
    pub fn friendly(timeout: Duration) -> Self {
        Self {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::AddressPortDependent,
            timeout,
        }
    }

    #[must_use]
    pub fn symmetric(timeout: Duration) -> Self {
        Self {
            mapping: Mapping::Symmetric,
            filtering: Filtering::AddressPortDependent,
            timeout,
        }
    }
}

#[derive(Debug)]
struct NatEntry {
    internal: SocketAddr,
    /// Destination the mapping is for (symmetric NATs only).
    for_dst: Option<SocketAddr>,
    external_port: u16,
    last_active: Instant,
    contacted: HashSet<SocketAddr>,
}

#[derive(Debug)]
struct Nat {
    public_ip: IpAddr,
    config: NatConfig,
    entries: Vec<NatEntry>,
    next_port: u16,
}

impl Nat {
    fn expire(&mut self, now: Instant) {
        let timeout = self.config.timeout;
        self.entries.retain(|e| now < e.last_active + timeout);
    }

    fn outbound(&mut self, src: SocketAddr, dst: SocketAddr, now: Instant) -> SocketAddr {
        self.expire(now);
        let symmetric = self.config.mapping == Mapping::Symmetric;
        let found = self
            .entries
            .iter_mut()
            .find(|e| e.internal == src && (!symmetric || e.for_dst == Some(dst)));
        let entry = match found {
            Some(e) => e,
            None => {
                let port = self.next_port;
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                self.entries.push(NatEntry {
                    internal: src,
                    for_dst: symmetric.then_some(dst),
                    external_port: port,
                    last_active: now,
                    contacted: HashSet::new(),
                });
                let last = self.entries.len() - 1;
                &mut self.entries[last]
            }
        };
        entry.last_active = now;
        entry.contacted.insert(dst);
        SocketAddr::new(self.public_ip, entry.external_port)
    }

    fn inbound(&mut self, src: SocketAddr, dst_port: u16, now: Instant) -> Option<SocketAddr> {
        self.expire(now);
        let filtering = self.config.filtering;
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.external_port == dst_port)?;
        let allowed = match filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => entry.contacted.iter().any(|c| c.ip() == src.ip()),
            Filtering::AddressPortDependent => entry.contacted.contains(&src),
        };
        if !allowed {
            return None;
        }
        entry.last_active = now;
        Some(entry.internal)
    }
}

/// One direction-agnostic access link of a host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub latency: Duration,
    pub loss: f64,
    pub cut: bool,
}

impl Link {
    #[must_use]
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            loss: 0.0,
            cut: false,
        }
    }
}

/// Datagram counters of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireCounters {
    /// Datagrams this host put on the wire.
    pub sent: u64,
    /// Of those, TURN control traffic to a relay (allocate, refresh, permissions, bindings).
    pub sent_relay_control: u64,
    /// Datagrams that reached this host.
    pub received: u64,
    /// Of those, TURN control traffic from a relay (responses).
    pub received_relay_control: u64,
    /// Sent STUN to peers (liveness probes, their answers, idle keepalives, ICE checks).
    pub sent_peer_stun: u64,
    /// Sent WireGuard handshake messages.
    pub sent_wg_handshake: u64,
    /// Sent WireGuard keepalives (empty data messages).
    pub sent_wg_keepalive: u64,
    /// Sent WireGuard messages carrying application packets.
    pub sent_wg_data: u64,
}

impl WireCounters {
    /// Datagrams sent for the connections themselves (everything but relay control).
    #[must_use]
    pub fn connection_traffic(&self) -> u64 {
        self.sent - self.sent_relay_control
    }

    /// Datagrams sent that carry no application data and are not relay control.
    #[must_use]
    pub fn overhead(&self) -> u64 {
        self.sent_peer_stun + self.sent_wg_handshake + self.sent_wg_keepalive
    }
}

/// A packet delivered to a host's TUN side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub from: PeerId,
    pub packet: Vec<u8>,
    pub at: Instant,
}

pub struct Host {
    pub name: String,
    pub engine: Engine,
    pub role: Role,
    pub private_key: [u8; 32],
    socket: SocketAddr,
    nat: Option<Nat>,
    pub link: Link,
    pub counters: WireCounters,
    pub delivered: Vec<Delivery>,
    pub events: Vec<(Instant, Event)>,
    /// Distinct instants at which the engine was woken by its own timeout.
    pub wakeups: u64,
    last_wakeup: Option<Instant>,
    next_timeout: Option<Instant>,
    policy: LivenessPolicy,
    seed: u64,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// The host's local socket.
    #[must_use]
    pub fn socket(&self) -> SocketAddr {
        self.socket
    }

    /// State changes seen for `peer`, in order.
    #[must_use]
    pub fn states(&self, peer: PeerId) -> Vec<ConnectionState> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::StateChanged { peer: p, to, .. } if *p == peer => Some(*to),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug)]
enum Signal {
    Grant(Grant),
    Candidate(PeerId, String),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// The simulated world.
pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    rng: ChaCha20Rng,
    pub hosts: Vec<Host>,
    pub relays: Vec<TurnServer>,
    relay_link: Link,
    network: BinaryHeap<Reverse<InFlight>>,
    signals: BinaryHeap<Reverse<(Instant, u64, usize, usize)>>,
    signal_payloads: BTreeMap<usize, Signal>,
    next_seq: u64,
    pub signal_latency: Duration,
    /// Answer `ConnectionNeeded` with fresh grants to both sides, like the portal.
    pub auto_portal: bool,
    next_public: u8,
    relay_password: String,
    relay_generation: u64,
    /// Relays the portal currently hands out.
    relays_in_use: Vec<usize>,
    /// When set, every datagram put on the wire is recorded (source after NAT, destination,
    /// payload), e.g. for an attacker to replay.
    pub record_wire: bool,
    pub wire_log: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// The last grant given to (host, for peer host).
    last_grants: BTreeMap<(usize, usize), Grant>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Sim {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        // The only clock reading of the simulation: an arbitrary origin for simulated time.
        let start = Instant::now();
        Self {
            now: start,
            start,
            rng: ChaCha20Rng::seed_from_u64(seed),
            hosts: Vec::new(),
            relays: Vec::new(),
            relay_link: Link::with_latency(Duration::ZERO),
            network: BinaryHeap::new(),
            signals: BinaryHeap::new(),
            signal_payloads: BTreeMap::new(),
            next_seq: 0,
            signal_latency: Duration::from_millis(20),
            auto_portal: true,
            next_public: 1,
            relay_password: "secret-0".to_owned(),
            relay_generation: 0,
            relays_in_use: Vec::new(),
            record_wire: false,
            wire_log: Vec::new(),
            last_grants: BTreeMap::new(),
        }
    }

    /// Simulated time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Adds a TURN relay on the public internet; every host added later uses it.
    pub fn add_relay(&mut self) -> usize {
        let n = self.relays.len();
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + n as u8));
        self.relays
            .push(TurnServer::new(SocketAddr::new(ip, 3478), "ember"));
        let creds = (
            format!("user-{}", self.relay_generation),
            self.relay_password.clone(),
        );
        self.relays[n].add_credentials(&creds.0, &creds.1);
        self.relays_in_use.push(n);
        n
    }

    /// The portal replaces every relay by a new one (hosts are told at once; the old relays keep
    /// running until their allocations expire).
    pub fn replace_relays(&mut self) {
        self.relays_in_use.clear();
        self.add_relay();
        self.push_relays();
    }

    fn push_relays(&mut self) {
        let configs = self.relay_configs();
        let now = self.now;
        for i in 0..self.hosts.len() {
            self.hosts[i].engine.handle_relays(configs.clone(), now);
            self.drain(HostId(i));
        }
    }

    /// Adds a host running an engine, behind `nat` (or on a public address).
    pub fn add_host(
        &mut self,
        name: &str,
        role: Role,
        policy: LivenessPolicy,
        nat: Option<NatConfig>,
        latency: Duration,
    ) -> HostId {
        let id = HostId(self.hosts.len());
        let mut private_key = [0u8; 32];
        self.rng.fill_bytes(&mut private_key);
        let seed = self.rng.next_u64();
        let public_ip = self.fresh_public_ip();
        let (socket, nat) = match nat {
            Some(config) => (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, id.0 as u8, 2)), 51820),
                Some(Nat {
                    public_ip,
                    config,
                    entries: Vec::new(),
                    next_port: 40000,
                }),
            ),
            None => (SocketAddr::new(public_ip, 51820), None),
        };
        let mut config = EngineConfig::new(role, private_key, seed);
        config.policy = policy.clone();
        let engine = Engine::new(config, self.now);
        self.hosts.push(Host {
            name: name.to_owned(),
            engine,
            role,
            private_key,
            socket,
            nat,
            link: Link::with_latency(latency),
            counters: WireCounters::default(),
            delivered: Vec::new(),
            events: Vec::new(),
            wakeups: 0,
            last_wakeup: None,
            next_timeout: None,
            policy,
            seed,
        });
        let now = self.now;
        let relays = self.relay_configs();
        let host = &mut self.hosts[id.0];
        host.engine.handle_local_addresses(&[socket], now);
        host.engine.handle_relays(relays, now);
        self.drain(id);
        id
    }

    fn fresh_public_ip(&mut self) -> IpAddr {
        let n = self.next_public;
        self.next_public = self.next_public.wrapping_add(1);
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
    }

    fn relay_configs(&self) -> Vec<RelayConfig> {
        self.relays
            .iter()
            .enumerate()
            .filter(|(i, _)| self.relays_in_use.contains(i))
            .map(|(i, r)| RelayConfig {
                id: RelayId(i as u64),
                server: r.addr(),
                username: format!("user-{}", self.relay_generation),
                password: self.relay_password.clone(),
            })
            .collect()
    }

    /// The portal hands out fresh relay credentials (the old ones stop working at the relay).
    pub fn rotate_relay_credentials(&mut self) {
        self.relay_generation += 1;
        self.relay_password = format!("secret-{}", self.relay_generation);
        for r in &mut self.relays {
            r.replace_credentials(
                &format!("user-{}", self.relay_generation),
                &format!("secret-{}", self.relay_generation),
            );
        }
        self.push_relays();
    }

    /// The portal sends the last grants it gave `client` and `gateway` again (as after a
    /// portal restart).
    pub fn repeat_grants(&mut self, client: HostId, gateway: HostId) {
        let at = self.now + self.signal_latency;
        for (to, other) in [(client, gateway), (gateway, client)] {
            if let Some(g) = self.last_grants.get(&(to.0, other.0)).cloned() {
                self.signal(at, to, Signal::Grant(g));
            }
        }
    }

    /// The portal grants a connection between `client` and `gateway` (both sides, after the
    /// signalling latency).
    pub fn grant(&mut self, client: HostId, gateway: HostId) {
        let psk = {
            let mut k = [0u8; 32];
            self.rng.fill_bytes(&mut k);
            k
        };
        let c_ice = self.creds();
        let g_ice = self.creds();
        let c_key = public_key(&self.hosts[client.0]);
        let g_key = public_key(&self.hosts[gateway.0]);
        let to_client = Grant {
            peer: gateway.peer(),
            peer_public_key: g_key,
            preshared_key: psk,
            local_ice: c_ice.clone(),
            remote_ice: g_ice.clone(),
        };
        let to_gateway = Grant {
            peer: client.peer(),
            peer_public_key: c_key,
            preshared_key: psk,
            local_ice: g_ice,
            remote_ice: c_ice,
        };
        let at = self.now + self.signal_latency;
        self.last_grants
            .insert((client.0, gateway.0), to_client.clone());
        self.last_grants
            .insert((gateway.0, client.0), to_gateway.clone());
        self.signal(at, client, Signal::Grant(to_client));
        self.signal(at, gateway, Signal::Grant(to_gateway));
    }

    fn creds(&mut self) -> IceCredentials {
        let ufrag = format!("{:08x}", self.rng.next_u32());
        let pwd = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        IceCredentials { ufrag, pwd }
    }

    fn signal(&mut self, at: Instant, to: HostId, s: Signal) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.signal_payloads.insert(seq as usize, s);
        self.signals.push(Reverse((at, seq, seq as usize, to.0)));
    }

    /// An application packet from `from`'s TUN side towards `to`.
    pub fn send_app(&mut self, from: HostId, to: HostId, packet: &[u8]) {
        let now = self.now;
        self.hosts[from.0]
            .engine
            .handle_tun_packet(to.peer(), packet, now);
        self.drain(from);
    }

    /// Cuts or restores a host's link.
    pub fn set_cut(&mut self, host: HostId, cut: bool) {
        self.hosts[host.0].link.cut = cut;
    }

    pub fn set_loss(&mut self, host: HostId, loss: f64) {
        self.hosts[host.0].link.loss = loss;
    }

    /// The NAT in front of `host` forgets every mapping (reboot, conntrack flush).
    pub fn flush_nat(&mut self, host: HostId) {
        if let Some(nat) = self.hosts[host.0].nat.as_mut() {
            nat.entries.clear();
        }
    }

    /// The host's NAT gets a new public address (NAT rebinding / the client moved networks
    /// behind the same kind of router). The engine is not told.
    pub fn rebind_nat(&mut self, host: HostId) {
        let ip = self.fresh_public_ip();
        if let Some(nat) = self.hosts[host.0].nat.as_mut() {
            nat.entries.clear();
            nat.public_ip = ip;
        }
    }

    /// The host moves to another network: a new local address behind a new NAT of the same
    /// kind (or a new public address). The engine is told, as an OS would tell the driver.
    pub fn move_host(&mut self, host: HostId) {
        let ip = self.fresh_public_ip();
        let now = self.now;
        let h = &mut self.hosts[host.0];
        let socket = match h.nat.as_mut() {
            Some(nat) => {
                nat.entries.clear();
                nat.public_ip = ip;
                let IpAddr::V4(v4) = h.socket.ip() else {
                    return;
                };
                let o = v4.octets();
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3].wrapping_add(1))),
                    h.socket.port(),
                )
            }
            None => SocketAddr::new(ip, h.socket.port()),
        };
        h.socket = socket;
        h.engine.handle_local_addresses(&[socket], now);
        self.drain(host);
    }

    /// The host's network changed: its engine drops every connection and starts over (same
    /// key, same socket).
    pub fn reset(&mut self, host: HostId) {
        let now = self.now;
        self.hosts[host.0].engine.reset(now);
        self.drain(host);
    }

    /// The host restarts: a new engine with a new WireGuard key.
    pub fn restart(&mut self, host: HostId) {
        let now = self.now;
        let relays = self.relay_configs();
        let h = &mut self.hosts[host.0];
        self.rng.fill_bytes(&mut h.private_key);
        h.seed = self.rng.next_u64();
        let mut config = EngineConfig::new(h.role, h.private_key, h.seed);
        config.policy = h.policy.clone();
        h.engine = Engine::new(config, now);
        h.engine.handle_local_addresses(&[h.socket], now);
        h.engine.handle_relays(relays, now);
        h.next_timeout = None;
        self.drain(host);
    }

    /// Runs the world for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `until` (simulated).
    pub fn run_until(&mut self, until: Instant) {
        let mut same_instant = 0u32;
        loop {
            let next_packet = self.network.peek().map(|Reverse(p)| p.at);
            let next_signal = self.signals.peek().map(|Reverse((at, ..))| *at);
            let next_host = self
                .hosts
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.next_timeout.map(|t| (t, i)))
                .min();
            let next_relay = self
                .relays
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.next_timeout().map(|t| (t, i)))
                .min();
            let candidates = [
                next_packet.map(|t| (t, 0usize, 0usize)),
                next_signal.map(|t| (t, 1, 0)),
                next_host.map(|(t, i)| (t, 2, i)),
                next_relay.map(|(t, i)| (t, 3, i)),
            ];
            let Some((at, kind, idx)) = candidates.into_iter().flatten().min() else {
                self.now = until;
                return;
            };
            if at > until {
                self.now = until;
                return;
            }
            let at = at.max(self.now);
            if at == self.now {
                same_instant += 1;
                assert!(
                    same_instant < 100_000,
                    "simulation livelock at {:?}",
                    self.elapsed()
                );
            } else {
                same_instant = 0;
            }
            self.now = at;
            match kind {
                0 => {
                    if let Some(Reverse(p)) = self.network.pop() {
                        self.arrive(p);
                    }
                }
                1 => {
                    if let Some(Reverse((_, _, key, to))) = self.signals.pop()
                        && let Some(s) = self.signal_payloads.remove(&key)
                    {
                        self.deliver_signal(HostId(to), s);
                    }
                }
                2 => self.wake(HostId(idx)),
                _ => {
                    let now = self.now;
                    let out = self.relays[idx].handle_timeout(now);
                    let _ = out;
                }
            }
        }
    }

    /// Runs until `cond` holds or `limit` of simulated time passes; returns whether it held.
    pub fn run_until_cond(&mut self, limit: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        let step = Duration::from_millis(5);
        while self.now < end {
            if cond(self) {
                return true;
            }
            let next = (self.now + step).min(end);
            self.run_until(next);
        }
        cond(self)
    }

    fn wake(&mut self, host: HostId) {
        let now = self.now;
        let h = &mut self.hosts[host.0];
        if h.last_wakeup != Some(now) {
            h.wakeups += 1;
            h.last_wakeup = Some(now);
        }
        h.engine.handle_timeout(now);
        self.drain(host);
    }

    fn deliver_signal(&mut self, to: HostId, s: Signal) {
        let now = self.now;
        let engine = &mut self.hosts[to.0].engine;
        match s {
            Signal::Grant(g) => {
                if let Err(e) = engine.handle_grant(g, now) {
                    tracing::warn!(%e, "grant rejected");
                }
            }
            Signal::Candidate(peer, c) => {
                // A candidate for a connection that no longer exists is stale: ignore it.
                let _ = engine.handle_remote_candidate(peer, &c, now);
            }
        }
        self.drain(to);
    }

    /// Drains a host's engine after an input.
    fn drain(&mut self, host: HostId) {
        let now = self.now;
        let mut transmits = Vec::new();
        let mut events = Vec::new();
        {
            let h = &mut self.hosts[host.0];
            while let Some(t) = h.engine.poll_transmit() {
                transmits.push(t);
            }
            while let Some((from, packet)) = h.engine.poll_packet() {
                h.delivered.push(Delivery {
                    from,
                    packet,
                    at: now,
                });
            }
            while let Some(e) = h.engine.poll_event() {
                events.push(e);
            }
            h.next_timeout = h.engine.poll_timeout().map(|(t, _)| t.max(now));
        }
        for t in transmits {
            self.send(host, t);
        }
        for e in events {
            self.hosts[host.0].events.push((now, e.clone()));
            match e {
                Event::LocalCandidate { peer, candidate } => {
                    let at = now + self.signal_latency;
                    let to = HostId(peer.0 as usize);
                    if to.0 < self.hosts.len() {
                        self.signal(at, to, Signal::Candidate(host.peer(), candidate));
                    }
                }
                Event::ConnectionNeeded { peer } if self.auto_portal => {
                    let other = HostId(peer.0 as usize);
                    if other.0 < self.hosts.len() {
                        let (client, gateway) = if self.hosts[host.0].role == Role::Client {
                            (host, other)
                        } else {
                            (other, host)
                        };
                        self.grant(client, gateway);
                    }
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, host: HostId, t: Transmit) {
        let now = self.now;
        let h = &mut self.hosts[host.0];
        if t.src != h.socket {
            return;
        }
        h.counters.sent += 1;
        let to_relay = self.relays.iter().any(|r| r.addr() == t.dst);
        let kind = ember_engine::classify(&t.payload);
        if to_relay && kind == ember_engine::Datagram::Stun && !is_send_indication(&t.payload) {
            h.counters.sent_relay_control += 1;
        } else {
            // What travels to the peer, unwrapped from TURN framing when relayed.
            let inner: &[u8] = match kind {
                ember_engine::Datagram::ChannelData => t.payload.get(4..).unwrap_or(&[]),
                _ => &t.payload,
            };
            match ember_engine::classify(inner) {
                ember_engine::Datagram::Stun => h.counters.sent_peer_stun += 1,
                ember_engine::Datagram::WireGuard
                    if inner.first() == Some(&4) && inner.len() == 32 =>
                {
                    h.counters.sent_wg_keepalive += 1;
                }
                ember_engine::Datagram::WireGuard if inner.first() == Some(&4) => {
                    h.counters.sent_wg_data += 1
                }
                ember_engine::Datagram::WireGuard => h.counters.sent_wg_handshake += 1,
                _ => {}
            }
        }
        if h.link.cut || (h.link.loss > 0.0 && self.rng.random::<f64>() < h.link.loss) {
            return;
        }
        let src = match h.nat.as_mut() {
            Some(nat) => nat.outbound(t.src, t.dst, now),
            None => t.src,
        };
        let latency = h.link.latency;
        if self.record_wire {
            self.wire_log.push((src, t.dst, t.payload.clone()));
        }
        self.enqueue(src, t.dst, t.payload, latency);
    }

    /// Puts a datagram on the wire: it arrives after the sender's and the receiver's link
    /// latency.
    fn enqueue(&mut self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>, latency: Duration) {
        let receiver = self
            .hosts
            .iter()
            .find(|h| h.nat.as_ref().map_or(h.socket.ip(), |n| n.public_ip) == dst.ip())
            .map_or(self.relay_link.latency, |h| h.link.latency);
        let latency = latency + receiver;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.network.push(Reverse(InFlight {
            at: self.now + latency,
            seq,
            src,
            dst,
            payload,
        }));
    }

    fn arrive(&mut self, p: InFlight) {
        let now = self.now;
        // First leg done (sender's link); now the receiver's link.
        if let Some(r) = self.relays.iter().position(|r| r.owns(p.dst.ip())) {
            let link = self.relay_link;
            if link.cut {
                return;
            }
            let out = self.relays[r].handle_packet(p.src, p.dst, &p.payload, now);
            for (src, dst, payload) in out {
                // The relay's own link latency, then the receiver's.
                self.enqueue(src, dst, payload, link.latency);
            }
            return;
        }
        let Some(host) = self
            .hosts
            .iter()
            .position(|h| h.nat.as_ref().map_or(h.socket.ip(), |n| n.public_ip) == p.dst.ip())
        else {
            return;
        };
        self.arrive_at_host(host, p);
    }

    fn arrive_at_host(&mut self, host: usize, p: InFlight) {
        let now = self.now;
        let h = &mut self.hosts[host];
        if h.link.cut || (h.link.loss > 0.0 && self.rng.random::<f64>() < h.link.loss) {
            return;
        }
        let dst = match h.nat.as_mut() {
            Some(nat) => match nat.inbound(p.src, p.dst.port(), now) {
                Some(internal) => internal,
                None => return,
            },
            None => p.dst,
        };
        if dst != h.socket {
            return;
        }
        h.counters.received += 1;
        if self.relays.iter().any(|r| r.addr() == p.src)
            && ember_engine::classify(&p.payload) == ember_engine::Datagram::Stun
            && p.payload.get(0..2) != Some(&[0x00, 0x17][..])
        {
            h.counters.received_relay_control += 1;
        }
        h.engine.handle_network_packet(dst, p.src, &p.payload, now);
        self.drain(HostId(host));
    }

    /// An attacker on the internet sends `payload` to `dst` with a forged source address.
    pub fn inject(&mut self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        self.enqueue(src, dst, payload, Duration::ZERO);
    }

    /// Total datagrams put on the wire by all hosts.
    #[must_use]
    pub fn total_sent(&self) -> u64 {
        self.hosts.iter().map(|h| h.counters.sent).sum()
    }
}

fn is_send_indication(payload: &[u8]) -> bool {
    payload.get(0..2) == Some(&[0x00, 0x16][..])
}

fn public_key(h: &Host) -> [u8; 32] {
    h.engine.public_key()
}

/// A minimal IPv4/UDP packet carrying `seq`, `len` bytes long (at least 36).
#[must_use]
pub fn app_packet(seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(36);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[100, 64, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 5]);
    p[28..36].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The sequence number of a packet made by [`app_packet`].
#[must_use]
pub fn app_seq(packet: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(packet.get(28..36)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("literal address")
    }

    fn nat(mapping: Mapping, filtering: Filtering) -> Nat {
        Nat {
            public_ip: addr("198.51.100.1:0").ip(),
            config: NatConfig {
                mapping,
                filtering,
                timeout: Duration::from_secs(30),
            },
            entries: Vec::new(),
            next_port: 40000,
        }
    }

    #[test]
    fn endpoint_independent_mapping_reuses_the_port_and_symmetric_does_not() {
        let now = Instant::now();
        let (inside, a, b) = (
            addr("10.0.0.2:5000"),
            addr("203.0.113.1:1"),
            addr("203.0.113.2:2"),
        );
        let mut eim = nat(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
        assert_eq!(eim.outbound(inside, a, now), eim.outbound(inside, b, now));
        let mut sym = nat(Mapping::Symmetric, Filtering::EndpointIndependent);
        assert_ne!(sym.outbound(inside, a, now), sym.outbound(inside, b, now));
    }

    #[test]
    fn filtering_admits_only_what_the_inside_contacted() {
        let now = Instant::now();
        let inside = addr("10.0.0.2:5000");
        let (peer, same_ip_other_port, stranger) = (
            addr("203.0.113.1:1"),
            addr("203.0.113.1:9"),
            addr("203.0.113.7:1"),
        );
        for (filtering, admits) in [
            (Filtering::EndpointIndependent, [true, true, true]),
            (Filtering::AddressDependent, [true, true, false]),
            (Filtering::AddressPortDependent, [true, false, false]),
        ] {
            let mut n = nat(Mapping::EndpointIndependent, filtering);
            let port = n.outbound(inside, peer, now).port();
            let got =
                [peer, same_ip_other_port, stranger].map(|src| n.inbound(src, port, now).is_some());
            assert_eq!(got, admits, "{filtering:?}");
        }
    }

    #[test]
    fn unused_mappings_expire_and_traffic_either_way_refreshes_them() {
        let start = Instant::now();
        let (inside, peer) = (addr("10.0.0.2:5000"), addr("203.0.113.1:1"));
        let mut n = nat(
            Mapping::EndpointIndependent,
            Filtering::AddressPortDependent,
        );
        let port = n.outbound(inside, peer, start).port();
        // Inbound at 20 s refreshes; still there at 45 s; gone 30 s after the last packet.
        assert!(
            n.inbound(peer, port, start + Duration::from_secs(20))
                .is_some()
        );
        assert!(
            n.inbound(peer, port, start + Duration::from_secs(45))
                .is_some()
        );
        assert!(
            n.inbound(peer, port, start + Duration::from_secs(80))
                .is_none()
        );
    }

    #[test]
    #[should_panic(expected = "ERROR logged")]
    fn an_error_log_fails_the_test() {
        let _log = crate::logging::fail_on_error();
        tracing::error!("something is wrong");
    }

    #[test]
    fn warnings_do_not_fail_the_test() {
        let _log = crate::logging::fail_on_error();
        tracing::warn!("worth a look");
    }

    #[test]
    fn app_packets_carry_their_sequence_number() {
        assert_eq!(app_seq(&app_packet(77, 1400)), Some(77));
        assert_eq!(app_packet(1, 1400).len(), 1400);
    }
}
