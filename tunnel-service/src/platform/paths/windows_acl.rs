//! The service's folders on Windows (`C:\ProgramData\Ember` and the state and log folders in
//! it): SYSTEM and administrators only.
//!
//! The attack this stops: ProgramData lets every user create folders and read what inherits
//! its ACL. A folder that inherited it would let users read the device's WireGuard private key;
//! a folder a user created before the service (or a junction pointing elsewhere) would let that
//! user read or swap what the service writes. So a new folder is created with a protected DACL
//! (nothing inherited), an existing one must be owned by SYSTEM (or administrators, who can
//! become SYSTEM at will and own what an elevated installer creates) and must not be a reparse
//! point, and it gets the same protected DACL, which its files inherit.
//!
//! The decisions are pure and tested on Linux; the Win32 calls (`#[cfg(windows)]`) are only
//! type-checked there by `scripts/cross-check.sh`.

use std::path::{Path, PathBuf};

pub use ember_ipc::windows_security::Owner;

/// Full control for SYSTEM and administrators, inherited by files and subfolders; `P`: the
/// DACL is protected, so ProgramData's grants to users do not flow in.
pub const FOLDER_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// What the service learns about an existing folder before trusting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderFacts {
    pub owner: Owner,
    /// A junction, symbolic link or other reparse point.
    pub reparse_point: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "{0} is a junction or link; the service keeps its keys only in a real folder. Remove it \
         and start the service again"
    )]
    ReparsePoint(PathBuf),
    #[error(
        "{0} is not owned by SYSTEM or the administrators, so another user may have created it \
         to read the service's keys. Remove it and start the service again"
    )]
    ForeignOwner(PathBuf),
    #[cfg(windows)]
    #[error("cannot secure {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether the service may use an existing folder with these facts.
pub fn admit(path: &Path, facts: FolderFacts) -> Result<(), FolderError> {
    if facts.reparse_point {
        return Err(FolderError::ReparsePoint(path.to_owned()));
    }
    match facts.owner {
        Owner::System | Owner::Administrators => Ok(()),
        Owner::Other => Err(FolderError::ForeignOwner(path.to_owned())),
    }
}

#[cfg(windows)]
pub use win32::secure_folder;

#[cfg(windows)]
#[allow(unsafe_code)] // Creating a folder with a descriptor and setting a DACL by name.
mod win32 {
    use std::io;
    use std::os::windows::ffi::OsStrExt as _;
    use std::os::windows::fs::{MetadataExt as _, OpenOptionsExt as _};
    use std::path::Path;
    use std::ptr;

    use ember_ipc::windows_security::{SecurityDescriptor, owner_of};
    use windows_sys::Win32::Security::Authorization::{SE_FILE_OBJECT, SetNamedSecurityInfoW};
    use windows_sys::Win32::Security::{
        DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        CreateDirectoryW, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES, FILE_SHARE_READ, FILE_SHARE_WRITE,
        READ_CONTROL,
    };

    use super::{FOLDER_SDDL, FolderError, FolderFacts, admit};

    /// Creates `path` with the protected DACL if it is missing; otherwise checks it (owner, no
    /// reparse point) through a handle that pins it, then replaces its DACL with the protected
    /// one, which also reaches the files already inside.
    pub fn secure_folder(path: &Path) -> Result<(), FolderError> {
        let io_error = |source| FolderError::Io {
            path: path.to_owned(),
            source,
        };
        let descriptor = SecurityDescriptor::from_sddl(FOLDER_SDDL).map_err(io_error)?;
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
        let attributes = descriptor.attributes();
        // SAFETY: NUL-terminated path; `attributes` and its descriptor outlive the call.
        if unsafe { CreateDirectoryW(wide.as_ptr(), &attributes) } != 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::AlreadyExists {
            return Err(io_error(error));
        }
        // Open the folder itself, not what a reparse point names, and without
        // FILE_SHARE_DELETE, so it cannot be renamed or replaced while it is checked.
        let folder = std::fs::OpenOptions::new()
            .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
            .open(path)
            .map_err(io_error)?;
        let metadata = folder.metadata().map_err(io_error)?;
        let facts = FolderFacts {
            owner: owner_of(&folder, SE_FILE_OBJECT).map_err(io_error)?,
            reparse_point: metadata.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0,
        };
        admit(path, facts)?;
        if !metadata.is_dir() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a folder",
            )));
        }
        set_protected_dacl(&wide, &descriptor).map_err(io_error)
    }

    /// Replaces the DACL by name, which (unlike by handle) also re-applies inheritance to the
    /// folder's existing files. The caller holds a handle that keeps the path pinned.
    fn set_protected_dacl(wide_path: &[u16], descriptor: &SecurityDescriptor) -> io::Result<()> {
        let dacl = descriptor.dacl()?;
        // SAFETY: NUL-terminated path; `dacl` lives inside `descriptor`, alive for the call.
        let status = unsafe {
            SetNamedSecurityInfoW(
                wide_path.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                ptr::null_mut(),
                dacl,
                ptr::null(),
            )
        };
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = r"C:\ProgramData\Ember\state";

    fn facts(owner: Owner, reparse_point: bool) -> FolderFacts {
        FolderFacts {
            owner,
            reparse_point,
        }
    }

    #[test]
    fn users_cannot_read_the_state_folder_through_inherited_grants() {
        // Protected: ProgramData's `Users: read` ACE is not inherited.
        assert!(FOLDER_SDDL.starts_with("D:P("), "{FOLDER_SDDL}");
        let aces: Vec<&str> = FOLDER_SDDL
            .split('(')
            .skip(1)
            .map(|ace| ace.trim_end_matches(')'))
            .collect();
        // Only SYSTEM and administrators, with full control, inherited by files and folders.
        assert_eq!(aces, ["A;OICI;FA;;;SY", "A;OICI;FA;;;BA"]);
    }

    #[test]
    fn a_state_folder_pre_created_by_a_user_is_refused() {
        let error = admit(Path::new(STATE), facts(Owner::Other, false)).unwrap_err();
        assert!(matches!(error, FolderError::ForeignOwner(_)), "{error}");
        assert!(error.to_string().contains("not owned by SYSTEM"), "{error}");
    }

    #[test]
    fn a_junction_in_place_of_the_state_folder_is_refused_whoever_owns_it() {
        for owner in [Owner::System, Owner::Administrators, Owner::Other] {
            let error = admit(Path::new(STATE), facts(owner, true)).unwrap_err();
            assert!(matches!(error, FolderError::ReparsePoint(_)), "{error}");
        }
    }

    #[test]
    fn folders_of_system_or_the_administrators_are_used() {
        assert!(admit(Path::new(STATE), facts(Owner::System, false)).is_ok());
        assert!(admit(Path::new(STATE), facts(Owner::Administrators, false)).is_ok());
    }
}
