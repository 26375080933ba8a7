//! macOS: no marks and no policy routing, so routes go into the one table there is, and the
//! tunnel's own sockets are bound to the interface of the system's default route
//! (`IP_BOUND_IF` / `IPV6_BOUND_IF`; see `default_interface` for why the tunnel's routes then
//! cannot capture them). The interface changes with the network: the driver binds its
//! sockets again on every reset (`UdpSocket::mark_again`), and the portal connection and the
//! DNS forwarder open new sockets after a change anyway.
//!
//! A socket bound to the default interface cannot reach a destination only another interface
//! leads to (loopback, a second network card, another VPN): the callers leave loopback
//! destinations unbound; the rest is a known limit.
//!
//! Type-checked on Linux by `scripts/cross-check.sh`; the choice itself is tested there.

use std::io;
use std::os::fd::AsFd;

use super::default_interface::{self, Bindings, RouteFacts};

pub use super::no_rules::{install_rules, remove_rules};

/// Bound to the physical interface, the tunnel's own sockets skip the internet resource's
/// default routes.
pub const OWN_SOCKETS_SKIP_DEFAULT_ROUTES: bool = true;

/// One routing table: the table numbers are Linux's notion and unused here.
pub const ROUTE_TABLE: u8 = 254;
pub const INTERNET_TABLE: u8 = 254;

/// Binds `socket` to the interface of the default route of its address family (or unbinds it
/// when there is none). Calling it again follows a network change.
pub fn mark_socket(socket: &impl AsFd) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    // The family of the socket: an unbound socket reports the unspecified address of it.
    let ipv6 = socket.local_addr()?.is_ipv6();
    let bindings = default_bindings()?;
    if ipv6 {
        socket.bind_device_by_index_v6(bindings.ipv6)
    } else {
        socket.bind_device_by_index_v4(bindings.ipv4)
    }
}

/// Reads the routing table (one sysctl; done per socket, which the DNS forwarder's rare
/// queries and the driver's resets can afford).
fn default_bindings() -> io::Result<Bindings> {
    let routes = route_manager::RouteManager::new()?.list()?;
    let facts: Vec<RouteFacts> = routes
        .iter()
        .map(|route| RouteFacts {
            destination: route.destination(),
            prefix: route.prefix(),
            interface: route.if_index(),
            scoped: route.if_scope(),
            unicast: route.kind() == route_manager::RouteKind::Unicast,
        })
        .collect();
    let bindings = default_interface::choose(&facts);
    tracing::trace!(?bindings, "Default interfaces for the tunnel's own sockets");
    Ok(bindings)
}
