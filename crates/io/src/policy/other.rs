//! Systems Ember does not ship on: routes go into the main table and nothing keeps the tunnel's
//! own sockets out of the tunnel, so a resource must not cover the portal, the relays or a
//! gateway's own address there.

use std::io;

pub use super::no_rules::{install_rules, remove_rules};

/// Default routes into the tunnel would capture the tunnel's own packets until its sockets are
/// bound to the physical interface.
pub const OWN_SOCKETS_SKIP_DEFAULT_ROUTES: bool = false;

pub const ROUTE_TABLE: u8 = 254;
pub const INTERNET_TABLE: u8 = 254;

pub fn mark_socket<T>(_socket: &T) -> io::Result<()> {
    Ok(())
}
