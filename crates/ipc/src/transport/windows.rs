//! Named pipe endpoint (Windows).
//!
//! Type-checked on Linux by `scripts/cross-check.sh`, never run there; kept to the few Win32
//! calls tokio does not wrap: the pipe's security descriptor, the owner and server-process
//! checks and the client's pid. The decisions themselves are in `windows_checks.rs`.
#![allow(unsafe_code)] // Win32 security descriptors have no safe wrapper in tokio or std.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::AsRawHandle as _;
use std::ptr;

use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_PIPE_BUSY, HANDLE};
use windows_sys::Win32::Security::Authorization::SE_KERNEL_OBJECT;
use windows_sys::Win32::Security::{IsWellKnownSid, SECURITY_ATTRIBUTES, WinLocalSystemSid};
use windows_sys::Win32::System::Com::CoTaskMemFree;
use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, GetNamedPipeServerProcessId};
use windows_sys::Win32::System::RemoteDesktop::{
    WTS_CURRENT_SERVER_HANDLE, WTS_PROCESS_INFOW, WTSEnumerateProcessesW, WTSFreeMemory,
};
use windows_sys::Win32::System::Threading::{
    OpenProcess, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION, QueryFullProcessImageNameW,
};
use windows_sys::Win32::UI::Shell::{FOLDERID_ProgramFiles, SHGetKnownFolderPath};

use super::windows_checks::{PIPE_SDDL, ServerRefusal, check_server};
use super::{Endpoint, PeerIdentity};
use crate::windows_security::{Owner, SecurityDescriptor, owner_of, process_token};

pub type Stream = NamedPipeClient;
pub type ServerStream = NamedPipeServer;

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
    let descriptor = SecurityDescriptor::from_sddl(PIPE_SDDL)?;
    let mut attributes = descriptor.attributes();
    // SAFETY: `attributes` and the descriptor it points to live until after the call, which
    // copies the descriptor into the pipe instance.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .create_with_security_attributes_raw(
                name,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast::<c_void>(),
            )
    }
}

/// Connects and checks that the pipe belongs to LocalSystem, so a user process that grabbed
/// the name first cannot impersonate the service; for the installed service's pipe, also that
/// the process serving this instance is the installed service running as LocalSystem.
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
    if owner_of(&client, SE_KERNEL_OBJECT)? != Owner::System {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            ServerRefusal::NotOwnedBySystem,
        ));
    }
    if *endpoint == Endpoint::system_default() {
        check_server_process(client.as_raw_handle() as HANDLE)?;
    } else {
        // A pipe name other than the installed one comes from the app's own environment
        // (development, tests); whoever sets that already controls the app.
        tracing::debug!(%endpoint, "Not the installed service's pipe: server process not checked");
    }
    Ok(client)
}

/// The process serving the pipe instance `handle` must be installed under Program Files and
/// run as LocalSystem (see `windows_checks`).
fn check_server_process(handle: HANDLE) -> io::Result<()> {
    let mut pid = 0u32;
    // SAFETY: a live pipe handle and a valid out pointer.
    if unsafe { GetNamedPipeServerProcessId(handle, &mut pid) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let image = process_image(pid)?;
    let program_files = program_files()?;
    let runs_as_system = runs_as_local_system(pid)?;
    check_server(&image, &program_files, runs_as_system)
        .map_err(|refusal| io::Error::new(io::ErrorKind::PermissionDenied, refusal))
}

/// The full Win32 path of process `pid`'s image. `PROCESS_QUERY_LIMITED_INFORMATION` is
/// granted to users even for services' processes.
fn process_image(pid: u32) -> io::Result<String> {
    // SAFETY: plain call; a null handle is checked below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut buffer = vec![0u16; 32_768];
    let mut len = buffer.len() as u32;
    // SAFETY: `buffer` holds `len` UTF-16 units; the handle is live until closed below.
    let ok = unsafe {
        QueryFullProcessImageNameW(process, PROCESS_NAME_WIN32, buffer.as_mut_ptr(), &mut len)
    };
    let error = io::Error::last_os_error();
    // SAFETY: opened above, not used after this point.
    unsafe { CloseHandle(process) };
    if ok == 0 {
        return Err(error);
    }
    let len = (len as usize).min(buffer.len());
    String::from_utf16(&buffer[..len]).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "process image path is not UTF-16",
        )
    })
}

/// The Program Files folder as Windows knows it (not `%ProgramFiles%`, which the environment
/// could change).
fn program_files() -> io::Result<String> {
    let mut path: windows_sys::core::PWSTR = ptr::null_mut();
    // SAFETY: a known-folder id and a valid out pointer; `path` is freed below in every case.
    let status =
        unsafe { SHGetKnownFolderPath(&FOLDERID_ProgramFiles, 0, ptr::null_mut(), &mut path) };
    let result = if status < 0 || path.is_null() {
        Err(io::Error::from_raw_os_error(status))
    } else {
        // SAFETY: on success `path` is a NUL-terminated UTF-16 string.
        let wide = unsafe {
            let len = (0..).take_while(|&i| *path.add(i) != 0).count();
            std::slice::from_raw_parts(path, len)
        };
        String::from_utf16(wide).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "Program Files path is not UTF-16",
            )
        })
    };
    // SAFETY: allocated by SHGetKnownFolderPath (CoTaskMemFree accepts null).
    unsafe { CoTaskMemFree(path as *const c_void) };
    result
}

/// Whether process `pid` runs as LocalSystem. A standard user cannot open a service's token,
/// but the terminal-services process list carries every process's user SID.
fn runs_as_local_system(pid: u32) -> io::Result<bool> {
    let mut list: *mut WTS_PROCESS_INFOW = ptr::null_mut();
    let mut count = 0u32;
    // SAFETY: valid out pointers; `list` is freed below.
    if unsafe { WTSEnumerateProcessesW(WTS_CURRENT_SERVER_HANDLE, 0, 1, &mut list, &mut count) }
        == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `list` points to `count` entries, alive until WTSFreeMemory.
    let processes = unsafe { std::slice::from_raw_parts(list, count as usize) };
    let is_system = processes.iter().any(|process| {
        process.ProcessId == pid
            && !process.pUserSid.is_null()
            // SAFETY: a SID inside the live list.
            && unsafe { IsWellKnownSid(process.pUserSid, WinLocalSystemSid) } != 0
    });
    // SAFETY: allocated by WTSEnumerateProcessesW, not used after this point.
    unsafe { WTSFreeMemory(list.cast::<c_void>()) };
    Ok(is_system)
}

pub fn peer_identity(stream: &ServerStream) -> io::Result<PeerIdentity> {
    let mut pid = 0u32;
    // SAFETY: a live pipe handle and a valid out pointer.
    let ok = unsafe { GetNamedPipeClientProcessId(stream.as_raw_handle() as HANDLE, &mut pid) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // Without the token the client may use the service but not change its settings.
    let token = process_token(pid).unwrap_or_else(|e| {
        tracing::warn!(pid, "Cannot read the IPC client's token: {e}");
        Default::default()
    });
    Ok(PeerIdentity::Windows { pid, token })
}
