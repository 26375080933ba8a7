//! Systems without policy routing (Windows, macOS, others): the tunnel's own sockets are bound
//! to the physical interface instead of marked, so there are no rules to install or remove.

use std::io;

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
