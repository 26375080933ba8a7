//! Every message Ember's processes exchange, in one place.
//!
//! - [`ipc`]: the tray app ⇄ tunnel service protocol (ARCHITECTURE §5), with [`ipc::PROTOCOL_VERSION`].
//! - [`portal`]: the portal ⇄ client and portal ⇄ gateway WebSocket protocol (ARCHITECTURE §4, §7),
//!   with [`portal::PORTAL_PROTOCOL_VERSION`].
//! - [`codec`]: the length-delimited JSON framing both ends of the IPC use.
//! - [`deep_link`]: the `ember://` links the portal sends the app, parsed at the edge.
//! - [`SecretToken`], [`PresharedKey`], [`IcePassword`], [`RelayPassword`]: credentials that
//!   never print themselves.
//!
//! Each message kind has a golden JSON file under `tests/golden/`; a wire change shows up in
//! review as a change to one of those files.

pub mod codec;
pub mod deep_link;
pub mod ipc;
pub mod portal;
mod secret;

pub use secret::{IcePassword, PresharedKey, RelayPassword, SecretToken};
