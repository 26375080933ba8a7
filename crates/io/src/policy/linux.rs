//! Linux: routing tables for Ember's routes and rules per address family that send unmarked
//! traffic to them (`not fwmark` → table), like wg-quick does. In order of priority:
//!
//! 1. `not fwmark` → table 177: the resources' prefixes, which win over any other route;
//! 2. the main table without its default route (`suppress_prefixlength 0`): the LAN and
//!    every other specific route of the system stay reachable;
//! 3. `not fwmark` → table 178: the default routes of the internet resource, when it is on.
//!
//! They go through the routes' own netlink connection ([`crate::netlink`]), so they land in
//! the routes' network namespace.

use std::io;
use std::os::fd::AsFd;

use super::FWMARK;
use crate::netlink::{MAIN_TABLE, Rule};
use crate::route_table::Handle;

/// Whether default routes into the tunnel (the internet resource) leave the tunnel's own
/// sockets outside it: here the mark does.
pub const OWN_SOCKETS_SKIP_DEFAULT_ROUTES: bool = true;

/// The table Ember's resource routes go into.
pub const ROUTE_TABLE: u8 = 177;
/// The table of the internet resource's default routes.
pub const INTERNET_TABLE: u8 = 178;
/// The rules' priorities: before `main` (32766), after the local table (0).
const RESOURCES_PRIORITY: u32 = 5177;
const MAIN_SPECIFIC_PRIORITY: u32 = 5178;
const INTERNET_PRIORITY: u32 = 5179;

/// Marks a socket so its packets skip Ember's table. Needs CAP_NET_ADMIN; without it the
/// socket still works but relies on no resource covering its peers.
pub fn mark_socket(socket: &impl AsFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Mark, &FWMARK)
        .map_err(io::Error::from)
}

/// Replaces any rules of an earlier run (a crash leaves them behind) with fresh ones.
pub async fn install_rules(routes: &Handle) -> io::Result<()> {
    remove_rules(routes).await?;
    for rule in [false, true].into_iter().flat_map(rules) {
        routes.netlink().add_rule(&rule).await?;
    }
    Ok(())
}

/// Removes Ember's rules; absent rules are fine.
pub async fn remove_rules(routes: &Handle) -> io::Result<()> {
    routes
        .netlink()
        .delete_rules(&[
            RESOURCES_PRIORITY,
            MAIN_SPECIFIC_PRIORITY,
            INTERNET_PRIORITY,
        ])
        .await
}

/// The three rules of one address family, in the order of the module's documentation.
fn rules(ipv6: bool) -> [Rule; 3] {
    [
        Rule {
            ipv6,
            priority: RESOURCES_PRIORITY,
            table: ROUTE_TABLE,
            unless_mark: Some(FWMARK),
            suppress_prefix_length: None,
        },
        Rule {
            ipv6,
            priority: MAIN_SPECIFIC_PRIORITY,
            table: MAIN_TABLE,
            unless_mark: None,
            suppress_prefix_length: Some(0),
        },
        Rule {
            ipv6,
            priority: INTERNET_PRIORITY,
            table: INTERNET_TABLE,
            unless_mark: Some(FWMARK),
            suppress_prefix_length: None,
        },
    ]
}
