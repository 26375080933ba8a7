//! TURN relays: what arrives through them and what they must send.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::trace;

use ember_turn::{RelayId, TurnClient, TurnOutput};
use is::Candidate;

use super::Engine;
use crate::connection::*;
use crate::types::*;
use crate::wire::{Datagram, classify};

impl Engine {
    pub(super) fn handle_from_relay(
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
    pub(super) fn drain_relays(&mut self, now: Instant) {
        let mut new_candidates = Vec::new();
        for relay in self.relays.values_mut() {
            while let Some(output) = relay.poll_output() {
                match output {
                    TurnOutput::Transmit(t) => self.out.transmits.push_back(t.into()),
                    TurnOutput::Allocated {
                        relayed,
                        server_reflexive,
                    } => {
                        self.out.events.push_back(Event::RelayReady {
                            relay: relay.id(),
                            relayed,
                            server_reflexive,
                        });
                        new_candidates.extend(relay_candidates(relay));
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
            self.rearm(peer);
        }
    }

    /// Moves the relays' datagrams out; allocation results stay for `drain_relays`, which adds
    /// their candidates to the connections.
    pub(super) fn drain_relays_transmits_only(&mut self) {
        for relay in self.relays.values_mut() {
            while let Some(t) = relay.poll_transmit() {
                self.out.transmits.push_back(t.into());
            }
        }
    }
}

/// A relay's server-reflexive and relayed candidates, once it has an allocation.
pub(super) fn relay_candidates(relay: &TurnClient) -> Vec<Candidate> {
    let (Some(relayed), Some(server_reflexive), Some(local)) = (
        relay.relayed_address(),
        relay.server_reflexive_address(),
        relay.local_address(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if server_reflexive != local
        && let Ok(c) = Candidate::server_reflexive(server_reflexive, local, "udp")
    {
        out.push(c);
    }
    if let Ok(c) = Candidate::relayed(relayed, local, "udp") {
        out.push(c);
    }
    out
}

/// Whether `local` is one of our relays' relayed addresses (a path from it runs through that
/// relay).
pub(super) fn is_relay_address(relays: &BTreeMap<RelayId, TurnClient>, local: SocketAddr) -> bool {
    relays.values().any(|r| r.relayed_address() == Some(local))
}
