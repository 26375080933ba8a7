//! The tunnel service's parts; `main.rs` is the command line around them.
//!
//! - [`server`]: the IPC server the tray app talks to.
//! - [`identity`]: the device id and WireGuard key in the state folder.
//! - [`service`]: the state the service owns and the requests that change it.
//! - [`settings`]: the settings it persists, validated.
//! - [`platform`]: what differs per OS, one module per concern (paths, DNS, lifecycle, accounts).
//! - [`session`]: the portal link and its backoff; [`tunnel`]: the OS side of a session (TUN
//!   device, routes, DNS) around the driver that runs `ember_client::ClientState`.
//! - [`status`]: `ember-tunnel status`.

pub mod identity;
pub mod platform;
pub mod server;
pub mod service;
pub mod session;
pub mod settings;
pub mod status;
pub mod tunnel;
