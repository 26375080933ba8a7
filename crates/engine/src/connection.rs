//! One connection's state and the liveness mechanics the engine applies to it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use is::stun::{StunMessage, StunMessageBuilder, TransId};
use is::{Candidate, DefaultSha1HmacProvider, IceAgent, Sha1HmacProvider};
use tracing::{debug, trace};

use ember_turn::{RelayId, TurnClient};

use crate::buffer::PacketBuffer;
use crate::policy::{KeepaliveSender, LivenessPolicy};
use crate::timers::{ConnectionTimer, TimerTable};
use crate::types::*;

/// Largest datagram the engine produces or accepts.
pub(crate) const MAX_DATAGRAM: usize = 65_535;
/// Largest IP packet that fits a WireGuard data message in a datagram.
pub(crate) const MAX_PACKET: usize = MAX_DATAGRAM - 32;
/// boringtun's timers only need a coarse tick while a handshake or keepalive may be due.
pub(crate) const WG_TICK: Duration = Duration::from_secs(1);
/// How long after WireGuard activity its timers are ticked (keepalive 10 s + slack).
pub(crate) const WG_HOT: Duration = Duration::from_secs(12);
/// A session older than this is rejected by WireGuard anyway (REJECT_AFTER_TIME is 180 s).
pub(crate) const WG_STALE_SESSION: Duration = Duration::from_secs(180);
/// An initiation unanswered this long is given up before boringtun's 90 s limit (which it
/// reports at ERROR).
pub(crate) const WG_INIT_GIVE_UP: Duration = Duration::from_secs(80);
/// No WireGuard packet from a peer we keep sending to, for this long, while the path answers
/// probes: its session is gone, handshake again. A working peer that only receives sends
/// boringtun's keepalive after 10 s.
pub(crate) const WG_SILENCE_BEFORE_REHANDSHAKE: Duration = Duration::from_secs(11);
/// Most doublings of the silence before a probe, for flows that only go one way.
pub(crate) const MAX_SILENCE_BACKOFF: u32 = 3;
/// Silence after which packets sent are copied until the peer is heard again.
pub(crate) const QUIET_MIN: Duration = Duration::from_millis(100);
/// Copies kept of packets sent on a path that is being validated after idle.
pub(crate) const MAX_RESUME_COPIES: usize = 128;

/// Outputs waiting for the driver's `poll_*` calls.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) packets: VecDeque<(PeerId, Vec<u8>)>,
    pub(crate) events: VecDeque<Event>,
}

/// Everything the engine knows about one peer: ICE while connecting, WireGuard, the path,
/// the buffer and the liveness timers.
pub(crate) struct Connection {
    pub(crate) peer: PeerId,
    pub(crate) peer_public: PublicKey,
    pub(crate) preshared_key: [u8; 32],
    pub(crate) index: u32,
    pub(crate) local_creds: IceCredentials,
    pub(crate) remote_creds: IceCredentials,
    pub(crate) ice: Option<IceAgent>,
    pub(crate) tie_breaker: u64,
    pub(crate) tunn: Box<Tunn>,
    pub(crate) state: ConnectionState,
    pub(crate) created: Instant,
    pub(crate) path: Option<PathInfo>,
    pub(crate) handshake_started: bool,
    pub(crate) buffer: PacketBuffer,
    /// The peer's relayed candidates: a path to one of them runs through the peer's relay.
    pub(crate) remote_relays: std::collections::BTreeSet<std::net::SocketAddr>,
    pub(crate) resume_copies: VecDeque<Vec<u8>>,
    /// Last authenticated packet from the peer (WireGuard, probe response or keepalive).
    pub(crate) last_rx: Instant,
    /// Last authenticated WireGuard packet from the peer.
    pub(crate) last_wg_rx: Option<Instant>,
    /// Last WireGuard handshake message sent or received.
    pub(crate) last_wg_handshake: Instant,
    /// Last application packet sent through WireGuard.
    pub(crate) last_wg_data_tx: Option<Instant>,
    /// Doublings of the silence before a probe: grows while the peer answers probes but sends
    /// no data (a one-way flow), back to 0 when data comes back.
    pub(crate) silence_backoff: u32,
    /// An initiation we sent that nothing authenticated has answered yet.
    pub(crate) wg_init_pending_since: Option<Instant>,
    /// Last `update_timers` call: boringtun stamps every event with that call's time.
    pub(crate) last_wg_tick: Instant,
    /// Last datagram we sent to the peer.
    pub(crate) last_tx: Instant,
    /// Last application packet either way.
    pub(crate) last_app: Instant,
    /// First packet sent since the peer was last heard.
    pub(crate) unanswered_since: Option<Instant>,
    pub(crate) probe: Option<Probe>,
    pub(crate) last_probe: Instant,
    pub(crate) wg_hot_until: Instant,
    pub(crate) next_wg_tick: Instant,
    pub(crate) rtt: Option<Duration>,
    pub(crate) stats: Counters,
    /// Every timer's deadline, set by `rearm_timers` from the fields above.
    pub(crate) timers: TimerTable,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) tx_packets: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Probe {
    pub(crate) trans_id: TransId,
    pub(crate) started: Instant,
    /// Since when WireGuard has been unanswered, if it was when the probe started.
    pub(crate) attempt: u32,
    pub(crate) misses_allowed: u32,
    pub(crate) deadline: Instant,
}

pub(crate) fn allocate_index(next: &mut u32, used: &HashMap<u32, PeerId>) -> u32 {
    loop {
        let candidate = *next & 0x00ff_ffff;
        *next = next.wrapping_add(1);
        if !used.contains_key(&candidate) {
            return candidate;
        }
    }
}

/// A fresh WireGuard state for the same peer (after a long idle, instead of letting
/// boringtun expire the old one).
pub(crate) fn refresh_tunnel(
    conn: &mut Connection,
    private_key: &StaticSecret,
    index_to_peer: &mut HashMap<u32, PeerId>,
    next_index: &mut u32,
) {
    index_to_peer.remove(&conn.index);
    let index = allocate_index(next_index, index_to_peer);
    conn.index = index;
    index_to_peer.insert(index, conn.peer);
    *conn.tunn = Tunn::new(
        private_key.clone(),
        conn.peer_public,
        Some(conn.preshared_key),
        None,
        index,
        None,
    );
    debug!(peer = conn.peer.0, "Fresh WireGuard state after idle");
}

pub(crate) fn add_local_candidate(conn: &mut Connection, candidate: Candidate, out: &mut Outputs) {
    let Some(ice) = conn.ice.as_mut() else {
        return;
    };
    if let Some(added) = ice.add_local_candidate(candidate) {
        out.events.push_back(Event::LocalCandidate {
            peer: conn.peer,
            candidate: added.to_sdp_string(),
        });
    }
}

pub(crate) fn set_state(conn: &mut Connection, to: ConnectionState, out: &mut Outputs) {
    let from = conn.state;
    if from == to {
        return;
    }
    conn.state = to;
    debug!(peer = conn.peer.0, ?from, ?to, "Connection state");
    out.events.push_back(Event::StateChanged {
        peer: conn.peer,
        from,
        to,
    });
}

/// Whether the WireGuard state is too old to carry traffic (no handshake for REJECT_AFTER_TIME).
pub(crate) fn wg_stale(conn: &Connection, now: Instant) -> bool {
    now.saturating_duration_since(conn.last_wg_handshake) >= WG_STALE_SESSION
}

pub(crate) fn heard_from_peer(conn: &mut Connection, now: Instant) {
    conn.last_rx = now;
    conn.unanswered_since = None;
    conn.resume_copies.clear();
    conn.probe = None;
}

pub(crate) fn send_on_path(
    conn: &mut Connection,
    payload: Vec<u8>,
    relays: &mut BTreeMap<RelayId, TurnClient>,
    out: &mut Outputs,
    now: Instant,
) {
    let Some(path) = conn.path else {
        trace!(peer = conn.peer.0, "No path yet; datagram dropped");
        return;
    };
    conn.last_tx = now;
    if conn.unanswered_since.is_none() {
        conn.unanswered_since = Some(now);
    }
    if matches!(payload.get(..4), Some([1 | 2, 0, 0, 0])) {
        conn.last_wg_handshake = now;
    }
    if matches!(payload.get(..4), Some([1, 0, 0, 0])) && conn.wg_init_pending_since.is_none() {
        conn.wg_init_pending_since = Some(now);
    }
    send_on(path, payload, relays, out, now);
}

pub(crate) fn send_on(
    path: PathInfo,
    payload: Vec<u8>,
    relays: &mut BTreeMap<RelayId, TurnClient>,
    out: &mut Outputs,
    now: Instant,
) {
    if path.relayed {
        if let Some(relay) = relays
            .values_mut()
            .find(|r| r.relayed_address() == Some(path.local))
        {
            relay.send_to_peer(path.remote, payload, now);
        }
        return;
    }
    out.transmits.push_back(Transmit {
        src: path.local,
        dst: path.remote,
        payload,
        relayed: false,
    });
}

pub(crate) fn start_probe(
    conn: &mut Connection,
    policy: &LivenessPolicy,
    misses: u32,
    relays: &mut BTreeMap<RelayId, TurnClient>,
    out: &mut Outputs,
    now: Instant,
) {
    let trans_id = TransId::new();
    conn.probe = Some(Probe {
        trans_id,
        started: now,
        attempt: 0,
        misses_allowed: misses.max(1),
        deadline: now + policy.probe_timeout(0, conn.rtt),
    });
    conn.last_probe = now;
    trace!(peer = conn.peer.0, "Probe");
    send_probe(conn, trans_id, relays, out, now);
}

pub(crate) fn send_probe(
    conn: &mut Connection,
    trans_id: TransId,
    relays: &mut BTreeMap<RelayId, TurnClient>,
    out: &mut Outputs,
    now: Instant,
) {
    let Some(path) = conn.path else {
        return;
    };
    if let Some(bytes) = probe_bytes(conn, trans_id) {
        send_on(path, bytes, relays, out, now);
    }
}

pub(crate) fn probe_bytes(conn: &Connection, trans_id: TransId) -> Option<Vec<u8>> {
    let username = format!("{}:{}", conn.remote_creds.ufrag, conn.local_creds.ufrag);
    let message =
        StunMessage::binding_request(&username, trans_id, true, conn.tie_breaker, 1, false);
    let mut buf = [0u8; 512];
    let hmac = |key: &[u8], payloads: &[&[u8]]| DefaultSha1HmacProvider.sha1_hmac(key, payloads);
    let n = message
        .to_bytes(Some(conn.remote_creds.pwd.as_bytes()), &mut buf, hmac)
        .ok()?;
    Some(buf[..n].to_vec())
}

pub(crate) fn send_keepalive(
    conn: &mut Connection,
    relays: &mut BTreeMap<RelayId, TurnClient>,
    out: &mut Outputs,
    now: Instant,
) {
    let Some(path) = conn.path else {
        return;
    };
    let username = format!("{}:{}", conn.remote_creds.ufrag, conn.local_creds.ufrag);
    let message = StunMessageBuilder::new()
        .binding()
        .indication()
        .username(&username)
        .build(TransId::new());
    let mut buf = [0u8; 256];
    let hmac = |key: &[u8], payloads: &[&[u8]]| DefaultSha1HmacProvider.sha1_hmac(key, payloads);
    let Ok(n) = message.to_bytes(Some(conn.remote_creds.pwd.as_bytes()), &mut buf, hmac) else {
        return;
    };
    trace!(peer = conn.peer.0, "Idle keepalive");
    conn.last_tx = now;
    send_on(path, buf[..n].to_vec(), relays, out, now);
}

/// When an active connection's silence calls for a probe.
pub(crate) fn silence_deadline(conn: &Connection, policy: &LivenessPolicy) -> Option<Instant> {
    let silence = policy.probe_after_silence?;
    let since = conn.unanswered_since?;
    let silence =
        conn.rtt.map_or(silence, |rtt| silence.max(rtt * 4)) * (1 << conn.silence_backoff);
    Some(since + silence)
}

pub(crate) fn idle_probe_deadline(conn: &Connection, policy: &LivenessPolicy) -> Option<Instant> {
    policy.idle_probe_interval.map(|i| conn.last_probe + i)
}

pub(crate) fn idle_keepalive_deadline(
    conn: &Connection,
    policy: &LivenessPolicy,
    role: Role,
) -> Option<Instant> {
    let interval = policy.idle_keepalive?;
    if policy.idle_keepalive_sender == KeepaliveSender::Client && role != Role::Client {
        return None;
    }
    Some(conn.last_tx + interval)
}

pub(crate) fn peer_silent_deadline(
    conn: &Connection,
    policy: &LivenessPolicy,
    role: Role,
) -> Option<Instant> {
    let timeout = policy.idle_peer_timeout?;
    // Only the listening side needs this: the sender notices through resume probes.
    if policy.idle_keepalive_sender == KeepaliveSender::Client && role == Role::Client {
        return None;
    }
    Some(conn.last_rx + timeout)
}

pub(crate) fn wg_keepalive_deadline(conn: &Connection, policy: &LivenessPolicy) -> Option<Instant> {
    if !matches!(conn.state, ConnectionState::Active | ConnectionState::Idle) {
        return None;
    }
    policy.wg_keepalive.map(|k| conn.last_tx + k)
}

/// The next whole tick after `now`, counted from `epoch`, shared by every connection.
pub(crate) fn next_tick(epoch: Instant, now: Instant) -> Instant {
    let since = now.saturating_duration_since(epoch);
    let ticks = since.as_millis() / WG_TICK.as_millis() + 1;
    epoch + WG_TICK * u32::try_from(ticks).unwrap_or(u32::MAX)
}

/// Rounds an idle timer up to the policy's coalescing grid.
pub(crate) fn align(epoch: Instant, policy: &LivenessPolicy, t: Instant) -> Instant {
    let Some(grid) = policy.coalesce_idle_timers else {
        return t;
    };
    let since = t.saturating_duration_since(epoch);
    let grid_ms = grid.as_millis().max(1);
    let slots = since.as_millis().div_ceil(grid_ms);
    epoch + Duration::from_millis(u64::try_from(slots * grid_ms).unwrap_or(u64::MAX))
}

impl Connection {
    /// Whether the path runs through a relay: one of ours, or the peer's (its relayed
    /// candidate, reached from our plain socket).
    pub(crate) fn through_relay(&self) -> bool {
        self.path
            .is_some_and(|p| p.relayed || self.remote_relays.contains(&p.remote))
    }

    /// Sets every timer from the connection's state. Called after every input that touched
    /// the connection, so the table always holds its deadlines; coalesced (idle) timers are
    /// rounded up to the policy's grid here, counted from `epoch`.
    pub(crate) fn rearm_timers(&mut self, policy: &LivenessPolicy, role: Role, epoch: Instant) {
        use ConnectionTimer as T;
        let mut table = TimerTable::default();
        if let Some(ice) = self.ice.as_mut()
            && let Some(t) = ice.poll_timeout()
        {
            table.set(T::Ice, t);
        }
        match self.state {
            ConnectionState::Connecting => {
                table.set(T::ConnectTimeout, self.created + policy.connect_timeout);
                table.set(T::WireguardTimers, self.next_wg_tick);
            }
            ConnectionState::Active => {
                table.set(T::IdleThreshold, self.last_app + policy.idle_after);
                if let Some(p) = &self.probe {
                    table.set(T::ProbeRetransmit, p.deadline);
                } else {
                    if let Some(i) = policy.active_probe_interval {
                        table.set(T::ActiveProbe, self.last_probe + i);
                    }
                    if let Some(t) = silence_deadline(self, policy) {
                        table.set(T::PathSilent, t);
                    }
                }
            }
            ConnectionState::Idle => {
                if let Some(p) = &self.probe {
                    table.set(T::ProbeRetransmit, p.deadline);
                } else if let Some(t) = idle_probe_deadline(self, policy) {
                    table.set(T::IdleProbe, t);
                }
                if let Some(t) = idle_keepalive_deadline(self, policy, role) {
                    table.set(T::IdleKeepalive, t);
                }
                if let Some(t) = peer_silent_deadline(self, policy, role) {
                    table.set(T::IdlePeerSilent, t);
                }
            }
            ConnectionState::Broken => {}
        }
        if matches!(self.state, ConnectionState::Active | ConnectionState::Idle) {
            if let Some(t) = wg_keepalive_deadline(self, policy) {
                table.set(T::WireguardKeepalive, t);
            }
            if self.next_wg_tick < self.wg_hot_until {
                table.set(T::WireguardTimers, self.next_wg_tick);
            }
        }
        for timer in T::ALL.into_iter().filter(|t| t.is_coalesced()) {
            if let Some(t) = table.get(timer) {
                table.set(timer, align(epoch, policy, t));
            }
        }
        self.timers = table;
    }
}
