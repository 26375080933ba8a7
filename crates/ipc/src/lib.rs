//! How the tray app and the tunnel service reach each other on one machine.
//!
//! - [`transport`]: the endpoint (a Unix socket on Linux and macOS, a named pipe on Windows),
//!   one facade over per-OS files. The service side admits a peer only after checking who it is.
//! - [`client`]: connect and do the hello handshake, for the tray app and `ember-tunnel status`.
//! - [`windows_security`]: Windows security descriptors from SDDL and object owners, for the
//!   pipe and the service's folders.
//!
//! The messages themselves live in `ember-protocol`.

pub mod client;
pub mod transport;
pub mod windows_security;

pub use transport::{Endpoint, PeerIdentity};
