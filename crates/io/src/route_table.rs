//! The operating system's routing table, one facade over three ways in: Ember's own netlink
//! module on Linux ([`crate::netlink`], shared with the policy rules), `net-route` on Windows
//! (the IP helper) and other systems, `route_manager` on macOS (the routing socket). net-route's macOS build
//! runs bindgen over the SDK's headers; route_manager ships its bindings, so the macOS build
//! needs no SDK and `scripts/cross-check.sh` checks it on Linux.

use std::net::IpAddr;

use crate::routes::Prefix;

#[cfg(target_os = "linux")]
#[path = "route_table/linux.rs"]
mod platform;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
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

/// The routes that stand for `prefix` in a single routing table: a default route (the internet
/// resource) becomes its two halves (`0/1` and `128/1`, `::/1` and `8000::/1`). The system's
/// own default route stays in place (adding a second one fails), the halves win over it by
/// being longer, and every more specific route of the system (the LAN) still wins over them.
#[cfg(any(target_os = "macos", test))]
fn os_prefixes(prefix: Prefix) -> Vec<Prefix> {
    if !prefix.is_empty() {
        return vec![prefix];
    }
    let upper: IpAddr = match prefix.addr() {
        IpAddr::V4(_) => std::net::Ipv4Addr::new(128, 0, 0, 0).into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0).into(),
    };
    [prefix.addr(), upper]
        .into_iter()
        .filter_map(|addr| Prefix::new(addr, 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> Prefix {
        let (addr, len) = text.split_once('/').unwrap();
        Prefix::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap()
    }

    /// macOS refuses a second default route; the internet resource's would not be added.
    #[test]
    fn a_default_route_becomes_two_halves_that_leave_the_systems_default_in_place() {
        assert_eq!(
            os_prefixes(prefix("0.0.0.0/0")),
            vec![prefix("0.0.0.0/1"), prefix("128.0.0.0/1")]
        );
        assert_eq!(
            os_prefixes(prefix("::/0")),
            vec![prefix("::/1"), prefix("8000::/1")]
        );
        assert_eq!(
            os_prefixes(prefix("10.0.0.0/8")),
            vec![prefix("10.0.0.0/8")]
        );
    }
}
