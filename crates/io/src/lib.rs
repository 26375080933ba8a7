//! Ember's IO shell: what moves bytes between the operating system and the sans-IO engine.
//!
//! - [`tun`]: the TUN device (`tun-rs`: TUN on Linux, utun on macOS, Wintun on Windows).
//! - [`udp`]: UDP sockets with batched receive and segmented send (GRO/GSO where the OS has
//!   them, through `quinn-udp`).
//! - [`routes`]: the routes that send resource traffic into the TUN device, through
//!   [`route_table`] (netlink, the Windows IP helper, the macOS routing socket).
//! - [`driver`]: the event loop that runs a sans-IO state (the client's, the gateway's) on all
//!   of the above.
//! - [`relays`]: where the portal's relays are (their host names looked up).
//! - [`netwatch`]: notices when the network under the tunnel changes.
//! - `netlink` (Linux): the one module through which routes, policy rules, the network watch
//!   and the gateway's questions reach the kernel's routing.
//! - [`clock`]: notices when the machine was suspended, so connections can be reset instead
//!   of waiting out timers that did not run.

pub mod clock;
pub mod driver;
#[cfg(target_os = "linux")]
pub mod netlink;
pub mod netwatch;
pub mod policy;
pub mod relays;
pub mod route_table;
pub mod routes;
pub mod tun;
pub mod udp;
