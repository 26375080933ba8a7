//! Which interface the tunnel's own sockets are bound to on Windows: the one holding the best
//! default route that does not go through the tunnel. Pure, so it is tested on every OS.

/// A default route (`0.0.0.0/0` or `::/0`) as the routing table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRoute {
    pub ipv4: bool,
    pub interface: u32,
    /// The route's metric plus its interface's, which is what Windows compares.
    pub metric: u32,
}

/// The physical interfaces for IPv4 and IPv6: each family's default route with the lowest
/// metric, the tunnel's own (`tunnel`) never counting. Ties go to the lower interface index,
/// so the choice does not flap with the table's order.
pub fn physical_interfaces(
    routes: &[DefaultRoute],
    tunnel: Option<u32>,
) -> (Option<u32>, Option<u32>) {
    let best = |ipv4: bool| {
        routes
            .iter()
            .filter(|r| r.ipv4 == ipv4 && Some(r.interface) != tunnel && r.interface != 0)
            .min_by_key(|r| (r.metric, r.interface))
            .map(|r| r.interface)
    };
    (best(true), best(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(ipv4: bool, interface: u32, metric: u32) -> DefaultRoute {
        DefaultRoute {
            ipv4,
            interface,
            metric,
        }
    }

    #[test]
    fn the_internet_resources_default_route_never_captures_the_tunnels_own_sockets() {
        // The tunnel (index 30) holds the best default routes of both families.
        let routes = [
            route(true, 30, 1),
            route(false, 30, 1),
            route(true, 12, 35),
            route(true, 7, 55),
            route(false, 7, 75),
        ];
        assert_eq!(physical_interfaces(&routes, Some(30)), (Some(12), Some(7)));
    }

    #[test]
    fn without_a_default_route_outside_the_tunnel_nothing_is_bound() {
        let routes = [route(true, 30, 1), route(false, 30, 1)];
        assert_eq!(physical_interfaces(&routes, Some(30)), (None, None));
        assert_eq!(physical_interfaces(&[], None), (None, None));
    }

    #[test]
    fn equal_metrics_pick_the_same_interface_whatever_the_order() {
        let a = [route(true, 9, 25), route(true, 4, 25)];
        let b = [route(true, 4, 25), route(true, 9, 25)];
        assert_eq!(physical_interfaces(&a, None), (Some(4), None));
        assert_eq!(physical_interfaces(&b, None), (Some(4), None));
    }
}
