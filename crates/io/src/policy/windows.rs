//! Windows: routes go into the main table, and the tunnel's own sockets are bound to the
//! physical interface (`IP_UNICAST_IF` / `IPV6_UNICAST_IF`), so neither a resource route nor
//! the internet resource's default routes can capture them. The interface is the one with the
//! best default route outside the tunnel (`windows_routes`), looked up each time a socket is
//! bound, and again for the engine's sockets when the network changes.
//!
//! Type-checked on Linux by `scripts/cross-check.sh`; runs only on Windows.

#![allow(unsafe_code)] // setsockopt and the routing table: no safe wrapper in std or socket2

use std::io;
use std::os::windows::io::AsRawSocket;
use std::sync::atomic::{AtomicU32, Ordering};

use windows_sys::Win32::Foundation::NO_ERROR;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    FreeMibTable, GetIpForwardTable2, GetIpInterfaceEntry, InitializeIpInterfaceEntry,
    MIB_IPFORWARD_TABLE2, MIB_IPINTERFACE_ROW,
};
use windows_sys::Win32::Networking::WinSock::{
    AF_INET, AF_INET6, AF_UNSPEC, IP_UNICAST_IF, IPPROTO_IP, IPPROTO_IPV6, IPV6_UNICAST_IF, SOCKET,
    setsockopt,
};

use super::windows_routes::{DefaultRoute, physical_interfaces};

pub use super::no_rules::{install_rules, remove_rules};

/// Default routes into the tunnel leave the tunnel's own sockets alone: they are bound to the
/// physical interface.
pub const OWN_SOCKETS_SKIP_DEFAULT_ROUTES: bool = true;

pub const ROUTE_TABLE: u8 = 254;
pub const INTERNET_TABLE: u8 = 254;

/// The tunnel's interface index, whose default routes never count as physical (0: none yet).
static TUNNEL_INTERFACE: AtomicU32 = AtomicU32::new(0);

/// Called when the TUN device exists, before any route goes into it.
pub fn set_tunnel_interface(index: u32) {
    TUNNEL_INTERFACE.store(index, Ordering::Relaxed);
}

/// Binds `socket` to the physical interface of each family it can carry. Without a default
/// route outside the tunnel there is nothing to bind to, and the socket is left as it is.
pub fn mark_socket(socket: &impl AsRawSocket) -> io::Result<()> {
    let tunnel = match TUNNEL_INTERFACE.load(Ordering::Relaxed) {
        0 => None,
        index => Some(index),
    };
    let (v4, v6) = physical_interfaces(&default_routes()?, tunnel);
    let raw = socket.as_raw_socket() as SOCKET;
    // A socket is of one family (or IPv6 and dual-stack); the option of the other family
    // fails, which is expected. One success is enough.
    let mut result = Ok(());
    let mut bound = false;
    if let Some(index) = v4 {
        // IP_UNICAST_IF takes the index in network byte order.
        match set_option(raw, IPPROTO_IP, IP_UNICAST_IF, index.to_be()) {
            Ok(()) => bound = true,
            Err(e) => result = Err(e),
        }
    }
    if let Some(index) = v6 {
        match set_option(raw, IPPROTO_IPV6, IPV6_UNICAST_IF, index) {
            Ok(()) => bound = true,
            Err(e) => result = Err(e),
        }
    }
    if bound { Ok(()) } else { result }
}

fn set_option(socket: SOCKET, level: i32, name: i32, value: u32) -> io::Result<()> {
    // SAFETY: `value` is a live u32 and its exact size is passed.
    let status = unsafe {
        setsockopt(
            socket,
            level,
            name,
            (&value as *const u32).cast::<u8>(),
            std::mem::size_of::<u32>() as i32,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every default route of both families, with the metric Windows compares (route + interface).
fn default_routes() -> io::Result<Vec<DefaultRoute>> {
    let mut table: *mut MIB_IPFORWARD_TABLE2 = std::ptr::null_mut();
    // SAFETY: a valid out pointer; the table is freed below.
    let status = unsafe { GetIpForwardTable2(AF_UNSPEC, &mut table) };
    if status != NO_ERROR {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    let mut routes = Vec::new();
    // SAFETY: on success `table` holds `NumEntries` rows, alive until FreeMibTable.
    unsafe {
        let rows =
            std::slice::from_raw_parts((*table).Table.as_ptr(), (*table).NumEntries as usize);
        for row in rows {
            if row.DestinationPrefix.PrefixLength != 0 {
                continue;
            }
            let family = row.DestinationPrefix.Prefix.si_family;
            if family != AF_INET && family != AF_INET6 {
                continue;
            }
            let Some(interface_metric) = interface_metric(family, row.InterfaceIndex) else {
                continue;
            };
            routes.push(DefaultRoute {
                ipv4: family == AF_INET,
                interface: row.InterfaceIndex,
                metric: row.Metric.saturating_add(interface_metric),
            });
        }
        FreeMibTable(table.cast());
    }
    Ok(routes)
}

/// The interface's metric for `family`, or `None` when it is not connected.
fn interface_metric(family: u16, index: u32) -> Option<u32> {
    // SAFETY: a zeroed row is a valid starting point; Initialize fills in the defaults.
    let mut row: MIB_IPINTERFACE_ROW = unsafe { std::mem::zeroed() };
    // SAFETY: `row` is a live, writable row.
    unsafe { InitializeIpInterfaceEntry(&mut row) };
    row.Family = family;
    row.InterfaceIndex = index;
    // SAFETY: as above.
    let status = unsafe { GetIpInterfaceEntry(&mut row) };
    (status == NO_ERROR && row.Connected != 0).then_some(row.Metric)
}
