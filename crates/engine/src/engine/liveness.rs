//! A connection's timers: keepalives, probes of an idle path, and giving up.

use std::time::Instant;

use tracing::{info, trace};

use super::Engine;
use crate::buffer::PacketBuffer;
use crate::connection::*;
use crate::timers::ConnectionTimer as T;
use crate::types::*;

impl Engine {
    /// Runs the timers of `peer`'s connection that are due at `now`, each step on a table
    /// rearmed after the steps before it changed the connection.
    pub(super) fn connection_timeout(&mut self, peer: PeerId, now: Instant) {
        let policy = self.policy.clone();
        // The driver may call `handle_timeout` without polling first.
        self.rearm(peer);
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        // ICE while connecting.
        if conn.timers.is_expired(T::Ice, now)
            && let Some(ice) = conn.ice.as_mut()
        {
            ice.handle_timeout(now);
            self.drain_ice(peer, now);
        }
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if conn.timers.is_expired(T::ConnectTimeout, now) {
            self.fail(peer, FailureReason::ConnectTimeout, now);
            return;
        }
        // WireGuard timers. Checked against the tick itself rather than the table: the tick
        // advances whenever it has passed, also while the connection is cold and the timer
        // is not armed.
        if now >= conn.next_wg_tick {
            conn.next_wg_tick = next_tick(self.epoch, now);
            if now < conn.wg_hot_until || conn.state == ConnectionState::Connecting {
                self.prepare_tunnel(peer, now);
            }
        }
        self.rearm(peer);
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if conn.state == ConnectionState::Connecting {
            return;
        }
        // Probe retransmissions and misses.
        if conn.timers.is_expired(T::ProbeRetransmit, now)
            && let Some(probe) = conn.probe.as_mut()
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
            conn.rearm_timers(&policy, self.role, self.epoch);
        }
        match conn.state {
            ConnectionState::Active => {
                if conn.timers.is_expired(T::IdleThreshold, now) {
                    set_state(conn, ConnectionState::Idle, &mut self.out);
                    conn.resume_copies.clear();
                } else if conn.timers.is_expired(T::ActiveProbe, now)
                    || conn.timers.is_expired(T::PathSilent, now)
                {
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
            ConnectionState::Idle => {
                if conn.timers.is_expired(T::IdleProbe, now) {
                    start_probe(
                        conn,
                        &policy,
                        policy.idle_misses,
                        &mut self.relays,
                        &mut self.out,
                        now,
                    );
                }
                if conn.timers.is_expired(T::IdleKeepalive, now) {
                    send_keepalive(conn, &mut self.relays, &mut self.out, now);
                }
                if conn.timers.is_expired(T::IdlePeerSilent, now) {
                    info!(peer = peer.0, "Idle peer went silent");
                    self.fail(peer, FailureReason::PeerSilent, now);
                    return;
                }
            }
            ConnectionState::Connecting | ConnectionState::Broken => {}
        }
        conn.rearm_timers(&policy, self.role, self.epoch);
        if conn.timers.is_expired(T::WireguardKeepalive, now) {
            trace!(peer = peer.0, "WireGuard keepalive");
            self.encapsulate(peer, &[], now);
        }
        self.drain_relays(now);
        self.rearm(peer);
    }

    /// Reports a connection broken and removes it, keeping its unsent packets.
    pub(super) fn fail(&mut self, peer: PeerId, reason: FailureReason, now: Instant) {
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
