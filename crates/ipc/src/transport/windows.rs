//! Named pipe endpoint (Windows).
//!
//! Not compiled by the Linux CI (no Windows target can be installed there); kept to the few
//! Win32 calls tokio does not wrap: the pipe's DACL, the owner check and the client's pid.
#![allow(unsafe_code)] // Win32 security descriptors have no safe wrapper in tokio or std.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::AsRawHandle as _;
use std::ptr;

use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};
use windows_sys::Win32::Foundation::{ERROR_PIPE_BUSY, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    IsWellKnownSid, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    WinLocalSystemSid,
};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;

use super::{Endpoint, PeerIdentity};

pub type Stream = NamedPipeClient;
pub type ServerStream = NamedPipeServer;

/// SYSTEM and administrators: full control; interactive users: read and write.
const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;IU)";

#[derive(Debug)]
pub struct Listener {
    name: String,
    next: NamedPipeServer,
}

impl Listener {
    /// `group` is a Unix notion; on Windows the DACL above decides who may connect.
    pub async fn bind(endpoint: &Endpoint, _group: Option<u32>) -> io::Result<Self> {
        let name = endpoint.0.to_string_lossy().into_owned();
        let next = create_instance(&name, true)?;
        Ok(Self { name, next })
    }

    pub fn path(&self) -> &std::path::Path {
        std::path::Path::new(&self.name)
    }

    pub async fn accept(&mut self) -> io::Result<(ServerStream, io::Result<PeerIdentity>)> {
        self.next.connect().await?;
        let fresh = create_instance(&self.name, false)?;
        let stream = std::mem::replace(&mut self.next, fresh);
        let peer = peer_identity(&stream);
        Ok((stream, peer))
    }
}

fn create_instance(name: &str, first: bool) -> io::Result<NamedPipeServer> {
    let sddl: Vec<u16> = PIPE_SDDL.encode_utf16().chain(Some(0)).collect();
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated UTF-16; on success `descriptor` is a LocalAlloc'd
    // descriptor that is freed below after the pipe instance copied it.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor,
        bInheritHandle: 0,
    };
    // SAFETY: `attributes` and the descriptor it points to live until after the call.
    let server = unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .create_with_security_attributes_raw(
                name,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast::<c_void>(),
            )
    };
    // SAFETY: allocated by the conversion above and not used after this point.
    unsafe { LocalFree(descriptor) };
    server
}

/// Connects and checks that the pipe belongs to LocalSystem, so a user process that grabbed
/// the name first cannot impersonate the service.
pub async fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
    let client = loop {
        match ClientOptions::new().open(&endpoint.0) {
            Ok(client) => break client,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if !owned_by_local_system(client.as_raw_handle() as HANDLE)? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the tunnel service pipe is not owned by LocalSystem",
        ));
    }
    Ok(client)
}

fn owned_by_local_system(handle: HANDLE) -> io::Result<bool> {
    let mut owner: PSID = ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `handle` is a live pipe handle; `owner` points into `descriptor`, which is freed
    // after the last use of `owner`.
    let status = unsafe {
        GetSecurityInfo(
            handle,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    // SAFETY: `owner` is valid while `descriptor` is alive.
    let is_system = unsafe { IsWellKnownSid(owner, WinLocalSystemSid) } != 0;
    // SAFETY: allocated by GetSecurityInfo, not used after this point.
    unsafe { LocalFree(descriptor) };
    Ok(is_system)
}

pub fn peer_identity(stream: &ServerStream) -> io::Result<PeerIdentity> {
    let mut pid = 0u32;
    // SAFETY: a live pipe handle and a valid out pointer.
    let ok = unsafe { GetNamedPipeClientProcessId(stream.as_raw_handle() as HANDLE, &mut pid) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerIdentity::Windows { pid })
}
