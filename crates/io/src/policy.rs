//! Keeping the tunnel's own traffic out of the tunnel.
//!
//! The engine's UDP sockets, the portal connection and the DNS forwarder talk to addresses a
//! resource may cover (a gateway's LAN address is a natural ICE candidate, and it lies in the
//! very subnet the gateway serves). Sent through the TUN device, such a packet would come back
//! to the engine, and a path through the tunnel could even pass an ICE check. So routes into
//! the tunnel live in a table of their own, consulted only for traffic *without* Ember's mark,
//! and every socket Ember opens for itself carries the mark.
//!
//! macOS has no marks: there each such socket is bound to the interface of the system's own
//! default route (`IP_BOUND_IF`), which the tunnel's routes cannot capture.

#[cfg(any(target_os = "macos", test))]
#[path = "policy/default_interface.rs"]
mod default_interface;
#[cfg(not(target_os = "linux"))]
#[path = "policy/no_rules.rs"]
mod no_rules;
#[cfg(target_os = "linux")]
#[path = "policy/linux.rs"]
mod platform;
#[cfg(target_os = "macos")]
#[path = "policy/macos.rs"]
mod platform;
#[cfg(windows)]
#[path = "policy/windows.rs"]
mod platform;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
#[path = "policy/other.rs"]
mod platform;
#[cfg(any(windows, test))]
#[path = "policy/windows_routes.rs"]
mod windows_routes;

#[cfg(windows)]
pub use platform::set_tunnel_interface;
pub use platform::{
    INTERNET_TABLE, OWN_SOCKETS_SKIP_DEFAULT_ROUTES, ROUTE_TABLE, install_rules, mark_socket,
    remove_rules,
};

/// The mark on the tunnel's own sockets ("em").
pub const FWMARK: u32 = 0x656d;
