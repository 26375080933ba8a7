//! The DNS servers every adapter lists (`GetAdaptersAddresses`), for the stub's upstream.

#![allow(unsafe_code)] // walking the adapter list Windows fills in; no safe wrapper in std

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use windows_sys::Win32::Foundation::{ERROR_BUFFER_OVERFLOW, ERROR_SUCCESS};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_MULTICAST, GAA_FLAG_SKIP_UNICAST, GetAdaptersAddresses,
    IP_ADAPTER_ADDRESSES_LH,
};
use windows_sys::Win32::NetworkManagement::Ndis::IfOperStatusUp;
use windows_sys::Win32::Networking::WinSock::{
    AF_INET, AF_INET6, AF_UNSPEC, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6,
};

use super::super::windows_nrpt::AdapterResolver;

pub fn resolvers() -> io::Result<Vec<AdapterResolver>> {
    let flags = GAA_FLAG_SKIP_UNICAST | GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST;
    // u64 elements keep the buffer aligned for the structures written into it.
    let mut buffer: Vec<u64> = vec![0; 2048];
    loop {
        let mut size = (buffer.len() * 8) as u32;
        // SAFETY: `buffer` has `size` writable bytes, suitably aligned.
        let status = unsafe {
            GetAdaptersAddresses(
                u32::from(AF_UNSPEC),
                flags,
                std::ptr::null(),
                buffer.as_mut_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>(),
                &mut size,
            )
        };
        if status == ERROR_BUFFER_OVERFLOW {
            buffer.resize((size as usize).div_ceil(8) + 1, 0);
            continue;
        }
        if status != ERROR_SUCCESS {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
        break;
    }
    let mut found = Vec::new();
    let mut adapter = buffer.as_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
    // SAFETY: on success the buffer holds a linked list of adapters whose pointers (names,
    // DNS server lists, socket addresses) all point into the same buffer, alive here.
    unsafe {
        while let Some(a) = adapter.as_ref() {
            let name = wide_to_string(a.FriendlyName);
            let up = a.OperStatus == IfOperStatusUp;
            let mut server = a.FirstDnsServerAddress;
            while let Some(s) = server.as_ref() {
                if let Some(ip) = ip_of(s.Address.lpSockaddr) {
                    found.push(AdapterResolver {
                        adapter: name.clone(),
                        up,
                        server: ip,
                    });
                }
                server = s.Next;
            }
            adapter = a.Next;
        }
    }
    Ok(found)
}

/// SAFETY: `wide` is null or a NUL-terminated UTF-16 string.
unsafe fn wide_to_string(wide: *const u16) -> String {
    if wide.is_null() {
        return String::new();
    }
    // SAFETY: NUL-terminated, per the caller.
    unsafe {
        let len = (0..).take_while(|&i| *wide.add(i) != 0).count();
        String::from_utf16_lossy(std::slice::from_raw_parts(wide, len))
    }
}

/// SAFETY: `addr` is null or points to a socket address of the size its family implies.
unsafe fn ip_of(addr: *const SOCKADDR) -> Option<IpAddr> {
    // SAFETY: per the caller.
    unsafe {
        let family = addr.as_ref()?.sa_family;
        if family == AF_INET {
            let v4 = &*addr.cast::<SOCKADDR_IN>();
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                v4.sin_addr.S_un.S_addr,
            ))))
        } else if family == AF_INET6 {
            let v6 = &*addr.cast::<SOCKADDR_IN6>();
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.u.Byte)))
        } else {
            None
        }
    }
}
