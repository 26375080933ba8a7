//! The gateway as one sans-IO state machine: the connection engine, the router (source check,
//! translation, filter, flows), which client is which peer, the grants with their expiry and
//! reconfirmation, the DNS lookups the grants wait for, and the timers of all of it.
//!
//! It never reads a clock, touches a socket or spawns a task. [`ember_io::driver::Driver`]
//! runs it with real IO; the controller feeds it the portal's messages and the answers to its
//! queries as [`Input`]s and carries out its [`Output`]s (messages for the portal, names and
//! relays to resolve). The packet path is a method call away from the grants: no lock, no
//! channel.
//!
//! Methods: getters (`router`, `engine`, `peer_of`, `clients`); inputs `handle_*` (through
//! [`State`], `now` last); outputs, drained after every input in this order: `poll_transmit`,
//! `poll_tun_packet`, `poll_output`, then `poll_timeout`.
//!
//! Grants end at a wall-clock time (the portal's `expires_at`, Unix seconds). The state has
//! no wall clock of its own: it is told the Unix time once with [`GatewayState::new`] and
//! again with [`Input::WallClock`], and counts on from there with `now`, so a wall clock that
//! jumps is followed at the next [`Input::WallClock`].

mod portal;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ember_engine::{Engine, Event, PeerId, RelayId, Transmit};
use ember_io::driver::State;
use ember_protocol::portal::{GatewayMessage, Interface, PortalToGateway, Relay};

use crate::names::Lookups;
use crate::router::{GatewayRouter, GrantKey};

/// How often the gateway tells the portal how many clients it serves.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// How often the router's table of translated flows ages by one step.
pub const FLOW_TICK: Duration = Duration::from_secs(60);

/// What the state needs to know from the start.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The tunnel addresses the portal assigned (the first `init`'s).
    pub interface: Interface,
    /// This host's addresses: the internet resource does not reach them.
    pub own_addresses: Vec<IpAddr>,
    /// After the portal link comes back, grants the portal does not send again within this
    /// time are dropped: the portal forgot them with the old link, so it could no longer
    /// revoke them.
    pub reconfirm_within: Duration,
}

/// What the controller tells the state.
#[derive(Debug)]
pub enum Input {
    /// A message from the portal, the first `init` and every later one included.
    Portal(Box<PortalToGateway>),
    /// The answer to [`Output::Resolve`]: the name's addresses, or why there are none.
    Resolved {
        lookup: LookupId,
        addresses: Result<Vec<IpAddr>, String>,
    },
    /// The answer to [`Output::ResolveRelays`]: each relay with the addresses of its usable
    /// URLs (`ember_io::relays::relay_addresses`).
    RelaysResolved {
        query: u64,
        relays: Vec<(Relay, Vec<SocketAddr>)>,
    },
    /// The wall clock now, in Unix seconds.
    WallClock { unix_secs: u64 },
}

/// What the state asks of the controller.
#[derive(Debug)]
pub enum Output {
    /// A message for the portal; dropped while there is no link (the state does not wait).
    Portal(GatewayMessage),
    /// Look up a DNS resource's name; answer with [`Input::Resolved`].
    Resolve { lookup: LookupId, domain: String },
    /// Find an address for each relay; answer with [`Input::RelaysResolved`] and the same
    /// `query`. Only the answer to the newest query is used.
    ResolveRelays { query: u64, relays: Vec<Relay> },
}

/// One DNS lookup the state asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LookupId(u64);

#[derive(Debug)]
pub struct GatewayState {
    engine: Engine,
    router: GatewayRouter,
    interface: Interface,
    own_addresses: Vec<IpAddr>,
    reconfirm_within: Duration,
    /// By the portal's client id.
    clients: HashMap<String, Client>,
    client_of: HashMap<PeerId, String>,
    next_peer: u64,
    /// Per client: DNS grants being resolved and the client's messages waiting behind them.
    pending: HashMap<String, Pending>,
    lookups: Lookups<Lookup>,
    resolving: HashMap<LookupId, Lookup>,
    next_lookup: u64,
    /// (Unix seconds, peer, grant): the next grants to expire.
    expiries: BTreeSet<(u64, PeerId, GrantKey)>,
    /// Grants from before the last reconnect that the portal has not sent again yet.
    unconfirmed: BTreeSet<(PeerId, GrantKey)>,
    /// (portal relay id, server) → the engine's id, stable across credential updates.
    relay_ids: HashMap<(String, SocketAddr), RelayId>,
    /// The newest [`Output::ResolveRelays`] query.
    relays_query: u64,
    wall: WallClock,
    timers: TimerTable,
    outputs: VecDeque<Output>,
}

/// A client this gateway has grants for.
#[derive(Debug)]
struct Client {
    peer: PeerId,
    addresses: Vec<IpAddr>,
    /// Unix seconds at which each grant ends.
    expiries: HashMap<GrantKey, u64>,
}

/// A client's DNS grants being resolved; its later messages wait behind them, so they apply
/// in the order the portal sent them.
#[derive(Debug, Default)]
struct Pending {
    resolving: usize,
    queued: VecDeque<PortalToGateway>,
}

/// A name to look up for a client's grant.
#[derive(Debug)]
struct Lookup {
    client_id: String,
    domain: String,
    grant: Box<PortalToGateway>,
}

impl GatewayState {
    /// `unix_now` is the wall clock at `now`, in Unix seconds.
    pub fn new(engine: Engine, config: GatewayConfig, unix_now: u64, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Health, now);
        timers.set(Timer::FlowTick, now + FLOW_TICK);
        Self {
            engine,
            router: GatewayRouter::new(),
            interface: config.interface,
            own_addresses: config.own_addresses,
            reconfirm_within: config.reconfirm_within,
            clients: HashMap::new(),
            client_of: HashMap::new(),
            next_peer: 1,
            pending: HashMap::new(),
            lookups: Lookups::default(),
            resolving: HashMap::new(),
            next_lookup: 1,
            expiries: BTreeSet::new(),
            unconfirmed: BTreeSet::new(),
            relay_ids: HashMap::new(),
            relays_query: 0,
            wall: WallClock {
                at: now,
                unix: unix_now,
            },
            timers,
            outputs: VecDeque::new(),
        }
    }

    pub fn router(&self) -> &GatewayRouter {
        &self.router
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine's peer for the portal's client `client_id`, while it has grants.
    pub fn peer_of(&self, client_id: &str) -> Option<PeerId> {
        self.clients.get(client_id).map(|c| c.peer)
    }

    /// Clients with grants (what the health report counts).
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    fn handle_engine_event(&mut self, event: Event) {
        match event {
            Event::LocalCandidate { peer, candidate } => {
                let Some(client_id) = self.client_of.get(&peer).cloned() else {
                    return;
                };
                self.outputs
                    .push_back(Output::Portal(GatewayMessage::IceCandidates {
                        client_id,
                        candidates: vec![candidate],
                    }));
            }
            Event::StateChanged { peer, from, to } => {
                let client_id = self.client_of.get(&peer).map(String::as_str).unwrap_or("?");
                tracing::info!(client_id, ?from, ?to, "Connection state changed");
            }
            Event::PathChanged { peer, relayed } => {
                let client_id = self.client_of.get(&peer).map(String::as_str).unwrap_or("?");
                tracing::info!(client_id, relayed, "Connection moved to another path");
            }
            Event::ConnectionFailed { peer, reason } => {
                let client_id = self.client_of.get(&peer).map(String::as_str).unwrap_or("?");
                tracing::info!(client_id, ?reason, "Connection failed");
            }
            Event::ConnectionNeeded { peer } => {
                // The gateway never starts connections; a reply for a gone client waits in vain.
                tracing::debug!(?peer, "A packet for a client without a connection");
            }
            Event::RelayReady {
                relay,
                relayed,
                server_reflexive,
            } => {
                tracing::debug!(?relay, %relayed, %server_reflexive, "Relay allocation ready");
            }
        }
    }

    /// When the first grant expires, on the monotonic clock.
    fn next_expiry(&self) -> Option<Instant> {
        let (at, _, _) = self.expiries.first()?;
        Some(self.wall.instant_of(*at))
    }
}

impl State for GatewayState {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Portal(message) => self.handle_portal_message(*message, now),
            Input::Resolved { lookup, addresses } => self.handle_resolved(lookup, addresses, now),
            Input::RelaysResolved { query, relays } => {
                self.handle_relays_resolved(query, relays, now);
            }
            Input::WallClock { unix_secs } => {
                self.wall = WallClock {
                    at: now,
                    unix: unix_secs,
                };
            }
        }
    }

    fn handle_local_addresses(&mut self, addresses: &[SocketAddr], now: Instant) {
        self.engine.handle_local_addresses(addresses, now);
    }

    fn handle_network_change(&mut self, now: Instant) {
        self.engine.reset(now);
    }

    /// A reply the kernel routed into the tunnel: to the client with that address, or nowhere.
    fn handle_tun_packet(&mut self, packet: &mut [u8], now: Instant) {
        match self.router.outbound(packet) {
            Some(peer) => self.engine.handle_tun_packet(peer, packet, now),
            None => tracing::trace!(
                len = packet.len(),
                "Packet from the TUN device for no client"
            ),
        }
    }

    fn handle_network_packet(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        self.engine
            .handle_network_packet(local, from, datagram, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.engine.poll_timeout().is_some_and(|(at, _)| at <= now) {
            self.engine.handle_timeout(now);
        }
        if self.timers.expired(Timer::Health, now) {
            let connections = u32::try_from(self.clients.len()).unwrap_or(u32::MAX);
            self.outputs
                .push_back(Output::Portal(GatewayMessage::Health {
                    connections,
                    cpu_percent: None,
                }));
            self.timers.set(Timer::Health, now + HEALTH_INTERVAL);
        }
        if self.timers.expired(Timer::FlowTick, now) {
            self.router.tick();
            self.timers.set(Timer::FlowTick, now + FLOW_TICK);
        }
        if self.timers.expired(Timer::Reconfirm, now) {
            self.timers.clear(Timer::Reconfirm);
            self.drop_unconfirmed();
        }
        self.expire(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.engine.poll_transmit()
    }

    /// A packet a client sent, checked against its grants (and translated) on the way out.
    fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        loop {
            let (peer, mut packet) = self.engine.poll_packet()?;
            if self.router.inbound(peer, &mut packet) {
                return Some(packet);
            }
            tracing::trace!(peer = peer.0, "Packet from a client dropped by the router");
            self.engine.recycle(packet);
        }
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        self.engine.recycle(buffer);
    }

    fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            let event = self.engine.poll_event()?;
            self.handle_engine_event(event);
        }
    }

    fn poll_timeout(&mut self) -> Option<(Instant, &'static str)> {
        let mut next = self
            .engine
            .poll_timeout()
            .map(|(at, timer)| (at, timer.as_str()));
        let mut consider = |at: Option<Instant>, why: &'static str| {
            if let Some(at) = at
                && next.is_none_or(|(best, _)| at < best)
            {
                next = Some((at, why));
            }
        };
        if let Some((at, timer)) = self.timers.next() {
            consider(Some(at), timer.reason());
        }
        consider(self.next_expiry(), "grant expiry");
        next
    }
}

/// The wall clock as last told, and the monotonic instant it was told at.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    unix: u64,
}

impl WallClock {
    /// Unix seconds at `now`.
    fn unix_at(&self, now: Instant) -> u64 {
        self.unix + now.saturating_duration_since(self.at).as_secs()
    }

    /// The instant the wall clock shows `unix` (the anchor for times already past).
    fn instant_of(&self, unix: u64) -> Instant {
        self.at + Duration::from_secs(unix.saturating_sub(self.unix))
    }
}

/// The state's own timers (the engine keeps its own; grant expiry follows `expiries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Health,
    FlowTick,
    Reconfirm,
}

impl Timer {
    const ALL: [Timer; 3] = [Timer::Health, Timer::FlowTick, Timer::Reconfirm];

    fn reason(self) -> &'static str {
        match self {
            Timer::Health => "health report",
            Timer::FlowTick => "flow table tick",
            Timer::Reconfirm => "grants not reconfirmed",
        }
    }
}

/// One deadline per [`Timer`]; the next wake-up is the earliest.
#[derive(Debug, Default)]
struct TimerTable([Option<Instant>; Timer::ALL.len()]);

impl TimerTable {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    fn expired(&self, timer: Timer, now: Instant) -> bool {
        self.0[timer as usize].is_some_and(|at| at <= now)
    }

    fn next(&self) -> Option<(Instant, Timer)> {
        Timer::ALL
            .iter()
            .filter_map(|timer| Some((self.0[*timer as usize]?, *timer)))
            .min_by_key(|(at, _)| *at)
    }
}
