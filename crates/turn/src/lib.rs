//! Ember's TURN client, **sans-IO**: one [`TurnClient`] per relay (allocation, refresh,
//! permissions, channel bindings, our server-reflexive address) and the small STUN/TURN codec
//! it speaks ([`stun_msg`], also used by the simulator's relay).
//!
//! Like the engine that drives it, a client never reads a clock or touches a socket: inputs
//! (`handle_packet`, `handle_timeout`, commands such as `send_to_peer`) take `now` last, and
//! its outputs come out of `poll_output` / `poll_transmit`, with the next wake-up from
//! `poll_timeout`. It knows nothing of peers or connections: the engine tells it which peer
//! addresses it still needs and whether a connection uses it.

mod client;
pub mod stun_msg;

pub use client::{RelayConfig, RelayId, RelayTimer, Transmit, TurnClient, TurnOutput};
