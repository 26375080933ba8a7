//! [`ClientState`]: the whole client as one sans-IO state machine — the engine (connections
//! to the gateways), the routing (resources, access requests, held packets, gateway peers,
//! the DNS stub) and the views for the app.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ember_engine::{
    ConnectionState, ConnectionStats, Engine, EngineConfig, Event, PeerId, RelayConfig, RelayId,
    Role, Transmit,
};
use ember_packet::udp_packet;
use ember_protocol::Prefix;
use ember_protocol::ipc::ResourceView;
use ember_protocol::portal::{ClientMessage, DenialReason, PortalToClient, Relay};

use crate::routing::{AccessGranted, Effect, Routing};
use crate::timers::{Timer, TimerTable};
use crate::views::resource_views;

/// How often the per-resource statistics are refreshed while a connection is in use (or being
/// set up). Idle connections change nothing worth showing, and their state changes arrive as
/// engine events, so an idle client sets no timer for statistics at all.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// What a client is made with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub private_key: [u8; 32],
    /// Seeds every random choice of the engine (reproducible simulations).
    pub seed: u64,
    /// Whether the TUN device has an IPv6 address (then the stub answers on IPv6 too).
    pub ipv6: bool,
    /// The user's switch for the internet resource.
    pub internet_enabled: bool,
}

/// A DNS query for a name that is not a resource: for the system's upstream resolvers. Its
/// answer comes back through [`ClientState::handle_dns_answer`] with `client` and `sentinel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    pub query: Vec<u8>,
    pub client: SocketAddr,
    pub sentinel: SocketAddr,
}

/// One address of a relay, looked up by the shell (a relay's host name needs a lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRelay {
    /// The portal's id of the relay.
    pub relay_id: String,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
}

/// A change the operating system has to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemChange {
    /// Every route the tunnel needs now (the shell adds and removes the difference).
    Routes(BTreeSet<Prefix>),
    /// The DNS resources' patterns, for split DNS.
    DnsPatterns(Vec<String>),
    /// The portal's relays, to be looked up and handed back with
    /// [`ClientState::handle_relays`].
    ResolveRelays(Vec<Relay>),
}

/// Everything [`ClientState::handle_input`] takes besides packets and time.
#[derive(Debug)]
pub enum ClientInput {
    Portal(Box<PortalToClient>),
    DnsAnswer {
        client: SocketAddr,
        sentinel: SocketAddr,
        answer: Vec<u8>,
    },
    Relays(Vec<ResolvedRelay>),
    InternetEnabled(bool),
}

/// Everything [`ClientState::poll_output`] gives besides datagrams and packets.
#[derive(Debug)]
pub enum ClientOutput {
    Portal(ClientMessage),
    DnsQuery(DnsQuery),
    Views(Vec<ResourceView>),
    System(SystemChange),
}

#[derive(Debug)]
pub struct ClientState {
    engine: Engine,
    routing: Routing,
    ipv6: bool,
    /// (portal relay id, server) → the engine's id, stable across credential updates.
    relay_ids: HashMap<(String, SocketAddr), RelayId>,
    stats: HashMap<PeerId, ConnectionStats>,
    timers: TimerTable,
    tun_packets: VecDeque<Vec<u8>>,
    dns_queries: VecDeque<DnsQuery>,
    portal_messages: VecDeque<ClientMessage>,
    system_changes: VecDeque<SystemChange>,
    /// The views last handed out, and newer ones not yet polled.
    views: Vec<ResourceView>,
    views_out: Option<Vec<ResourceView>>,
    views_dirty: bool,
    /// What the OS was last told; changes go out as [`SystemChange`]s.
    routes: BTreeSet<Prefix>,
    dns_patterns: Vec<String>,
    system_dirty: bool,
}

impl ClientState {
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        let engine = Engine::new(
            EngineConfig::new(Role::Client, config.private_key, config.seed),
            now,
        );
        let mut routing = Routing::new(config.ipv6);
        routing.set_internet_enabled(config.internet_enabled);
        Self {
            engine,
            routing,
            ipv6: config.ipv6,
            relay_ids: HashMap::new(),
            stats: HashMap::new(),
            timers: TimerTable::default(),
            tun_packets: VecDeque::new(),
            dns_queries: VecDeque::new(),
            portal_messages: VecDeque::new(),
            system_changes: VecDeque::new(),
            views: Vec::new(),
            views_out: None,
            views_dirty: true,
            routes: BTreeSet::new(),
            dns_patterns: Vec::new(),
            system_dirty: true,
        }
    }

    /// The addresses the DNS stub answers on.
    pub fn sentinels(&self) -> &[IpAddr] {
        self.routing.sentinels()
    }

    /// The engine, for statistics and tests.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    // --- inputs --------------------------------------------------------------------------

    pub fn handle_input(&mut self, input: ClientInput, now: Instant) {
        match input {
            ClientInput::Portal(message) => self.handle_portal_message(*message, now),
            ClientInput::DnsAnswer {
                client,
                sentinel,
                answer,
            } => self.handle_dns_answer(client, sentinel, &answer),
            ClientInput::Relays(relays) => self.handle_relays(relays, now),
            ClientInput::InternetEnabled(enabled) => self.set_internet_enabled(enabled, now),
        }
    }

    /// A message from the portal. `init` (first or after a reconnect) brings the resources
    /// and relays, and every grant and open request is asked for again: the portal forgot
    /// them while the link was down.
    pub fn handle_portal_message(&mut self, message: PortalToClient, now: Instant) {
        match message {
            PortalToClient::Init {
                resources, relays, ..
            } => {
                self.routing.handle_resources(&resources);
                self.system_changes
                    .push_back(SystemChange::ResolveRelays(relays));
                self.routing.handle_portal_connected(now);
                self.system_dirty = true;
            }
            PortalToClient::ResourcesUpdated { resources } => {
                tracing::info!(resources = resources.len(), "Resources changed");
                self.routing.handle_resources(&resources);
                self.system_dirty = true;
            }
            PortalToClient::RelaysUpdated { relays } => self
                .system_changes
                .push_back(SystemChange::ResolveRelays(relays)),
            PortalToClient::AccessGranted {
                request_id,
                resource_id,
                domain,
                gateway,
                preshared_key,
                local_ice,
                remote_ice,
            } => {
                tracing::debug!(request_id, %resource_id, gateway = %gateway.id, "Access granted");
                self.routing.handle_access_granted(
                    AccessGranted {
                        request_id,
                        resource_id,
                        domain,
                        gateway,
                        preshared_key,
                        local_ice,
                        remote_ice,
                    },
                    now,
                );
            }
            PortalToClient::AccessDenied {
                request_id,
                resource_id,
                reason,
                message,
            } => {
                tracing::info!(%resource_id, ?reason, "Access denied");
                tracing::debug!(%resource_id, %message, "Why access was denied");
                let offline = reason == DenialReason::Offline;
                self.routing
                    .handle_access_denied(request_id, &resource_id, offline, message, now);
            }
            PortalToClient::IceCandidates {
                gateway_id,
                candidates,
            } => {
                let Some(peer) = self.routing.peer_of_gateway(&gateway_id) else {
                    tracing::debug!(%gateway_id, "Candidates for an unknown gateway");
                    return;
                };
                for candidate in candidates {
                    if let Err(e) = self.engine.handle_remote_candidate(peer, &candidate, now) {
                        tracing::debug!(%gateway_id, "A candidate from the portal was refused: {e}");
                    }
                }
            }
            PortalToClient::GatewayOffline { gateway_id, .. } => {
                tracing::info!(%gateway_id, "A gateway went offline");
                self.routing.handle_gateway_offline(&gateway_id, now);
            }
            // The session's business: the link, and the end of the session.
            PortalToClient::Heartbeat
            | PortalToClient::SignedOut { .. }
            | PortalToClient::Error { .. } => return,
        }
        self.views_dirty = true;
        self.settle(now);
    }

    /// A packet read from the TUN device: to its resource's gateway, held for a grant, or
    /// answered here (DNS, ICMP errors).
    pub fn handle_tun_packet(&mut self, packet: &mut [u8], now: Instant) {
        if let Some(peer) = self.routing.outbound(packet, now) {
            self.engine.handle_tun_packet(peer, packet, now);
        }
        self.settle(now);
    }

    pub fn handle_network_packet(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) {
        self.engine
            .handle_network_packet(local, from, datagram, now);
        self.settle(now);
    }

    /// The upstream resolvers' answer to a [`DnsQuery`] (or the SERVFAIL made for it).
    pub fn handle_dns_answer(&mut self, client: SocketAddr, sentinel: SocketAddr, answer: &[u8]) {
        match udp_packet(sentinel, client, answer) {
            Some(packet) => self.tun_packets.push_back(packet),
            None => tracing::debug!("A DNS answer that cannot be sent back; dropped"),
        }
    }

    /// The relays' addresses, looked up. Each keeps its engine id across credential updates.
    pub fn handle_relays(&mut self, relays: Vec<ResolvedRelay>, now: Instant) {
        let configs = relays
            .into_iter()
            .map(|relay| {
                let next = RelayId(self.relay_ids.len() as u64 + 1);
                let id = *self
                    .relay_ids
                    .entry((relay.relay_id, relay.server))
                    .or_insert(next);
                RelayConfig {
                    id,
                    server: relay.server,
                    username: relay.username,
                    password: relay.password,
                }
            })
            .collect::<Vec<_>>();
        tracing::debug!(relays = configs.len(), "Relays");
        self.engine.handle_relays(configs, now);
        self.settle(now);
    }

    /// The user switched the internet resource: on, it takes every packet no other resource
    /// covers.
    pub fn set_internet_enabled(&mut self, enabled: bool, now: Instant) {
        if self.routing.set_internet_enabled(enabled) {
            tracing::info!(enabled, "Internet resource switched");
            self.system_dirty = true;
            self.views_dirty = true;
            self.settle(now);
        }
    }

    /// The addresses of this host's interfaces (host candidates).
    pub fn handle_local_addresses(&mut self, addresses: &[SocketAddr], now: Instant) {
        self.engine.handle_local_addresses(addresses, now);
        self.settle(now);
    }

    /// The network changed or the machine slept: every connection starts over.
    pub fn handle_network_change(&mut self, now: Instant) {
        self.engine.reset(now);
        self.settle(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(Timer::Stats, now) {
            self.refresh_stats(now);
        }
        if self.timers.expired(Timer::Rejoin, now) {
            self.routing.handle_rejoin_timeout(now);
        }
        self.engine.handle_timeout(now);
        self.settle(now);
    }

    // --- outputs -------------------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.engine.poll_transmit()
    }

    /// A buffer from a transmit or a TUN packet the caller is done with, for reuse (no
    /// allocation per packet in steady state).
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.engine.recycle(buffer);
    }

    /// A packet for the TUN device: an answer made here, or one from a gateway whose source
    /// belongs to a resource granted through that gateway (others are dropped).
    pub fn poll_tun_packet(&mut self) -> Option<Vec<u8>> {
        if let Some(packet) = self.tun_packets.pop_front() {
            return Some(packet);
        }
        while let Some((peer, mut packet)) = self.engine.poll_packet() {
            if self.routing.inbound(peer, &mut packet) {
                return Some(packet);
            }
            tracing::trace!(
                peer = peer.0,
                "Packet from a gateway outside its grants; dropped"
            );
            self.engine.recycle(packet);
        }
        None
    }

    pub fn poll_dns_query(&mut self) -> Option<DnsQuery> {
        self.dns_queries.pop_front()
    }

    pub fn poll_portal_message(&mut self) -> Option<ClientMessage> {
        self.portal_messages.pop_front()
    }

    /// The resources' views, when they changed since the last poll.
    pub fn poll_view(&mut self) -> Option<Vec<ResourceView>> {
        self.views_out.take()
    }

    pub fn poll_system_change(&mut self) -> Option<SystemChange> {
        self.system_changes.pop_front()
    }

    /// Every output but datagrams and packets, in one stream.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        if let Some(change) = self.poll_system_change() {
            return Some(ClientOutput::System(change));
        }
        if let Some(message) = self.poll_portal_message() {
            return Some(ClientOutput::Portal(message));
        }
        if let Some(query) = self.poll_dns_query() {
            return Some(ClientOutput::DnsQuery(query));
        }
        self.poll_view().map(ClientOutput::Views)
    }

    /// When to call [`Self::handle_timeout`], and why.
    pub fn poll_timeout(&mut self) -> Option<(Instant, &'static str)> {
        let own = self.timers.next().map(|(at, timer)| (at, timer.as_str()));
        let engine = self
            .engine
            .poll_timeout()
            .map(|(at, timer)| (at, timer.as_str()));
        match (engine, own) {
            (Some(engine), Some(own)) => Some(if own.0 < engine.0 { own } else { engine }),
            (engine, own) => engine.or(own),
        }
    }

    // --- inside --------------------------------------------------------------------------

    /// Carries out what the routing decided and answers the engine's events until neither has
    /// anything left, then brings the views and the system's configuration up to date.
    fn settle(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(effect) = self.routing.poll_effect() {
                progressed = true;
                // DNS answers, forwarded queries and ICMP errors change nothing the app shows:
                // the per-query path skips rebuilding the views.
                if !matches!(effect, Effect::WriteTun(_) | Effect::ForwardDns { .. }) {
                    self.views_dirty = true;
                }
                self.apply(effect, now);
            }
            while let Some(event) = self.engine.poll_event() {
                progressed = true;
                self.handle_engine_event(event, now);
            }
            if !progressed {
                break;
            }
        }
        match self.routing.next_rejoin() {
            Some(at) => self.timers.set(Timer::Rejoin, at),
            None => self.timers.stop(Timer::Rejoin),
        }
        if self.system_dirty {
            self.system_dirty = false;
            self.follow_system();
        }
        if self.views_dirty {
            self.views_dirty = false;
            let views = resource_views(&self.routing, &self.stats);
            if views != self.views {
                self.views.clone_from(&views);
                self.views_out = Some(views);
            }
        }
    }

    fn apply(&mut self, effect: Effect, now: Instant) {
        match effect {
            Effect::RequestAccess {
                request_id,
                resource_id,
                domain,
                proxy_ips,
                new_connection,
            } => {
                tracing::debug!(request_id, %resource_id, new_connection, "Requesting access");
                self.portal_messages
                    .push_back(ClientMessage::RequestAccess {
                        request_id,
                        resource_id,
                        domain,
                        proxy_ips,
                        new_connection,
                    });
            }
            Effect::Grant(grant) => {
                let peer = grant.peer;
                if let Err(e) = self.engine.handle_grant(*grant, now) {
                    tracing::warn!(peer = peer.0, "The engine refused a grant: {e}");
                }
            }
            Effect::SendPackets { peer, packets } => {
                for packet in packets {
                    self.engine.handle_tun_packet(peer, &packet, now);
                }
            }
            Effect::RemovePeer(peer) => {
                self.engine.remove_peer(peer);
                self.stats.remove(&peer);
            }
            Effect::WriteTun(packet) => self.tun_packets.push_back(packet),
            Effect::ForwardDns {
                query,
                client,
                sentinel,
            } => self.dns_queries.push_back(DnsQuery {
                query,
                client,
                sentinel,
            }),
        }
    }

    fn handle_engine_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::ConnectionNeeded { peer } => self.routing.handle_connection_needed(peer),
            Event::ConnectionFailed { peer, reason } => {
                tracing::info!(peer = peer.0, ?reason, "Connection to a gateway failed");
                self.routing.handle_connection_failed(peer, reason);
                self.refresh_stats(now);
            }
            Event::LocalCandidate { peer, candidate } => {
                if let Some(gateway_id) = self.routing.gateway_of(peer) {
                    self.portal_messages
                        .push_back(ClientMessage::IceCandidates {
                            gateway_id: gateway_id.to_owned(),
                            candidates: vec![candidate],
                        });
                }
            }
            Event::StateChanged { peer, from, to } => {
                tracing::debug!(peer = peer.0, ?from, ?to, "Connection state");
                self.refresh_stats(now);
            }
            Event::PathChanged { peer, relayed } => {
                tracing::info!(peer = peer.0, relayed, "Connection moved to another path");
                self.refresh_stats(now);
            }
            Event::RelayReady { relay, .. } => tracing::debug!(relay = relay.0, "Relay ready"),
        }
    }

    /// Reads the engine's statistics; while a connection is active or being set up they
    /// change every second, so they are read again then.
    fn refresh_stats(&mut self, now: Instant) {
        self.stats = self
            .engine
            .peers()
            .filter_map(|peer| Some((peer, self.engine.stats(peer, now)?)))
            .collect();
        let changing = self.stats.values().any(|s| {
            matches!(
                s.state,
                ConnectionState::Active | ConnectionState::Connecting
            )
        });
        if changing {
            self.timers.set(Timer::Stats, now + STATS_INTERVAL);
        } else {
            self.timers.stop(Timer::Stats);
        }
        self.views_dirty = true;
    }

    fn follow_system(&mut self) {
        let routes = self.routing.table.routes(self.ipv6);
        if routes != self.routes {
            self.routes.clone_from(&routes);
            self.system_changes.push_back(SystemChange::Routes(routes));
        }
        let patterns = self.routing.table.dns_patterns();
        if patterns != self.dns_patterns {
            self.dns_patterns.clone_from(&patterns);
            self.system_changes
                .push_back(SystemChange::DnsPatterns(patterns));
        }
    }
}

#[cfg(test)]
mod tests;
