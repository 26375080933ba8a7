//! Linux: the one way Ember talks to the kernel's routing (rtnetlink, the crate family and
//! version `tun-rs` already brings): routes into Ember's tables, the policy rules that lead to
//! them, a stream of route changes, and the questions the gateway asks (which interfaces the
//! main table routes through, which addresses the host has).
//!
//! A netlink socket belongs to the network namespace of the thread that opens it, for good:
//! everything done through one [`Netlink`] lands in that namespace, wherever the caller runs
//! later (tests build devices inside other namespaces).

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use futures::{StreamExt as _, TryStreamExt as _};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::AsyncSocket as _;
use rtnetlink::{IpVersion, RouteMessageBuilder};
use tokio::sync::mpsc;

use crate::route_table::{Change, Route};

/// The kernel's main routing table (`ip route show table main`).
pub const MAIN_TABLE: u8 = 254;

/// One policy rule: traffic (with or without `mark`) looks up `table`, at `priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub ipv6: bool,
    pub priority: u32,
    pub table: u8,
    /// Matches packets *without* this mark (`not fwmark`).
    pub unless_mark: Option<u32>,
    /// Ignores the table's routes this long or shorter (`suppress_prefixlength`).
    pub suppress_prefix_length: Option<u32>,
}

/// A connection to the kernel's routing, in the current thread's network namespace. Create it
/// inside a tokio runtime: it keeps a task that carries the socket's messages.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Netlink {
    pub fn connect() -> io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Adds `route`; an existing equal route is an error (`EEXIST`).
    pub async fn add_route(&self, route: &Route) -> io::Result<()> {
        self.handle
            .route()
            .add(route_message(route))
            .execute()
            .await
            .map_err(to_io)
    }

    /// Deletes `route`; a missing one is an error (`ESRCH`).
    pub async fn delete_route(&self, route: &Route) -> io::Result<()> {
        self.handle
            .route()
            .del(route_message(route))
            .execute()
            .await
            .map_err(to_io)
    }

    /// The interfaces that routes of `table` (both families) leave through.
    pub async fn route_interfaces(&self, table: u8) -> io::Result<BTreeSet<u32>> {
        let mut interfaces = BTreeSet::new();
        for dump in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut routes = self.handle.route().get(dump).execute();
            while let Some(route) = routes.try_next().await.map_err(to_io)? {
                if table_of(&route) == u32::from(table) {
                    interfaces.extend(output_interface(&route));
                }
            }
        }
        Ok(interfaces)
    }

    /// Every interface's name by its index.
    pub async fn interface_names(&self) -> io::Result<Vec<(u32, String)>> {
        let mut links = self.handle.link().get().execute();
        let mut names = Vec::new();
        while let Some(link) = links.try_next().await.map_err(to_io)? {
            let name = link
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                });
            names.extend(name.map(|name| (link.header.index, name)));
        }
        Ok(names)
    }

    /// Every address of every interface.
    pub async fn addresses(&self) -> io::Result<Vec<IpAddr>> {
        let mut messages = self.handle.address().get().execute();
        let mut addresses = Vec::new();
        while let Some(message) = messages.try_next().await.map_err(to_io)? {
            // The local address, as `ip addr` shows it: on a point-to-point link `Address`
            // is the peer's.
            let local = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(address) => Some(*address),
                    _ => None,
                });
            let address = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Address(address) => Some(*address),
                    _ => None,
                });
            addresses.extend(local.or(address));
        }
        Ok(addresses)
    }

    pub async fn add_rule(&self, rule: &Rule) -> io::Result<()> {
        let mut request = self
            .handle
            .rule()
            .add()
            .table_id(u32::from(rule.table))
            .priority(rule.priority)
            .action(RuleAction::ToTable);
        if let Some(mark) = rule.unless_mark {
            request = request.fw_mark(mark);
        }
        let message = request.message_mut();
        message.header.family = family(rule.ipv6);
        if rule.unless_mark.is_some() {
            message.header.flags |= RuleFlags::Invert;
        }
        if let Some(length) = rule.suppress_prefix_length {
            message
                .attributes
                .push(RuleAttribute::SuppressPrefixLen(length));
        }
        request.execute().await.map_err(to_io)
    }

    /// Deletes every rule (both families) at one of `priorities`; none is fine.
    pub async fn delete_rules(&self, priorities: &[u32]) -> io::Result<()> {
        for version in [IpVersion::V4, IpVersion::V6] {
            let found: Vec<RuleMessage> = self
                .handle
                .rule()
                .get(version)
                .execute()
                .try_filter(|rule| {
                    futures::future::ready(
                        priority_of(rule).is_some_and(|p| priorities.contains(&p)),
                    )
                })
                .try_collect()
                .await
                .map_err(to_io)?;
            for rule in found {
                match self.handle.rule().del(rule).execute().await.map_err(to_io) {
                    // Removed in the meantime (another run cleaning up): what was wanted.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }
}

/// Every change to the routing tables (both families), until the receiver is dropped. Call
/// inside a tokio runtime, in the network namespace to watch.
pub fn listen_routes(queue: usize) -> io::Result<mpsc::Receiver<Change>> {
    let (mut connection, _, mut messages) = rtnetlink::new_connection()?;
    let groups = rtnetlink::constants::RTMGRP_IPV4_ROUTE | rtnetlink::constants::RTMGRP_IPV6_ROUTE;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&rtnetlink::sys::SocketAddr::new(0, groups))?;
    let carrier = tokio::spawn(connection);
    let (changes_tx, changes_rx) = mpsc::channel(queue);
    tokio::spawn(async move {
        while let Some((message, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewRoute(route) | RouteNetlinkMessage::DelRoute(route),
            ) = message.payload
            else {
                continue;
            };
            let Some(change) = change_of(&route) else {
                continue;
            };
            if changes_tx.send(change).await.is_err() {
                break;
            }
        }
        carrier.abort();
    });
    Ok(changes_rx)
}

fn route_message(route: &Route) -> RouteMessage {
    match route.prefix.addr() {
        IpAddr::V4(addr) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(addr, route.prefix.len())
            .output_interface(route.interface)
            .table_id(u32::from(route.table))
            .build(),
        IpAddr::V6(addr) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(addr, route.prefix.len())
            .output_interface(route.interface)
            .table_id(u32::from(route.table))
            .build(),
    }
}

fn change_of(route: &RouteMessage) -> Option<Change> {
    // A default route carries no destination.
    let unspecified = match route.header.address_family {
        AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let destination = route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
            RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
            _ => None,
        })
        .unwrap_or(unspecified);
    Some(Change {
        destination,
        prefix: route.header.destination_prefix_length,
        interface: output_interface(route),
        table: u8::try_from(table_of(route)).ok(),
    })
}

fn output_interface(route: &RouteMessage) -> Option<u32> {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })
}

/// Tables above 255 are named by an attribute; the header then holds `RT_TABLE_COMPAT`.
fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn priority_of(rule: &RuleMessage) -> Option<u32> {
    rule.attributes
        .iter()
        .find_map(|attribute| match attribute {
            RuleAttribute::Priority(priority) => Some(*priority),
            _ => None,
        })
}

fn family(ipv6: bool) -> AddressFamily {
    if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// The kernel's answer as the `io::Error` of its errno, so callers can match `EEXIST`,
/// `ESRCH` or `ENOENT` (`NotFound`) as they would for a system call.
fn to_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other),
    }
}
