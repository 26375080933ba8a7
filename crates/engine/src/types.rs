//! The engine's public vocabulary: peers, grants, events, transmits, statistics.

use std::net::SocketAddr;
use std::time::Duration;

use crate::buffer::PacketBuffer;
use crate::policy::LivenessPolicy;
use crate::turn::RelayId;

/// A peer: the gateway (on a client) or the client device (on a gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

/// Which end of a tunnel this engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The user's device: ICE-controlling, WireGuard initiator, sends idle keepalives.
    Client,
    /// The far end in the customer's network.
    Gateway,
}

/// ICE username fragment and password, as handed out by the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// Everything the portal hands out to connect to one peer.
#[derive(Debug, Clone)]
pub struct Grant {
    pub peer: PeerId,
    pub peer_public_key: [u8; 32],
    pub preshared_key: [u8; 32],
    pub local_ice: IceCredentials,
    pub remote_ice: IceCredentials,
}

/// Static configuration of an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub role: Role,
    /// This device's WireGuard private key.
    pub private_key: [u8; 32],
    /// Seed for every random choice the engine makes itself (WireGuard indexes, ICE tie
    /// breaker, TURN transaction IDs).
    pub seed: u64,
    pub policy: LivenessPolicy,
    /// Packets buffered per connection while it is not up.
    pub buffer_capacity: usize,
}

impl EngineConfig {
    #[must_use]
    pub fn new(role: Role, private_key: [u8; 32], seed: u64) -> Self {
        Self {
            role,
            private_key,
            seed,
            policy: LivenessPolicy::ember(),
            buffer_capacity: PacketBuffer::DEFAULT_CAPACITY,
        }
    }
}

/// State of a connection (ARCHITECTURE §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Active,
    Idle,
    Broken,
}

/// Why a connection was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No working path within the policy's connect timeout.
    ConnectTimeout,
    /// Probes of the path went unanswered.
    PathDead,
    /// An idle peer stopped sending its keepalives.
    PeerSilent,
    /// `reset` was called (network change).
    Reset,
    /// The peer was removed or given a new grant.
    Replaced,
}

/// What the engine tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Packets wait for a peer that has no connection: ask the portal for a grant.
    ConnectionNeeded { peer: PeerId },
    /// A local candidate to signal to the peer (SDP `candidate:` string).
    LocalCandidate { peer: PeerId, candidate: String },
    /// A connection changed state.
    StateChanged {
        peer: PeerId,
        from: ConnectionState,
        to: ConnectionState,
    },
    /// A connection is `Broken` and removed; its unsent packets are kept for the next one.
    ConnectionFailed { peer: PeerId, reason: FailureReason },
    /// A relay allocation is ready (or was renewed with a new address).
    RelayReady {
        relay: RelayId,
        relayed: SocketAddr,
        server_reflexive: SocketAddr,
    },
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket to send from.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
    /// Sent to a TURN server on behalf of a peer (wrapped in ChannelData or a Send indication).
    pub relayed: bool,
}

/// Which way a connection's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// Local candidate: a host address or a relayed address of one of our allocations.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Through one of our relays.
    pub relayed: bool,
}

/// What the tray app shows about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStats {
    pub state: ConnectionState,
    pub path: Option<PathInfo>,
    /// The path runs through a relay: one of ours, or the peer's (its relayed candidate).
    pub through_relay: bool,
    pub rtt: Option<Duration>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Time since the last WireGuard handshake (as boringtun's clock sees it).
    pub last_handshake: Option<Duration>,
}
