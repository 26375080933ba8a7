//! The operating system's routing table, one facade over two crates: `net-route` on Linux
//! (netlink) and Windows (the IP helper), `route_manager` on macOS (the routing socket).
//! net-route's macOS build runs bindgen over the SDK's headers; route_manager ships its
//! bindings, so the macOS build needs no SDK and `scripts/cross-check.sh` checks it on Linux.

use std::net::IpAddr;

use crate::routes::Prefix;

#[cfg(not(target_os = "macos"))]
#[path = "route_table/net_route.rs"]
mod platform;
#[cfg(target_os = "macos")]
#[path = "route_table/macos.rs"]
mod platform;

pub use platform::{Handle, listen};

/// A route through one interface. `table` is one of Ember's tables on Linux (policy routing);
/// elsewhere routes go into the one table there is and `table` is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    pub interface: u32,
    pub table: u8,
}

/// A route that appeared, vanished or changed, on any interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub destination: IpAddr,
    pub prefix: u8,
    pub interface: Option<u32>,
    /// Known on Linux only.
    pub table: Option<u8>,
}

/// Changes waiting between the task that reads them from the OS and their reader.
const CHANGE_QUEUE: usize = 64;
