//! The WireGuard half of a connection: boringtun's state caught up before use, handshakes,
//! encapsulation, and what arrives from the peer.

use std::net::SocketAddr;
use std::time::Instant;

use boringtun::noise::{Packet, Tunn, TunnResult, handshake::parse_handshake_anon};
use is::IceAgent;
use tracing::{debug, info, trace};

use super::Engine;
use crate::clock;
use crate::connection::*;
use crate::types::*;

impl Engine {
    /// Brings a connection's WireGuard state up to `now` before it is used.
    ///
    /// boringtun stamps every event with the time of the last `update_timers` call, so after
    /// a pause its timers must be caught up first. A state too old to be caught up without
    /// boringtun expiring it (no handshake for 180 s, or an initiation unanswered for 80 s)
    /// is replaced by a fresh one for the same peer.
    pub(super) fn prepare_tunnel(&mut self, peer: PeerId, now: Instant) {
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
                let bytes = self.pool.copy_of(bytes);
                send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
            }
            TunnResult::Err(e) => debug!(peer = peer.0, ?e, "WireGuard timer"),
            _ => {}
        }
    }

    /// Starts a new WireGuard handshake at once.
    pub(super) fn force_handshake(&mut self, peer: PeerId, now: Instant) {
        self.prepare_tunnel(peer, now);
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if let TunnResult::WriteToNetwork(bytes) = conn
            .tunn
            .format_handshake_initiation(&mut self.scratch, true)
        {
            let bytes = self.pool.copy_of(bytes);
            send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
        }
        conn.wg_hot_until = now + WG_HOT;
        self.drain_relays_transmits_only();
    }

    pub(super) fn encapsulate(&mut self, peer: PeerId, packet: &[u8], now: Instant) {
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
                let bytes = self.pool.copy_of(bytes);
                send_on_path(conn, bytes, &mut self.relays, &mut self.out, now);
            }
            TunnResult::Done => {}
            TunnResult::Err(e) => debug!(peer = peer.0, ?e, "Encapsulation failed"),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
        conn.wg_hot_until = now + WG_HOT;
        self.drain_relays(now);
    }

    pub(super) fn handle_wireguard(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        let Some(peer) = self.wireguard_peer(data) else {
            trace!(%from, "WireGuard packet for no known session; dropped");
            return;
        };
        self.receive_wireguard(peer, local, from, data, now);
        self.rearm(peer);
    }

    fn receive_wireguard(
        &mut self,
        peer: PeerId,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
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
                    replies.push(self.pool.copy_of(bytes));
                }
                TunnResult::WriteToTunnelV4(bytes, _) | TunnResult::WriteToTunnelV6(bytes, _) => {
                    authenticated = true;
                    if !bytes.is_empty() {
                        delivered = Some(self.pool.copy_of(bytes));
                    }
                    break;
                }
            }
            datagram = &[];
        }
        let relayed = super::relays::is_relay_address(&self.relays, local);
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
    pub(super) fn wireguard_peer(&self, data: &[u8]) -> Option<PeerId> {
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
    pub(super) fn after_wireguard(&mut self, peer: PeerId, now: Instant) {
        let Some(conn) = self.connections.get_mut(&peer) else {
            return;
        };
        if conn.state != ConnectionState::Connecting
            || conn.tunn.time_since_last_handshake().is_none()
        {
            return;
        }
        let elapsed = now.saturating_duration_since(conn.created);
        let relayed = conn.through_relay();
        info!(peer = peer.0, ?elapsed, relayed, "Connection established");
        debug!(peer = peer.0, path = ?conn.path, "Established path");
        conn.rtt = conn
            .ice
            .as_ref()
            .and_then(IceAgent::nominated_pair_rtt)
            .or(conn.rtt);
        // From here on the engine's own liveness policy watches the path; the agent stays
        // only to look for a direct path when this one runs through a relay.
        if super::ice::keeps_checking(conn) {
            info!(
                peer = peer.0,
                "Relayed for now; still checking direct pairs"
            );
        } else {
            conn.ice = None;
        }
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
}
