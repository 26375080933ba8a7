//! The tunnel service's parts; `main.rs` is the command line around them.
//!
//! - [`server`]: the IPC server the tray app talks to.
//! - [`service`]: the state the service owns and the requests that change it.
//! - [`settings`]: the settings it persists, validated.
//! - [`platform`]: what differs per OS (paths, signals, DNS configuration).
//! - [`status`]: `ember-tunnel status`.

pub mod platform;
pub mod server;
pub mod service;
pub mod settings;
pub mod status;
