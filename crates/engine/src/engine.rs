//! The engine: connections to peers over one UDP socket per address family.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use boringtun::noise::{Packet, Tunn, TunnResult, handshake::parse_handshake_anon};
use boringtun::x25519::{PublicKey, StaticSecret};
use is::stun::{Class, Method, StunMessage, StunPacket};
use is::{
    Candidate, DefaultSha1HmacProvider, IceAgent, IceAgentEvent, IceCreds, Protocol,
    Sha1HmacProvider,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tracing::{debug, info, trace};

use crate::buffer::PacketBuffer;
use crate::policy::LivenessPolicy;
use crate::turn::{RelayConfig, RelayId, TurnClient, TurnOutput};
use crate::wire::{Datagram, classify};
use crate::{clock, error::EngineError};

use crate::connection::*;
use crate::types::*;

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
            through_relay: c
                .path
                .is_some_and(|p| p.relayed || c.remote_relays.contains(&p.remote)),
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
                self.out.transmits.push_back(t);
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
                debug!(peer = grant.peer.0, "Repeated grant; connection kept");
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
        };
        let mut candidates = Vec::new();
        for &socket in &self.sockets {
            match Candidate::host(socket, "udp") {
                Ok(c) => candidates.push(c),
                Err(e) => debug!(%e, "Host address unusable as a candidate"),
            }
        }
        for relay in self.relays.values() {
            candidates.extend(relay.candidates());
        }
        for c in candidates {
            add_local_candidate(&mut conn, c, &mut self.out);
        }
        if let Some(ice) = conn.ice.as_mut() {
            ice.handle_timeout(now);
        }
        info!(peer = grant.peer.0, "Connecting");
        self.index_to_peer.insert(index, grant.peer);
        self.connections.insert(grant.peer, conn);
        self.drain_ice(grant.peer, now);
        Ok(())
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
                conn.resume_copies.push_back(packet.to_vec());
                self.encapsulate(peer, packet, now);
            }
            ConnectionState::Active => {
                conn.last_app = now;
                // Keep a copy while the path is unconfirmed, so a path found dead does not
                // lose what was sent into it. A healthy two-way flow never copies.
                let quiet_after = conn.rtt.map_or(QUIET_MIN, |rtt| (rtt * 2).max(QUIET_MIN));
                let quiet = now.saturating_duration_since(conn.last_rx) >= quiet_after;
                if (conn.probe.is_some() || quiet) && conn.resume_copies.len() < MAX_RESUME_COPIES {
                    conn.resume_copies.push_back(packet.to_vec());
                }
                self.encapsulate(peer, packet, now);
            }
        }
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
        let peers: Vec<PeerId> = self.connections.keys().copied().collect();
        for peer in peers {
            self.connection_timeout(peer, now);
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

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When to call `handle_timeout` next, and why.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<(Instant, &'static str)> {
        let mut best: Option<(Instant, &'static str)> = None;
        let mut consider = |t: Option<Instant>, reason: &'static str| {
            if let Some(t) = t
                && best.is_none_or(|(b, _)| t < b)
            {
                best = Some((t, reason));
            }
        };
        for relay in self.relays.values() {
            let (t, reason) = relay.poll_timeout();
            consider(t.map(|t| self.align_idle(t)), reason);
        }
        for conn in self.connections.values_mut() {
            for (t, reason) in conn_deadlines(conn, &self.policy, self.role) {
                let t = if is_idle_timer(reason) {
                    align(self.epoch, &self.policy, t)
                } else {
                    t
                };
                consider(Some(t), reason);
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

    fn align_idle(&self, t: Instant) -> Instant {
        align(self.epoch, &self.policy, t)
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

    /// Brings a connection's WireGuard state up to `now` before it is used.
    ///
    /// boringtun stamps every event with the time of the last `update_timers` call, so after
    /// a pause its timers must be caught up first. A state too old to be caught up without
    /// boringtun expiring it (no handshake for 180 s, or an initiation unanswered for 80 s)
    /// is replaced by a fresh one for the same peer.
    fn prepare_tunnel(&mut self, peer: PeerId, now: Instant) {
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        clock::sync(self.epoch, now);
        let init_stuck = conn
            .wg_init_pending_since
            .is_some_and(|t| now.saturating_duration_since(t) >= WG_INIT_GIVE_UP);
        if wg_stale(conn, now) || init_stuck {
            refresh_tunnel(
                conn,
                &self.private_key,
                &mut self.index_to_peer,
                &mut self.next_index,
            );
            conn.last_wg_handshake = now;
            conn.wg_init_pending_since = None;
            conn.last_wg_tick = now;
            return;
        }
        if now.saturating_duration_since(conn.last_wg_tick) < WG_TICK {
            return;
        }
        conn.last_wg_tick = now;
        match conn.tunn.update_timers(&mut self.scratch) {
            TunnResult::WriteToNetwork(bytes) => {
                let bytes = bytes.to_vec();
                send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
            }
            TunnResult::Err(e) => debug!(peer = peer.0, ?e, "WireGuard timer"),
            _ => {}
        }
    }

    /// Starts a new WireGuard handshake at once.
    fn force_handshake(&mut self, peer: PeerId, now: Instant) {
        self.prepare_tunnel(peer, now);
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if let TunnResult::WriteToNetwork(bytes) = conn
            .tunn
            .format_handshake_initiation(&mut self.scratch, true)
        {
            let bytes = bytes.to_vec();
            send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
        }
        conn.wg_hot_until = now + WG_HOT;
        self.drain_relays_transmits_only();
    }

    fn encapsulate(&mut self, peer: PeerId, packet: &[u8], now: Instant) {
        self.prepare_tunnel(peer, now);
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        match conn.tunn.encapsulate(packet, &mut self.scratch) {
            TunnResult::WriteToNetwork(bytes) => {
                if !packet.is_empty() {
                    conn.stats.tx_packets += 1;
                    conn.stats.tx_bytes += packet.len() as u64;
                    conn.last_wg_data_tx = Some(now);
                }
                let bytes = bytes.to_vec();
                send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
            }
            TunnResult::Done => {}
            TunnResult::Err(e) => debug!(peer = peer.0, ?e, "Encapsulation failed"),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
        conn.wg_hot_until = now + WG_HOT;
        self.drain_relays(now);
    }

    fn handle_wireguard(&mut self, local: SocketAddr, from: SocketAddr, data: &[u8], now: Instant) {
        let Some(peer) = self.wireguard_peer(data) else {
            trace!(%from, "WireGuard packet for no known session; dropped");
            return;
        };
        self.prepare_tunnel(peer, now);
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        let mut authenticated = false;
        // boringtun yields at most one packet per datagram.
        let mut delivered: Option<Vec<u8>> = None;
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let mut datagram: &[u8] = data;
        loop {
            match conn
                .tunn
                .decapsulate(Some(from.ip()), datagram, &mut self.scratch)
            {
                TunnResult::Done => {
                    authenticated |= datagram.len() == data.len() && !datagram.is_empty();
                    break;
                }
                TunnResult::Err(e) => {
                    trace!(peer = peer.0, ?e, "WireGuard packet rejected");
                    break;
                }
                TunnResult::WriteToNetwork(bytes) => {
                    // A cookie reply (type 3) is what boringtun sends under load to an
                    // unverified sender: it proves nothing about the sender's address.
                    authenticated |= bytes.first() != Some(&3);
                    replies.push(bytes.to_vec());
                }
                TunnResult::WriteToTunnelV4(bytes, _) | TunnResult::WriteToTunnelV6(bytes, _) => {
                    authenticated = true;
                    if !bytes.is_empty() {
                        delivered = Some(bytes.to_vec());
                    }
                    break;
                }
            }
            datagram = &[];
        }
        let relayed = self
            .relays
            .values()
            .any(|r| r.relayed_address() == Some(local));
        let new_path = PathInfo {
            local,
            remote: from,
            relayed,
        };
        if !authenticated {
            // Cookie replies go back to the sender without touching the connection's path.
            for reply in replies {
                send_on(new_path, reply, &mut self.relays, &mut self.out, now);
            }
            self.drain_relays_transmits_only();
            return;
        }
        // Authenticated: data or a keepalive decrypted, or a valid handshake message answered.
        // The path follows such a packet to its source (NAT rebinding, roaming).
        if conn.path != Some(new_path) {
            if conn.path.is_some() {
                info!(
                    peer = peer.0,
                    relayed, "Path follows the peer to a new address"
                );
            }
            conn.path = Some(new_path);
        }
        heard_from_peer(conn, now);
        conn.last_wg_rx = Some(now);
        conn.wg_init_pending_since = None;
        if matches!(data.first(), Some(1 | 2)) {
            conn.last_wg_handshake = now;
        }
        conn.wg_hot_until = now + WG_HOT;
        for reply in replies {
            send_on_path(conn, reply, &mut self.relays, &mut self.out, now);
        }
        if let Some(packet) = delivered {
            conn.silence_backoff = 0;
            conn.stats.rx_packets += 1;
            conn.stats.rx_bytes += packet.len() as u64;
            conn.last_app = now;
            if conn.state == ConnectionState::Idle {
                set_state(conn, ConnectionState::Active, &mut self.out);
            }
            self.out.packets.push_back((peer, packet));
        }
        self.after_wireguard(peer, now);
        self.drain_relays(now);
    }

    /// Which peer a WireGuard datagram belongs to: by receiver index, or for a handshake
    /// initiation by the sender's static key.
    fn wireguard_peer(&self, data: &[u8]) -> Option<PeerId> {
        match Tunn::parse_incoming_packet(data).ok()? {
            Packet::HandshakeInit(init) => {
                let half = parse_handshake_anon(&self.private_key, &self.public_key, &init).ok()?;
                self.connections
                    .values()
                    .find(|c| c.peer_public.as_bytes() == &half.peer_static_public)
                    .map(|c| c.peer)
            }
            Packet::HandshakeResponse(p) => self.index_to_peer.get(&(p.receiver_idx >> 8)).copied(),
            Packet::PacketCookieReply(p) => self.index_to_peer.get(&(p.receiver_idx >> 8)).copied(),
            Packet::PacketData(p) => self.index_to_peer.get(&(p.receiver_idx >> 8)).copied(),
        }
    }

    /// Promotes a connecting connection whose WireGuard session is up.
    fn after_wireguard(&mut self, peer: PeerId, now: Instant) {
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if conn.state != ConnectionState::Connecting
            || conn.tunn.time_since_last_handshake().is_none()
        {
            return;
        }
        let elapsed = now.saturating_duration_since(conn.created);
        let relayed = conn.path.is_some_and(|p| p.relayed);
        info!(peer = peer.0, ?elapsed, relayed, "Connection established");
        debug!(peer = peer.0, path = ?conn.path, "Established path");
        conn.rtt = conn
            .ice
            .as_ref()
            .and_then(IceAgent::nominated_pair_rtt)
            .or(conn.rtt);
        // From here on the engine's own liveness policy watches the path.
        conn.ice = None;
        conn.last_app = now;
        set_state(conn, ConnectionState::Active, &mut self.out);
        let queued: Vec<Vec<u8>> = conn.buffer.drain().collect();
        for packet in queued {
            if let Some(c) = self.connections.get_mut(&peer) {
                c.last_app = now;
            }
            self.encapsulate(peer, &packet, now);
        }
    }

    fn handle_peer_stun(&mut self, local: SocketAddr, from: SocketAddr, data: &[u8], now: Instant) {
        let Ok(message) = StunMessage::parse(data) else {
            trace!(%from, "Malformed STUN; dropped");
            return;
        };
        if message.method() != Method::Binding {
            trace!(%from, "Unexpected STUN method from a peer; dropped");
            return;
        }
        match message.class() {
            Class::Request | Class::Indication => {
                let Some((local_ufrag, _)) = message.split_username() else {
                    return;
                };
                let Some(peer) = self
                    .connections
                    .values()
                    .find(|c| c.local_creds.ufrag == local_ufrag)
                    .map(|c| c.peer)
                else {
                    trace!("STUN for unknown ufrag; dropped");
                    return;
                };
                self.stun_for_connection(peer, local, from, message, now);
            }
            Class::Success | Class::Failure => {
                let trans_id = message.trans_id();
                let owner = self.connections.values().find(|c| {
                    c.probe.as_ref().is_some_and(|p| p.trans_id == trans_id)
                        || c.ice
                            .as_ref()
                            .is_some_and(|ice| ice.accepts_message(&message))
                });
                let Some(peer) = owner.map(|c| c.peer) else {
                    trace!("STUN response for no transaction of ours; dropped");
                    return;
                };
                self.stun_for_connection(peer, local, from, message, now);
            }
            Class::Unknown => {}
        }
    }

    fn stun_for_connection(
        &mut self,
        peer: PeerId,
        local: SocketAddr,
        from: SocketAddr,
        message: StunMessage<'_>,
        now: Instant,
    ) {
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        let hmac =
            |key: &[u8], payloads: &[&[u8]]| DefaultSha1HmacProvider.sha1_hmac(key, payloads);
        if let Some(ice) = conn.ice.as_mut() {
            if message.class() != Class::Indication {
                ice.handle_packet(
                    now,
                    StunPacket {
                        proto: Protocol::Udp,
                        source: from,
                        destination: local,
                        message,
                    },
                );
                self.drain_ice(peer, now);
            }
            return;
        }
        match message.class() {
            Class::Indication => {
                if message.verify(conn.local_creds.pwd.as_bytes(), hmac) {
                    trace!(peer = peer.0, "Idle keepalive received");
                    conn.last_rx = now;
                }
            }
            Class::Request => {
                if !message.verify(conn.local_creds.pwd.as_bytes(), hmac) {
                    trace!(peer = peer.0, "Binding request failed integrity; dropped");
                    return;
                }
                let reply = StunMessage::binding_reply(message.trans_id(), from);
                let mut buf = [0u8; 256];
                let Ok(n) = reply.to_bytes(Some(conn.local_creds.pwd.as_bytes()), &mut buf, hmac)
                else {
                    return;
                };
                let path = PathInfo {
                    local,
                    remote: from,
                    relayed: self
                        .relays
                        .values()
                        .any(|r| r.relayed_address() == Some(local)),
                };
                send_on(
                    path,
                    buf[..n].to_vec(),
                    &mut self.relays,
                    &mut self.out,
                    now,
                );
                self.drain_relays(now);
            }
            Class::Success => {
                let Some(probe) = conn.probe.as_ref() else {
                    return;
                };
                if probe.trans_id != message.trans_id()
                    || !message.verify(conn.remote_creds.pwd.as_bytes(), hmac)
                {
                    return;
                }
                if probe.attempt == 0 {
                    let sample = now.saturating_duration_since(probe.started);
                    conn.rtt = Some(conn.rtt.map_or(sample, |r| (r * 7 + sample) / 8));
                }
                trace!(peer = peer.0, rtt = ?conn.rtt, "Probe answered");
                // The path works. No WireGuard packet during the probe: the flow is one-way,
                // so probe less often. No WireGuard packet for longer than a working peer's
                // keepalive interval: its session is what is broken, handshake again.
                let heard_wg_since_probe = conn.last_wg_rx.is_some_and(|rx| rx >= probe.started);
                if !heard_wg_since_probe {
                    conn.silence_backoff = (conn.silence_backoff + 1).min(MAX_SILENCE_BACKOFF);
                }
                let wg_heard = conn.last_wg_rx.unwrap_or(conn.created);
                let wg_silent = conn.last_wg_data_tx.is_some_and(|tx| tx > wg_heard)
                    && now.saturating_duration_since(wg_heard) >= WG_SILENCE_BEFORE_REHANDSHAKE;
                conn.probe = None;
                heard_from_peer(conn, now);
                if wg_silent {
                    debug!(
                        peer = peer.0,
                        "Path answers but WireGuard does not; new handshake"
                    );
                    self.force_handshake(peer, now);
                }
            }
            Class::Failure | Class::Unknown => {}
        }
    }

    fn handle_from_relay(
        &mut self,
        id: RelayId,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        let Some(relay) = self.relays.get_mut(&id) else {
            return;
        };
        let inner = relay.handle_packet(local, from, data, now);
        self.drain_relays(now);
        if let Some((relayed, peer_addr, payload)) = inner {
            match classify(&payload) {
                Datagram::Stun => self.handle_peer_stun(relayed, peer_addr, &payload, now),
                Datagram::WireGuard => self.handle_wireguard(relayed, peer_addr, &payload, now),
                Datagram::ChannelData | Datagram::Unknown => {
                    trace!("Unexpected payload inside a relayed datagram; dropped");
                }
            }
        }
    }

    /// Moves the TURN clients' outputs into the engine's.
    fn drain_relays(&mut self, now: Instant) {
        let mut new_candidates = Vec::new();
        for relay in self.relays.values_mut() {
            while let Some(output) = relay.poll_output() {
                match output {
                    TurnOutput::Transmit(t) => self.out.transmits.push_back(t),
                    TurnOutput::Allocated {
                        relayed,
                        server_reflexive,
                    } => {
                        self.out.events.push_back(Event::RelayReady {
                            relay: relay.id(),
                            relayed,
                            server_reflexive,
                        });
                        new_candidates.extend(relay.candidates());
                    }
                }
            }
        }
        if new_candidates.is_empty() {
            return;
        }
        let peers: Vec<PeerId> = self.connections.keys().copied().collect();
        for peer in peers {
            if let Some(conn) = self.connections.get_mut(&peer) {
                if conn.ice.is_none() {
                    continue;
                }
                for c in &new_candidates {
                    add_local_candidate(conn, c.clone(), &mut self.out);
                }
            }
            self.drain_ice(peer, now);
        }
    }

    /// Moves an ICE agent's outputs into the engine's and acts on its events.
    fn drain_ice(&mut self, peer: PeerId, now: Instant) {
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        let Some(ice) = conn.ice.as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        while let Some(t) = ice.poll_transmit() {
            sends.push((t.source, t.destination, Vec::from(t.contents)));
        }
        let mut nominated = None;
        while let Some(event) = ice.poll_event() {
            match event {
                IceAgentEvent::NominatedSend {
                    source,
                    destination,
                    ..
                } => nominated = Some((source, destination)),
                IceAgentEvent::IceConnectionStateChange(s) => {
                    debug!(peer = peer.0, state = ?s, "ICE state");
                }
                IceAgentEvent::DiscoveredRecv { .. } | IceAgentEvent::IceRestart(_) => {}
            }
        }
        for (source, destination, payload) in sends {
            let relayed = self
                .relays
                .values()
                .any(|r| r.relayed_address() == Some(source));
            let path = PathInfo {
                local: source,
                remote: destination,
                relayed,
            };
            send_on(path, payload, &mut self.relays, &mut self.out, now);
        }
        if let Some((source, destination)) = nominated {
            let relayed = self
                .relays
                .values()
                .any(|r| r.relayed_address() == Some(source));
            debug!(peer = peer.0, %source, %destination, relayed, "ICE nominated a pair");
            conn.path = Some(PathInfo {
                local: source,
                remote: destination,
                relayed,
            });
            if self.role == Role::Client && !conn.handshake_started {
                conn.handshake_started = true;
                clock::sync(self.epoch, now);
                if let TunnResult::WriteToNetwork(bytes) = conn
                    .tunn
                    .format_handshake_initiation(&mut self.scratch, false)
                {
                    let bytes = bytes.to_vec();
                    send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
                }
                conn.wg_hot_until = now + WG_HOT;
            }
        }
        self.drain_relays_transmits_only();
    }

    /// Moves the relays' datagrams out; allocation results stay for `drain_relays`, which adds
    /// their candidates to the connections.
    fn drain_relays_transmits_only(&mut self) {
        for relay in self.relays.values_mut() {
            while let Some(t) = relay.poll_transmit() {
                self.out.transmits.push_back(t);
            }
        }
    }

    fn connection_timeout(&mut self, peer: PeerId, now: Instant) {
        let policy = self.policy.clone();
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        // ICE while connecting.
        if let Some(ice) = conn.ice.as_mut()
            && ice.poll_timeout().is_some_and(|t| t <= now)
        {
            ice.handle_timeout(now);
            self.drain_ice(peer, now);
        }
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if conn.state == ConnectionState::Connecting && now >= conn.created + policy.connect_timeout
        {
            self.fail(peer, FailureReason::ConnectTimeout, now);
            return;
        }
        // WireGuard timers.
        if now >= conn.next_wg_tick {
            conn.next_wg_tick = next_tick(self.epoch, now);
            if now < conn.wg_hot_until || conn.state == ConnectionState::Connecting {
                self.prepare_tunnel(peer, now);
            }
        }
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if conn.state == ConnectionState::Connecting {
            return;
        }
        // Probe retransmissions and misses.
        if let Some(probe) = conn.probe.as_mut()
            && now >= probe.deadline
        {
            probe.attempt += 1;
            if probe.attempt >= probe.misses_allowed {
                info!(peer = peer.0, "Path does not answer probes");
                self.fail(peer, FailureReason::PathDead, now);
                return;
            }
            probe.deadline = now + policy.probe_timeout(probe.attempt, conn.rtt);
            let trans_id = probe.trans_id;
            send_probe(conn, trans_id, &mut self.relays, &mut self.out, now);
        }
        match conn.state {
            ConnectionState::Active => {
                if now >= conn.last_app + policy.idle_after {
                    set_state(conn, ConnectionState::Idle, &mut self.out);
                    conn.resume_copies.clear();
                } else if conn.probe.is_none() {
                    let periodic = policy
                        .active_probe_interval
                        .is_some_and(|i| now >= conn.last_probe + i);
                    let silent = silence_deadline(conn, &policy).is_some_and(|t| now >= t);
                    if periodic || silent {
                        start_probe(
                            conn,
                            &policy,
                            policy.active_misses,
                            &mut self.relays,
                            &mut self.out,
                            now,
                        );
                    }
                }
            }
            ConnectionState::Idle => {
                if conn.probe.is_none()
                    && let Some(t) = idle_probe_deadline(conn, &policy)
                    && now >= align(self.epoch, &policy, t)
                {
                    start_probe(
                        conn,
                        &policy,
                        policy.idle_misses,
                        &mut self.relays,
                        &mut self.out,
                        now,
                    );
                }
                if let Some(t) = idle_keepalive_deadline(conn, &policy, self.role)
                    && now >= align(self.epoch, &policy, t)
                {
                    send_keepalive(conn, &mut self.relays, &mut self.out, now);
                }
                if let Some(t) = peer_silent_deadline(conn, &policy, self.role)
                    && now >= align(self.epoch, &policy, t)
                {
                    info!(peer = peer.0, "Idle peer went silent");
                    self.fail(peer, FailureReason::PeerSilent, now);
                    return;
                }
            }
            ConnectionState::Connecting | ConnectionState::Broken => {}
        }
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if let Some(t) = wg_keepalive_deadline(conn, &policy)
            && now >= t
        {
            trace!(peer = peer.0, "WireGuard keepalive");
            self.encapsulate(peer, &[], now);
        }
        self.drain_relays(now);
    }

    /// Reports a connection broken and removes it, keeping its unsent packets.
    fn fail(&mut self, peer: PeerId, reason: FailureReason, now: Instant) {
        let Some(mut conn) = self.connections.remove(&peer) else {
            return;
        };
        self.index_to_peer.remove(&conn.index);
        set_state(&mut conn, ConnectionState::Broken, &mut self.out);
        info!(peer = peer.0, ?reason, "Connection broken");
        if reason == FailureReason::PathDead {
            for relay in self.relays.values_mut() {
                relay.check_binding(now);
            }
        }
        self.out
            .events
            .push_back(Event::ConnectionFailed { peer, reason });
        let mut keep = PacketBuffer::new(self.buffer_capacity);
        for p in conn.resume_copies.drain(..) {
            keep.push(p);
        }
        for p in conn.buffer.drain() {
            keep.push(p);
        }
        if !keep.is_empty() && reason != FailureReason::Replaced {
            self.pending.insert(peer, keep);
            self.out.events.push_back(Event::ConnectionNeeded { peer });
        } else if !keep.is_empty() {
            self.pending.insert(peer, keep);
        }
        self.drain_relays(now);
    }
}
