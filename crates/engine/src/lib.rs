//! Ember's connection engine: ICE (str0m's agent, crate `is`) + WireGuard
//! (`boringtun::noise::Tunn`) + a TURN client (crate `ember-turn`) + a liveness policy,
//! **sans-IO**.
//!
//! # The contract
//!
//! The engine never reads a clock, never touches a socket, never spawns a thread and draws no
//! unseeded randomness of its own (the seed is in [`EngineConfig`]). Time comes in as the last
//! argument of every input; everything goes out through `poll_*`:
//!
//! - inputs: [`Engine::handle_local_addresses`], [`Engine::handle_relays`],
//!   [`Engine::handle_grant`], [`Engine::handle_remote_candidate`],
//!   [`Engine::handle_network_packet`], [`Engine::handle_tun_packet`],
//!   [`Engine::handle_timeout`], [`Engine::reset`];
//! - outputs: [`Engine::poll_transmit`] (datagrams, with source and destination),
//!   [`Engine::poll_packet`] (decrypted packets for the TUN side), [`Engine::poll_event`]
//!   (candidates to signal, state changes, failures), and last [`Engine::poll_timeout`] (the
//!   next instant to call `handle_timeout`, with the timer that is due as a [`TimerKind`]).
//!
//! Buffers go back with [`Engine::recycle`] once a datagram is sent or a packet written: then an
//! established connection moves packets without allocating (`tests/no_alloc.rs` shows it).
//!
//! **After every input, drain the outputs until they are empty, then ask for the timeout.**
//! The canonical driving loop:
//!
//! ```text
//! loop {
//!     while let Some(t) = engine.poll_transmit() {
//!         socket(t.src).send_to(&t.payload, t.dst);
//!         engine.recycle(t.payload);
//!     }
//!     while let Some((peer, p)) = engine.poll_packet() { tun.write(&p); engine.recycle(p) }
//!     while let Some(e) = engine.poll_event() { signal_or_report(e) }
//!     let deadline = engine.poll_timeout().map_or(now + 1h, |(at, _why)| at);
//!     match wait_for(socket, tun, signalling, deadline) {
//!         Datagram(local, from, bytes) => engine.handle_network_packet(local, from, &bytes, now()),
//!         TunPacket(peer, bytes) => engine.handle_tun_packet(peer, &bytes, now()),
//!         Signal(grant_or_candidate) => engine.handle_grant(..)/handle_remote_candidate(..),
//!         Timeout => engine.handle_timeout(now()),
//!     }
//! }
//! ```
//!
//! Nothing that arrives from the network is an error or a panic: bad datagrams are dropped and
//! logged at TRACE. Errors ([`EngineError`]) only come from the caller's own inputs.
//!
//! # What the dependencies do on their own
//!
//! - `boringtun::noise::Tunn` reads `Instant::now()` itself and draws its ephemeral keys from
//!   the OS. With this crate's `sim-clock` feature (used by the tests, the simulator and the
//!   benchmark) the engine sets boringtun's mock clock to `now` before every call, so
//!   WireGuard's timers run in the caller's time. In production the feature is off and
//!   boringtun's real clock matches the driver's `now`.
//! - The `is` agent draws its STUN transaction IDs from its own generator. This changes bytes,
//!   never timing: the simulation is deterministic in everything it measures.
//!
//! # Liveness
//!
//! Connections go `Connecting → Active ⇄ Idle → Broken` (an [`Event::StateChanged`] each time)
//! under a [`LivenessPolicy`]: see that type and the crate README for the two shipped instances.

mod buffer;
mod clock;
mod connection;
mod engine;
mod error;
mod policy;
mod pool;
mod timers;
mod types;
mod wire;

pub use buffer::PacketBuffer;
pub use ember_turn::{RelayConfig, RelayId, RelayTimer, stun_msg};
pub use engine::Engine;
pub use error::EngineError;
pub use policy::{KeepaliveSender, LivenessPolicy, ProbeRto};
pub use timers::{ConnectionTimer, TimerKind};
pub use types::{
    ConnectionState, ConnectionStats, EngineConfig, Event, FailureReason, Grant, IceCredentials,
    PathInfo, PeerId, Role, Transmit,
};
pub use wire::{Datagram, classify};
