//! The engine: connections to peers over one UDP socket per address family.

use crate::buffer::PacketBuffer;
use crate::connection::*;
use crate::policy::LivenessPolicy;
use crate::pool::BufferPool;
use crate::timers::{TimerKind, TimerTable};
use crate::types::*;
use crate::wire::{Datagram, classify};
use crate::{clock, error::EngineError};
use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use ember_turn::{RelayConfig, RelayId, TurnClient};
use is::{Candidate, IceAgent, IceCreds};
use rand::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Bound::{Excluded, Unbounded};
use std::time::Instant;
use tracing::{debug, info, trace};

mod ice;
mod liveness;
mod relays;
mod wireguard;

/// The sans-IO connection engine. See the crate documentation for the contract.
///
/// Methods: getters (`stats`, `state`); inputs `handle_*` and `reset` (all take `now` last);
/// outputs, to drain after every input in this order: `poll_transmit`, `poll_packet`,
/// `poll_event`, then `poll_timeout`.
pub struct Engine {
    role: Role,
    policy: LivenessPolicy,
    buffer_capacity: usize,
    private_key: StaticSecret,
    public_key: PublicKey,
    rng: ChaCha20Rng,
    epoch: Instant,
    sockets: Vec<SocketAddr>,
    connections: BTreeMap<PeerId, Connection>,
    pending: BTreeMap<PeerId, PacketBuffer>,
    index_to_peer: HashMap<u32, PeerId>,
    next_index: u32,
    relays: BTreeMap<RelayId, TurnClient>,
    out: Outputs,
    scratch: Vec<u8>,
    /// Buffers for `out`'s datagrams and packets, given back by `recycle`.
    pool: BufferPool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("role", &self.role)
            .field("policy", &self.policy.name)
            .field("connections", &self.connections.len())
            .field("relays", &self.relays.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A new engine. `now` is the origin of its coalesced idle timers.
    #[must_use]
    pub fn new(config: EngineConfig, now: Instant) -> Self {
        let private_key = StaticSecret::from(config.private_key);
        let public_key = PublicKey::from(&private_key);
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let next_index = rng.next_u32() & 0x00ff_ffff;
        Self {
            role: config.role,
            policy: config.policy,
            buffer_capacity: config.buffer_capacity,
            private_key,
            public_key,
            rng,
            epoch: now,
            sockets: Vec::new(),
            connections: BTreeMap::new(),
            pending: BTreeMap::new(),
            index_to_peer: HashMap::new(),
            next_index,
            relays: BTreeMap::new(),
            out: Outputs::default(),
            scratch: vec![0; MAX_DATAGRAM + 256],
            pool: BufferPool::default(),
        }
    }

    /// This engine's WireGuard public key.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key.to_bytes()
    }

    #[must_use]
    pub fn policy(&self) -> &LivenessPolicy {
        &self.policy
    }

    /// State of the connection to `peer`, if there is one.
    #[must_use]
    pub fn state(&self, peer: PeerId) -> Option<ConnectionState> {
        self.connections.get(&peer).map(|c| c.state)
    }

    /// Peers with a connection.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.connections.keys().copied()
    }

    /// Statistics of the connection to `peer` at `now`.
    #[must_use]
    pub fn stats(&self, peer: PeerId, now: Instant) -> Option<ConnectionStats> {
        let c = self.connections.get(&peer)?;
        clock::sync(self.epoch, now);
        Some(ConnectionStats {
            state: c.state,
            path: c.path,
            through_relay: c.through_relay(),
            rtt: c.rtt,
            tx_packets: c.stats.tx_packets,
            tx_bytes: c.stats.tx_bytes,
            rx_packets: c.stats.rx_packets,
            rx_bytes: c.stats.rx_bytes,
            last_handshake: c.tunn.time_since_last_handshake(),
        })
    }

    /// The local sockets (one per address family): the host candidates.
    ///
    /// When an address changes (the device moved networks), connections on a direct path move
    /// to the new socket of the same family at once and validate it: a WireGuard keepalive
    /// (the peer's path follows it) and a probe. Connections still gathering get the new host
    /// candidate.
    pub fn handle_local_addresses(&mut self, sockets: &[SocketAddr], now: Instant) {
        let old = std::mem::replace(&mut self.sockets, sockets.to_vec());
        for relay in self.relays.values_mut() {
            relay.rebase(&self.sockets, now);
        }
        let added: Vec<SocketAddr> = sockets
            .iter()
            .filter(|s| !old.contains(s))
            .copied()
            .collect();
        let peers: Vec<PeerId> = self.connections.keys().copied().collect();
        for peer in peers {
            let Some(conn) = self.connections.get_mut(&peer) else {
                continue;
            };
            for &socket in &added {
                if let Ok(c) = Candidate::host(socket, "udp") {
                    add_local_candidate(conn, c, &mut self.out);
                }
            }
            let Some(path) = conn
                .path
                .filter(|p| !p.relayed && !sockets.contains(&p.local))
            else {
                continue;
            };
            let Some(&local) = sockets.iter().find(|s| s.is_ipv4() == path.local.is_ipv4()) else {
                continue;
            };
            info!(
                peer = peer.0,
                "Local address changed; moving the connection"
            );
            conn.path = Some(PathInfo { local, ..path });
            if matches!(conn.state, ConnectionState::Active | ConnectionState::Idle) {
                set_state(conn, ConnectionState::Active, &mut self.out);
                conn.last_app = now;
                start_probe(
                    conn,
                    &self.policy,
                    self.policy.active_misses,
                    &mut self.relays,
                    &mut self.out,
                    now,
                );
                self.encapsulate(peer, &[], now);
            }
        }
        self.drain_relays(now);
        self.rearm_all();
    }

    /// The relays the portal gives. Known relays keep their allocation and take the new
    /// credentials for the next refresh; new ones are allocated; missing ones are released.
    pub fn handle_relays(&mut self, relays: Vec<RelayConfig>, now: Instant) {
        let keep: Vec<RelayId> = relays.iter().map(|r| r.id).collect();
        let removed: Vec<RelayId> = self
            .relays
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in removed {
            let Some(mut relay) = self.relays.remove(&id) else {
                continue;
            };
            debug!(relay = ?id, "Relay removed; releasing its allocation");
            // One best-effort release: the allocation expires on its own if it is lost.
            relay.release(now);
            while let Some(t) = relay.poll_transmit() {
                self.out.transmits.push_back(t.into());
            }
        }
        for config in relays {
            match self.relays.get_mut(&config.id) {
                Some(existing) => existing.update_credentials(config),
                None => {
                    let seed = self.rng.next_u64();
                    let client = TurnClient::new(config, &self.sockets, seed, now);
                    self.relays.insert(client.id(), client);
                }
            }
        }
        self.drain_relays(now);
        self.rearm_all();
    }

    /// A grant for `peer`: starts a connection (replacing any existing one).
    pub fn handle_grant(&mut self, grant: Grant, now: Instant) -> Result<(), EngineError> {
        if grant.local_ice.ufrag.is_empty() || grant.remote_ice.ufrag.is_empty() {
            return Err(EngineError::BadGrant("empty ICE username fragment"));
        }
        if let Some(existing) = self.connections.get(&grant.peer) {
            // The portal repeats grants (e.g. after it restarted): the same grant again must
            // not disturb a connection that works.
            let same = existing.peer_public.as_bytes() == &grant.peer_public_key
                && existing.preshared_key == grant.preshared_key
                && existing.local_creds == grant.local_ice
                && existing.remote_creds == grant.remote_ice;
            if same {
                // The peer may have started over with these credentials (a client whose
                // network changed): its new agent needs our candidates again, and our side,
                // connected and without an agent, answers its checks itself.
                debug!(
                    peer = grant.peer.0,
                    "Repeated grant; connection kept, candidates announced again"
                );
                if existing.ice.is_none() {
                    self.announce_candidates_again(grant.peer);
                }
                return Ok(());
            }
            self.fail(grant.peer, FailureReason::Replaced, now);
        }
        for relay in self.relays.values_mut() {
            relay.check_binding(now);
        }
        clock::sync(self.epoch, now);
        let index = self.allocate_index();
        let peer_public = PublicKey::from(grant.peer_public_key);
        let tunn = Tunn::new(
            self.private_key.clone(),
            peer_public,
            Some(grant.preshared_key),
            None,
            index,
            None,
        );
        let tie_breaker = self.rng.next_u64();
        let mut agent = IceAgent::new(IceCreds {
            ufrag: grant.local_ice.ufrag.clone(),
            pass: grant.local_ice.pwd.clone(),
        });
        agent.set_remote_credentials(IceCreds {
            ufrag: grant.remote_ice.ufrag.clone(),
            pass: grant.remote_ice.pwd.clone(),
        });
        agent.set_controlling(self.role == Role::Client);
        agent.set_control_tie_breaker(tie_breaker);
        agent.set_initial_stun_rto(self.policy.ice_initial_rto);
        agent.set_max_stun_rto(self.policy.ice_max_rto);

        let mut buffer = PacketBuffer::new(self.buffer_capacity);
        if let Some(mut waiting) = self.pending.remove(&grant.peer) {
            for p in waiting.drain() {
                buffer.push(p);
            }
        }
        let mut conn = Connection {
            peer: grant.peer,
            peer_public,
            preshared_key: grant.preshared_key,
            index,
            local_creds: grant.local_ice,
            remote_creds: grant.remote_ice,
            ice: Some(agent),
            tie_breaker,
            tunn: Box::new(tunn),
            state: ConnectionState::Connecting,
            created: now,
            path: None,
            handshake_started: false,
            buffer,
            remote_relays: BTreeSet::new(),
            resume_copies: VecDeque::new(),
            last_rx: now,
            last_wg_rx: None,
            last_wg_handshake: now,
            last_wg_data_tx: None,
            silence_backoff: 0,
            wg_init_pending_since: None,
            last_wg_tick: now,
            last_tx: now,
            last_app: now,
            unanswered_since: None,
            probe: None,
            last_probe: now,
            wg_hot_until: now,
            next_wg_tick: now + WG_TICK,
            rtt: None,
            stats: Counters::default(),
            timers: TimerTable::default(),
        };
        for c in self.local_candidates() {
            add_local_candidate(&mut conn, c, &mut self.out);
        }
        if let Some(ice) = conn.ice.as_mut() {
            ice.handle_timeout(now);
        }
        info!(peer = grant.peer.0, "Connecting");
        self.index_to_peer.insert(index, grant.peer);
        self.connections.insert(grant.peer, conn);
        self.drain_ice(grant.peer, now);
        self.rearm_all();
        Ok(())
    }

    /// Our host candidates and every relay's server-reflexive and relayed ones.
    fn local_candidates(&self) -> Vec<Candidate> {
        let mut candidates = Vec::new();
        for &socket in &self.sockets {
            match Candidate::host(socket, "udp") {
                Ok(c) => candidates.push(c),
                Err(e) => debug!(%e, "Host address unusable as a candidate"),
            }
        }
        for relay in self.relays.values() {
            candidates.extend(relays::relay_candidates(relay));
        }
        candidates
    }

    /// Signals our candidates for an established connection again, in the form an agent
    /// gives them (priority and foundation), through a throwaway agent.
    fn announce_candidates_again(&mut self, peer: PeerId) {
        let Some(conn) = self.connections.get(&peer) else {
            return;
        };
        let mut agent = IceAgent::new(IceCreds {
            ufrag: conn.local_creds.ufrag.clone(),
            pass: conn.local_creds.pwd.clone(),
        });
        for c in self.local_candidates() {
            if let Some(added) = agent.add_local_candidate(c) {
                self.out.events.push_back(Event::LocalCandidate {
                    peer,
                    candidate: added.to_sdp_string(),
                });
            }
        }
    }

    /// A candidate the peer signalled (SDP `candidate:` string).
    pub fn handle_remote_candidate(
        &mut self,
        peer: PeerId,
        candidate: &str,
        now: Instant,
    ) -> Result<(), EngineError> {
        let conn = self
            .connections
            .get_mut(&peer)
            .ok_or(EngineError::UnknownPeer(peer))?;
        let parsed = Candidate::from_sdp_string(candidate)
            .map_err(|e| EngineError::BadCandidate(e.to_string()))?;
        if parsed.kind() == is::CandidateKind::Relayed {
            conn.remote_relays.insert(parsed.addr());
        }
        for relay in self.relays.values_mut() {
            relay.create_permission(parsed.addr(), now);
        }
        if let Some(ice) = conn.ice.as_mut() {
            ice.add_remote_candidate(parsed);
        }
        self.drain_ice(peer, now);
        self.drain_relays(now);
        self.rearm_all();
        Ok(())
    }

    /// Removes the connection to `peer` without reporting it broken (grant revoked).
    pub fn remove_peer(&mut self, peer: PeerId) {
        if let Some(c) = self.connections.remove(&peer) {
            self.index_to_peer.remove(&c.index);
        }
        self.pending.remove(&peer);
    }

    /// Network change: drops every connection and allocation and starts over. Unsent packets
    /// are kept and `ConnectionNeeded` is emitted for their peers.
    pub fn reset(&mut self, now: Instant) {
        info!("Reset");
        let peers: Vec<PeerId> = self.connections.keys().copied().collect();
        for peer in peers {
            self.fail(peer, FailureReason::Reset, now);
        }
        let configs: Vec<RelayConfig> = self.relays.values().map(|r| r.config().clone()).collect();
        // Release the old allocations first: a relay refuses a second one for the same address.
        self.handle_relays(Vec::new(), now);
        self.handle_relays(configs, now);
    }

    /// An IP packet from the TUN side for `peer`.
    pub fn handle_tun_packet(&mut self, peer: PeerId, packet: &[u8], now: Instant) {
        if packet.len() > MAX_PACKET {
            debug!(
                peer = peer.0,
                len = packet.len(),
                "Packet larger than a datagram can carry; dropped"
            );
            return;
        }
        let Some(conn) = self.connections.get_mut(&peer) else {
            let buffer = self
                .pending
                .entry(peer)
                .or_insert_with(|| PacketBuffer::new(self.buffer_capacity));
            let first = buffer.is_empty();
            buffer.push(packet.to_vec());
            if first {
                debug!(peer = peer.0, "Packet for a peer without connection");
                self.out.events.push_back(Event::ConnectionNeeded { peer });
            }
            return;
        };
        match conn.state {
            ConnectionState::Connecting | ConnectionState::Broken => {
                conn.buffer.push(packet.to_vec());
            }
            ConnectionState::Idle => {
                set_state(conn, ConnectionState::Active, &mut self.out);
                conn.last_app = now;
                if self.policy.probe_on_resume && conn.probe.is_none() {
                    start_probe(
                        conn,
                        &self.policy,
                        self.policy.active_misses,
                        &mut self.relays,
                        &mut self.out,
                        now,
                    );
                }
                conn.resume_copies.push_back(self.pool.copy_of(packet));
                self.encapsulate(peer, packet, now);
            }
            ConnectionState::Active => {
                conn.last_app = now;
                // Keep a copy while the path is unconfirmed, so a path found dead does not
                // lose what was sent into it. A healthy two-way flow never copies.
                let quiet_after = conn.rtt.map_or(QUIET_MIN, |rtt| (rtt * 2).max(QUIET_MIN));
                let quiet = now.saturating_duration_since(conn.last_rx) >= quiet_after;
                if (conn.probe.is_some() || quiet) && conn.resume_copies.len() < MAX_RESUME_COPIES {
                    conn.resume_copies.push_back(self.pool.copy_of(packet));
                }
                self.encapsulate(peer, packet, now);
            }
        }
        self.rearm(peer);
    }

    /// A datagram that arrived on local socket `local` from `from`.
    pub fn handle_network_packet(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        match classify(data) {
            Datagram::Stun => {
                if let Some(id) = self.relay_at(from) {
                    self.handle_from_relay(id, local, from, data, now);
                    return;
                }
                self.handle_peer_stun(local, from, data, now);
            }
            Datagram::ChannelData => {
                let Some(id) = self.relay_at(from) else {
                    trace!(%from, "ChannelData from a non-relay; dropped");
                    return;
                };
                self.handle_from_relay(id, local, from, data, now);
            }
            Datagram::WireGuard => self.handle_wireguard(local, from, data, now),
            Datagram::Unknown => trace!(%from, len = data.len(), "Unknown datagram; dropped"),
        }
    }

    /// Time has passed: runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let needed = self.relay_peers();
        for relay in self.relays.values_mut() {
            let relayed = relay.relayed_address();
            let in_use = self.connections.values().any(|c| {
                c.ice.is_some()
                    || c.path
                        .is_some_and(|p| p.relayed && Some(p.local) == relayed)
            });
            relay.set_in_use(in_use, now);
            relay.retain_peers(&needed);
            relay.handle_timeout(now);
        }
        self.drain_relays(now);
        // Walks the peers in order without a list of them: a timeout may remove its connection.
        let mut next = self.connections.keys().next().copied();
        while let Some(peer) = next {
            self.connection_timeout(peer, now);
            next = self
                .connections
                .range((Excluded(peer), Unbounded))
                .next()
                .map(|(&p, _)| p);
        }
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next decrypted IP packet for the TUN side, with the peer it came from.
    #[must_use]
    pub fn poll_packet(&mut self) -> Option<(PeerId, Vec<u8>)> {
        self.out.packets.pop_front()
    }

    /// Gives a buffer back for reuse: a payload from [`Engine::poll_transmit`] or a packet
    /// from [`Engine::poll_packet`], once the driver has sent or written it. A driver that
    /// gives back every buffer moves packets on an established connection without allocating;
    /// one that does not only pays an allocation per packet.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        self.pool.give_back(buffer);
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When to call `handle_timeout` next, and the timer that is due then.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<(Instant, TimerKind)> {
        let mut best: Option<(Instant, TimerKind)> = None;
        let mut consider = |t: Instant, timer: TimerKind| {
            if best.is_none_or(|(b, _)| t < b) {
                best = Some((t, timer));
            }
        };
        for relay in self.relays.values() {
            if let Some((t, timer)) = relay.poll_timeout() {
                consider(align(self.epoch, &self.policy, t), TimerKind::Relay(timer));
            }
        }
        for conn in self.connections.values_mut() {
            #[cfg(debug_assertions)]
            {
                let armed = conn.timers;
                conn.rearm_timers(&self.policy, self.role, self.epoch);
                debug_assert_eq!(
                    armed, conn.timers,
                    "peer {}: an input changed the connection without rearming its timers",
                    conn.peer.0
                );
            }
            if let Some((t, timer)) = conn.timers.next() {
                consider(t, TimerKind::Connection(timer));
            }
        }
        best
    }

    /// Peer IPs our relays must keep permissions for: every remote candidate of a connection
    /// still gathering, and the peer of every relayed path.
    fn relay_peers(&self) -> BTreeSet<IpAddr> {
        let mut ips = BTreeSet::new();
        for c in self.connections.values() {
            if let Some(ice) = &c.ice {
                ips.extend(ice.remote_candidates().map(|rc| rc.addr().ip()));
            }
            if let Some(path) = c.path.filter(|p| p.relayed) {
                ips.insert(path.remote.ip());
            }
        }
        ips
    }

    /// Sets the timers of `peer`'s connection after an input changed it.
    pub(super) fn rearm(&mut self, peer: PeerId) {
        if let Some(conn) = self.connections.get_mut(&peer) {
            conn.rearm_timers(&self.policy, self.role, self.epoch);
        }
    }

    /// Sets the timers of every connection, after an input that may have changed any.
    fn rearm_all(&mut self) {
        for conn in self.connections.values_mut() {
            conn.rearm_timers(&self.policy, self.role, self.epoch);
        }
    }

    fn allocate_index(&mut self) -> u32 {
        allocate_index(&mut self.next_index, &self.index_to_peer)
    }

    fn relay_at(&self, server: SocketAddr) -> Option<RelayId> {
        self.relays
            .values()
            .find(|r| r.server() == server)
            .map(TurnClient::id)
    }
}
