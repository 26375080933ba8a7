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
//! [`composed`] runs the product on the same network model: the client's whole
//! `ClientState`, gateways, relays and a portal model (the end-to-end scenarios' twins).
//!
//! NAT model: a mapping is refreshed by every packet through it in either direction (as Linux
//! conntrack does for UDP) and removed once it has been unused for the NAT's timeout.

pub mod bench;
pub mod composed;
mod host;
pub mod logging;
mod nat;
pub mod relay;

pub use host::{Delivery, Host, Link, WireCounters};
use nat::Nat;
pub use nat::{Filtering, Mapping, NatConfig};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ember_engine::{
    Engine, EngineConfig, Event, Grant, IceCredentials, LivenessPolicy, PeerId, RelayConfig,
    RelayId, Role, Transmit,
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
                Some(Nat::new(public_ip, config)),
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
            nat.forget_all();
        }
    }

    /// The host's NAT gets a new public address (NAT rebinding / the client moved networks
    /// behind the same kind of router). The engine is not told.
    pub fn rebind_nat(&mut self, host: HostId) {
        let ip = self.fresh_public_ip();
        if let Some(nat) = self.hosts[host.0].nat.as_mut() {
            nat.renumber(ip);
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
                nat.renumber(ip);
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
            .find(|h| h.nat.as_ref().map_or(h.socket.ip(), |n| n.public_ip()) == dst.ip())
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
            .position(|h| h.nat.as_ref().map_or(h.socket.ip(), |n| n.public_ip()) == p.dst.ip())
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
mod tests;
