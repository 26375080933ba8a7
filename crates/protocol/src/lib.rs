//! Every message Ember's processes exchange, in one place.
//!
//! - [`ipc`]: the tray app ⇄ tunnel service protocol (ARCHITECTURE §5), with [`ipc::PROTOCOL_VERSION`].
//! - [`portal`]: the portal ⇄ client and portal ⇄ gateway WebSocket protocol (ARCHITECTURE §4, §7),
//!   with [`portal::PORTAL_PROTOCOL_VERSION`].
//! - [`codec`]: the length-delimited JSON framing both ends of the IPC use.
//! - [`sign_in`]: the PKCE-style browser sign-in (verifier, challenge, callback, redeem).
//! - [`WireGuardKey`]: a 32-byte key, parsed once from its base64.
//! - [`Prefix`]: the one CIDR type, parsed once from the portal's text.
//! - [`SecretToken`], [`PresharedKey`], [`IcePassword`], [`RelayPassword`]: credentials that
//!   never print themselves.
//!
//! Each message kind has a golden JSON file under `tests/golden/`; a wire change shows up in
//! review as a change to one of those files.

pub mod codec;
pub mod ipc;
mod key;
pub mod portal;
mod prefix;
mod secret;
pub mod sign_in;

pub use key::{BadKey, WireGuardKey};
pub use prefix::{BadPrefix, Prefix};
pub use secret::{IcePassword, PresharedKey, RelayPassword, SecretToken};
