//! Other systems: routes go into the main table. Windows and macOS keep the tunnel's sockets
//! out of the tunnel differently (binding them to the physical interface with
//! `IP_UNICAST_IF` / `IP_BOUND_IF`); until that lands, a resource must not cover the portal,
//! the relays or a gateway's own address there.

use std::io;

/// Default routes into the tunnel would capture the tunnel's own packets until its sockets are
/// bound to the physical interface.
pub const OWN_SOCKETS_SKIP_DEFAULT_ROUTES: bool = false;

pub const ROUTE_TABLE: u8 = 254;
pub const INTERNET_TABLE: u8 = 254;

pub fn mark_socket<T>(_socket: &T) -> io::Result<()> {
    Ok(())
}

#[derive(Debug)]
pub struct Namespace;

impl Namespace {
    pub fn current() -> io::Result<Self> {
        Ok(Self)
    }
}

pub async fn install_rules(_namespace: &Namespace) -> io::Result<()> {
    Ok(())
}

pub async fn remove_rules(_namespace: &Namespace) -> io::Result<()> {
    Ok(())
}
