//! Windows security descriptors, shared by the pipe (here) and the service's folders (the
//! tunnel service's `paths::windows_acl`): parsing SDDL into a descriptor that frees itself,
//! and asking who owns a handle's object. [`Owner`] is plain data, so the decisions built on
//! it are tested on every OS; the Win32 part is Windows-only.

/// Who owns an object, as far as Ember's checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// LocalSystem (`S-1-5-18`).
    System,
    /// The built-in Administrators group (`S-1-5-32-544`): what an elevated installer creates.
    Administrators,
    /// Anyone else.
    Other,
}

/// What the service knows of a pipe client's access token, for decisions beyond connecting
/// (which the pipe's DACL decides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientToken {
    /// The client runs as LocalSystem.
    pub local_system: bool,
    /// The client's token has the Administrators group enabled: an elevated administrator (a
    /// non-elevated one holds the group for deny only, as UAC intends).
    pub administrator: bool,
}

impl ClientToken {
    /// Whether this client may change the machine-wide settings: LocalSystem or an elevated
    /// administrator, the Windows counterparts of root.
    pub fn may_change_settings(&self) -> bool {
        self.local_system || self.administrator
    }
}

#[cfg(windows)]
pub use win32::{SecurityDescriptor, owner_of, process_token};

#[cfg(windows)]
#[allow(unsafe_code)] // Win32 security descriptors have no safe wrapper in tokio or std.
mod win32 {
    use std::io;
    use std::os::windows::io::AsRawHandle;
    use std::ptr;

    use windows_sys::Win32::Foundation::{HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
        SE_OBJECT_TYPE,
    };
    use windows_sys::Win32::Security::{
        ACL, GetSecurityDescriptorDacl, IsWellKnownSid, OWNER_SECURITY_INFORMATION,
        PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, WinBuiltinAdministratorsSid,
        WinLocalSystemSid,
    };

    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::Security::{
        CheckTokenMembership, CreateWellKnownSid, DuplicateToken, SECURITY_MAX_SID_SIZE,
        SecurityIdentification, TOKEN_DUPLICATE, TOKEN_QUERY, WELL_KNOWN_SID_TYPE,
    };
    use windows_sys::Win32::System::Threading::{
        OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    use super::{ClientToken, Owner};

    /// The token of process `pid` (the pipe's client): whether it is LocalSystem or an elevated
    /// administrator. The service runs as LocalSystem, which may open any process's token.
    pub fn process_token(pid: u32) -> io::Result<ClientToken> {
        // SAFETY: plain call; a null handle is checked below.
        let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if process.is_null() {
            return Err(io::Error::last_os_error());
        }
        let process = Handle(process);
        let mut token: HANDLE = ptr::null_mut();
        // SAFETY: a live process handle and a valid out pointer.
        if unsafe { OpenProcessToken(process.0, TOKEN_QUERY | TOKEN_DUPLICATE, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let token = Handle(token);
        // CheckTokenMembership takes an impersonation token, not a process's primary token.
        let mut identification: HANDLE = ptr::null_mut();
        // SAFETY: a live token handle and a valid out pointer.
        if unsafe { DuplicateToken(token.0, SecurityIdentification, &mut identification) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let identification = Handle(identification);
        Ok(ClientToken {
            local_system: has_enabled(&identification, WinLocalSystemSid)?,
            administrator: has_enabled(&identification, WinBuiltinAdministratorsSid)?,
        })
    }

    /// Whether the well-known SID is the token's user or one of its enabled groups.
    fn has_enabled(token: &Handle, sid_type: WELL_KNOWN_SID_TYPE) -> io::Result<bool> {
        let mut sid = [0u8; SECURITY_MAX_SID_SIZE as usize];
        let mut size = SECURITY_MAX_SID_SIZE;
        // SAFETY: `sid` has `size` writable bytes.
        if unsafe {
            CreateWellKnownSid(
                sid_type,
                ptr::null_mut(),
                sid.as_mut_ptr().cast(),
                &mut size,
            )
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut member = 0;
        // SAFETY: a live impersonation token, a valid SID and out pointer.
        if unsafe { CheckTokenMembership(token.0, sid.as_mut_ptr().cast(), &mut member) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(member != 0)
    }

    /// A handle closed on drop.
    struct Handle(HANDLE);

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: opened by this module, closed once.
            unsafe { CloseHandle(self.0) };
        }
    }

    /// A security descriptor parsed from SDDL, freed on drop.
    #[derive(Debug)]
    pub struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

    // SAFETY: the descriptor is an immutable LocalAlloc'd block owned by this value alone.
    unsafe impl Send for SecurityDescriptor {}

    impl SecurityDescriptor {
        pub fn from_sddl(sddl: &str) -> io::Result<Self> {
            let sddl: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
            let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
            // SAFETY: NUL-terminated UTF-16 and a valid out pointer.
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
            Ok(Self(descriptor))
        }

        /// Attributes for creating an object with this descriptor; valid while `self` lives.
        pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
            SECURITY_ATTRIBUTES {
                nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: self.0,
                bInheritHandle: 0,
            }
        }

        /// The descriptor's DACL; points into `self`, so valid while `self` lives.
        pub fn dacl(&self) -> io::Result<*mut ACL> {
            let mut present = 0;
            let mut defaulted = 0;
            let mut dacl: *mut ACL = ptr::null_mut();
            // SAFETY: a valid descriptor and out pointers; `dacl` points into the descriptor.
            if unsafe { GetSecurityDescriptorDacl(self.0, &mut present, &mut dacl, &mut defaulted) }
                == 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(dacl)
        }
    }

    impl Drop for SecurityDescriptor {
        fn drop(&mut self) {
            // SAFETY: LocalAlloc'd by the conversion, freed once.
            unsafe { LocalFree(self.0) };
        }
    }

    /// Who owns the object behind `handle` (opened with `READ_CONTROL`).
    pub fn owner_of(handle: &impl AsRawHandle, object: SE_OBJECT_TYPE) -> io::Result<Owner> {
        let handle = handle.as_raw_handle() as HANDLE;
        let mut sid: PSID = ptr::null_mut();
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: a live handle (borrowed); `sid` points into `descriptor`, which is freed after the last
        // use of `sid`.
        let status = unsafe {
            GetSecurityInfo(
                handle,
                object,
                OWNER_SECURITY_INFORMATION,
                &mut sid,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                &mut descriptor,
            )
        };
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
        // SAFETY: `sid` is valid while `descriptor` is alive.
        let owner = unsafe {
            if IsWellKnownSid(sid, WinLocalSystemSid) != 0 {
                Owner::System
            } else if IsWellKnownSid(sid, WinBuiltinAdministratorsSid) != 0 {
                Owner::Administrators
            } else {
                Owner::Other
            }
        };
        // SAFETY: allocated by GetSecurityInfo, not used after this point.
        unsafe { LocalFree(descriptor) };
        Ok(owner)
    }
}
