//! Systems without policy routing (Windows, macOS, others): the tunnel's own sockets are bound
//! to the physical interface instead of marked, so there are no rules to install or remove.

use std::io;

use crate::route_table::Handle;

pub async fn install_rules(_routes: &Handle) -> io::Result<()> {
    Ok(())
}

pub async fn remove_rules(_routes: &Handle) -> io::Result<()> {
    Ok(())
}
