//! A simulated host: its engine, its access link, its NAT and what it saw.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ember_engine::{ConnectionState, Engine, Event, LivenessPolicy, PeerId, Role};

use crate::nat::Nat;

/// One direction-agnostic access link of a host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub latency: Duration,
    pub loss: f64,
    pub cut: bool,
}

impl Link {
    #[must_use]
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            loss: 0.0,
            cut: false,
        }
    }
}

/// Datagram counters of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireCounters {
    /// Datagrams this host put on the wire.
    pub sent: u64,
    /// Of those, TURN control traffic to a relay (allocate, refresh, permissions, bindings).
    pub sent_relay_control: u64,
    /// Datagrams that reached this host.
    pub received: u64,
    /// Of those, TURN control traffic from a relay (responses).
    pub received_relay_control: u64,
    /// Sent STUN to peers (liveness probes, their answers, idle keepalives, ICE checks).
    pub sent_peer_stun: u64,
    /// Sent WireGuard handshake messages.
    pub sent_wg_handshake: u64,
    /// Sent WireGuard keepalives (empty data messages).
    pub sent_wg_keepalive: u64,
    /// Sent WireGuard messages carrying application packets.
    pub sent_wg_data: u64,
}

impl WireCounters {
    /// Datagrams sent for the connections themselves (everything but relay control).
    #[must_use]
    pub fn connection_traffic(&self) -> u64 {
        self.sent - self.sent_relay_control
    }

    /// Datagrams sent that carry no application data and are not relay control.
    #[must_use]
    pub fn overhead(&self) -> u64 {
        self.sent_peer_stun + self.sent_wg_handshake + self.sent_wg_keepalive
    }
}

/// A packet delivered to a host's TUN side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub from: PeerId,
    pub packet: Vec<u8>,
    pub at: Instant,
}

pub struct Host {
    pub name: String,
    pub engine: Engine,
    pub role: Role,
    pub private_key: [u8; 32],
    pub(crate) socket: SocketAddr,
    pub(crate) nat: Option<Nat>,
    pub link: Link,
    pub counters: WireCounters,
    pub delivered: Vec<Delivery>,
    pub events: Vec<(Instant, Event)>,
    /// Distinct instants at which the engine was woken by its own timeout.
    pub wakeups: u64,
    pub(crate) last_wakeup: Option<Instant>,
    pub(crate) next_timeout: Option<Instant>,
    pub(crate) policy: LivenessPolicy,
    pub(crate) seed: u64,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// The host's local socket.
    #[must_use]
    pub fn socket(&self) -> SocketAddr {
        self.socket
    }

    /// State changes seen for `peer`, in order.
    #[must_use]
    pub fn states(&self, peer: PeerId) -> Vec<ConnectionState> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::StateChanged { peer: p, to, .. } if *p == peer => Some(*to),
                _ => None,
            })
            .collect()
    }
}
