//! Which interface the tunnel's own sockets are bound to on macOS: the one of the system's own
//! default route. Pure, so Linux tests it; `policy/macos.rs` feeds it the routing table.
//!
//! macOS keeps one default route per interface: the primary service's is unscoped, every other
//! one carries `RTF_IFSCOPE` and serves only sockets bound to its interface. A socket bound
//! with `IP_BOUND_IF` looks up routes scoped to its interface first, so the tunnel's routes
//! (unscoped, through utun) do not capture it, not even the internet resource's `0/1` and
//! `128/1` halves. Those halves are never a default route (prefix 0), so they are never chosen.

use std::net::IpAddr;
use std::num::NonZeroU32;

/// A route, as far as choosing the interface goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteFacts {
    pub destination: IpAddr,
    pub prefix: u8,
    pub interface: Option<u32>,
    /// `RTF_IFSCOPE`: used only by sockets bound to `interface`.
    pub scoped: bool,
    /// A route that forwards (not a reject or blackhole route).
    pub unicast: bool,
}

/// The interface each address family's sockets are bound to; `None` unbinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bindings {
    pub ipv4: Option<NonZeroU32>,
    pub ipv6: Option<NonZeroU32>,
}

/// The primary default route's interface per family. Without an IPv6 default route, IPv6
/// sockets are bound to IPv4's interface: there they fail fast for want of a route, where
/// unbound they would follow the internet resource's `::/1` routes into the tunnel.
pub fn choose(routes: &[RouteFacts]) -> Bindings {
    let ipv4 = default_interface(routes, false);
    let ipv6 = default_interface(routes, true).or(ipv4);
    Bindings { ipv4, ipv6 }
}

fn default_interface(routes: &[RouteFacts], ipv6: bool) -> Option<NonZeroU32> {
    let defaults = routes.iter().filter(|r| {
        r.destination.is_ipv6() == ipv6
            && r.destination.is_unspecified()
            && r.prefix == 0
            && r.unicast
    });
    // The unscoped default is the primary service's; a scoped one only when there is none.
    let (unscoped, scoped): (Vec<&RouteFacts>, Vec<&RouteFacts>) =
        defaults.partition(|r| !r.scoped);
    unscoped
        .into_iter()
        .chain(scoped)
        .find_map(|r| r.interface.and_then(NonZeroU32::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(destination: &str, prefix: u8, interface: u32, scoped: bool) -> RouteFacts {
        RouteFacts {
            destination: destination.parse().unwrap(),
            prefix,
            interface: Some(interface),
            scoped,
            unicast: true,
        }
    }

    const EN0: u32 = 4;
    const EN1: u32 = 5;
    const UTUN: u32 = 17;

    fn index(i: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(i)
    }

    #[test]
    fn sockets_follow_the_primary_default_route_not_a_scoped_one() {
        let routes = [
            route("0.0.0.0", 0, EN1, true),
            route("0.0.0.0", 0, EN0, false),
            route("192.168.1.0", 24, EN0, false),
            route("::", 0, EN0, false),
        ];
        assert_eq!(
            choose(&routes),
            Bindings {
                ipv4: index(EN0),
                ipv6: index(EN0)
            }
        );
    }

    /// Bound to utun, the engine's packets would go into the tunnel they carry.
    #[test]
    fn the_internet_resources_half_routes_never_capture_the_tunnels_own_sockets() {
        let routes = [
            route("0.0.0.0", 1, UTUN, false),
            route("128.0.0.0", 1, UTUN, false),
            route("::", 1, UTUN, false),
            route("8000::", 1, UTUN, false),
            route("0.0.0.0", 0, EN0, false),
            route("::", 0, EN0, false),
        ];
        assert_eq!(
            choose(&routes),
            Bindings {
                ipv4: index(EN0),
                ipv6: index(EN0)
            }
        );
    }

    /// Unbound, an IPv6 socket would follow the internet resource's `::/1` into the tunnel.
    #[test]
    fn ipv6_sockets_without_an_ipv6_default_route_stay_off_the_tunnel() {
        let routes = [
            route("0.0.0.0", 0, EN1, false),
            route("::", 1, UTUN, false),
            route("8000::", 1, UTUN, false),
        ];
        assert_eq!(choose(&routes).ipv6, index(EN1));
    }

    #[test]
    fn without_a_default_route_sockets_are_unbound_and_reject_routes_do_not_count() {
        let mut reject = route("0.0.0.0", 0, EN0, false);
        reject.unicast = false;
        assert_eq!(choose(&[reject]), Bindings::default());
        assert_eq!(choose(&[]), Bindings::default());
        // Only a scoped default (no primary service yet): its interface still beats none.
        assert_eq!(choose(&[route("0.0.0.0", 0, EN1, true)]).ipv4, index(EN1));
    }
}
