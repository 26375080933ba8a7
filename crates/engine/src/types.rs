//! The engine's public vocabulary: peers, grants, events, transmits, statistics.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::buffer::PacketBuffer;
use crate::policy::LivenessPolicy;
use ember_turn::RelayId;

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

/// ICE username fragment and password, as handed out by the portal. `Debug` shows the
/// username fragment only: the password answers the peer's connectivity checks.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &REDACTED)
            .finish()
    }
}

/// Everything the portal hands out to connect to one peer. `Debug` leaves out the preshared
/// key and the ICE passwords.
#[derive(Clone)]
pub struct Grant {
    pub peer: PeerId,
    pub peer_public_key: [u8; 32],
    pub preshared_key: [u8; 32],
    pub local_ice: IceCredentials,
    pub remote_ice: IceCredentials,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("peer", &self.peer)
            .field("peer_public_key", &self.peer_public_key)
            .field("preshared_key", &REDACTED)
            .field("local_ice", &self.local_ice)
            .field("remote_ice", &self.remote_ice)
            .finish()
    }
}

/// Static configuration of an engine. `Debug` leaves out the private key.
#[derive(Clone)]
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

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("role", &self.role)
            .field("private_key", &REDACTED)
            .field("seed", &self.seed)
            .field("policy", &self.policy)
            .field("buffer_capacity", &self.buffer_capacity)
            .finish()
    }
}

/// What `Debug` shows in place of a secret.
pub(crate) struct Redacted;

pub(crate) const REDACTED: Redacted = Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
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
    /// An established connection moved to another path (a relayed one upgraded to direct).
    PathChanged { peer: PeerId, relayed: bool },
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

impl From<ember_turn::Transmit> for Transmit {
    /// A datagram for one of our relays.
    fn from(t: ember_turn::Transmit) -> Self {
        Self {
            src: t.src,
            dst: t.dst,
            payload: t.payload,
            relayed: true,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ember_turn::RelayConfig;

    #[test]
    fn debug_output_of_grants_configs_and_relays_leaves_out_every_secret() {
        let grant = Grant {
            peer: PeerId(1),
            peer_public_key: [1; 32],
            preshared_key: [0xAB; 32],
            local_ice: IceCredentials {
                ufrag: "lfrag".into(),
                pwd: "local-hunter2".into(),
            },
            remote_ice: IceCredentials {
                ufrag: "rfrag".into(),
                pwd: "remote-hunter2".into(),
            },
        };
        let config = EngineConfig::new(Role::Client, [0xCD; 32], 7);
        let relay = RelayConfig {
            id: RelayId(1),
            server: "192.0.2.1:3478".parse().unwrap(),
            username: "1700000000:dev".into(),
            password: "turn-hunter2".into(),
        };
        let printed = format!("{grant:?} {grant:#?} {config:?} {relay:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        // 0xAB and 0xCD as decimal bytes, the way `[u8; 32]` prints.
        assert!(
            !printed.contains("171") && !printed.contains("205"),
            "{printed}"
        );
        assert!(printed.contains("lfrag") && printed.contains("1700000000:dev"));
    }
}
