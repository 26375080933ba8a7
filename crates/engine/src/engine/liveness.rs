//! A connection's timers: keepalives, probes of an idle path, and giving up.

use std::time::Instant;

use tracing::{info, trace};

use super::Engine;
use crate::buffer::PacketBuffer;
use crate::connection::*;
use crate::types::*;

impl Engine {
    pub(super) fn connection_timeout(&mut self, peer: PeerId, now: Instant) {
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
