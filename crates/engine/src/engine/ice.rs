//! The ICE half of a connection: STUN from peers, checks and nominations, and the path that
//! results.

use std::net::SocketAddr;
use std::time::Instant;

use boringtun::noise::TunnResult;
use is::stun::{Class, Method, StunMessage, StunPacket};
use is::{
    DefaultSha1HmacProvider, IceAgentEvent, IceConnectionState, Protocol, Sha1HmacProvider as _,
};
use tracing::{debug, info, trace};

use super::Engine;
use crate::clock;
use crate::connection::*;
use crate::types::*;

impl Engine {
    pub(super) fn handle_peer_stun(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
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
        self.receive_stun(peer, local, from, message, now);
        self.rearm(peer);
    }

    fn receive_stun(
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
        // An agent kept after connecting (to upgrade a relayed path) must not swallow the
        // answers to the engine's own probes, nor the peer's idle keepalives.
        let own_probe = message.class() == Class::Success
            && conn
                .probe
                .as_ref()
                .is_some_and(|p| p.trans_id == message.trans_id());
        if let Some(ice) = conn.ice.as_mut()
            && !own_probe
        {
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
                return;
            }
            if conn.state == ConnectionState::Connecting {
                return;
            }
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
                    relayed: super::relays::is_relay_address(&self.relays, local),
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

    /// Moves an ICE agent's outputs into the engine's and acts on its events.
    pub(super) fn drain_ice(&mut self, peer: PeerId, now: Instant) {
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
        let mut checks_over = false;
        while let Some(event) = ice.poll_event() {
            match event {
                IceAgentEvent::NominatedSend {
                    source,
                    destination,
                    ..
                } => nominated = Some((source, destination)),
                IceAgentEvent::IceConnectionStateChange(s) => {
                    debug!(peer = peer.0, state = ?s, "ICE state");
                    checks_over = no_pair_left(s);
                }
                IceAgentEvent::DiscoveredRecv { .. } | IceAgentEvent::IceRestart(_) => {}
            }
        }
        for (source, destination, payload) in sends {
            let relayed = super::relays::is_relay_address(&self.relays, source);
            let path = PathInfo {
                local: source,
                remote: destination,
                relayed,
            };
            send_on(path, payload, &mut self.relays, &mut self.out, now);
        }
        if conn.state != ConnectionState::Connecting {
            self.after_upgrade_checks(peer, nominated, checks_over);
            self.drain_relays_transmits_only();
            return;
        }
        if let Some((source, destination)) = nominated {
            let relayed = super::relays::is_relay_address(&self.relays, source);
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
                    let bytes = self.pool.copy_of(bytes);
                    send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
                }
                conn.wg_hot_until = now + WG_HOT;
            }
        }
        self.drain_relays_transmits_only();
    }
}

impl Engine {
    /// A connection that came up through a relay keeps its ICE agent while pairs that may be
    /// direct are still being checked: the first pair to answer wins the race to connect, and
    /// a direct pair whose first checks met a NAT not yet opened by the peer's own checks
    /// answers a moment later. When the agent nominates a better pair the path moves there,
    /// under the same WireGuard session (the peer's path follows the first authenticated
    /// packet). The agent goes when the path is direct or no pair is left to check.
    fn after_upgrade_checks(
        &mut self,
        peer: PeerId,
        nominated: Option<(SocketAddr, SocketAddr)>,
        checks_over: bool,
    ) {
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if let Some((source, destination)) = nominated {
            let relayed = super::relays::is_relay_address(&self.relays, source);
            let path = PathInfo {
                local: source,
                remote: destination,
                relayed,
            };
            if conn.path != Some(path) {
                conn.path = Some(path);
                let relayed = conn.through_relay();
                info!(peer = peer.0, relayed, %source, %destination, "Path changed");
                self.out
                    .events
                    .push_back(Event::PathChanged { peer, relayed });
            }
        }
        let direct = conn.path.is_some() && !conn.through_relay();
        if direct || checks_over {
            debug!(
                peer = peer.0,
                direct, "Upgrade checks over; ICE agent dropped"
            );
            conn.ice = None;
        }
    }
}

/// Whether a connection that just came up keeps its agent to look for a better path.
pub(super) fn keeps_checking(conn: &Connection) -> bool {
    conn.through_relay()
        && conn
            .ice
            .as_ref()
            .is_some_and(|ice| !no_pair_left(ice.state()))
}

/// The agent has nothing left to check: it settled on a pair, or none works.
fn no_pair_left(state: IceConnectionState) -> bool {
    matches!(
        state,
        IceConnectionState::Completed | IceConnectionState::Disconnected
    )
}
