//! Folders on Linux and macOS: owner and mode checked, symlinks refused.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, Result};

pub use ember_protocol::ipc::SOCKET_FILE_NAME;

/// Runtime: reachable by everyone (the socket inside decides); state: root only; logs: root
/// and the service group may read.
///
/// A folder that is a symlink, or that someone other than root or the service's own user owns,
/// is refused: whoever planted it could swap the socket for their own (and read every token the
/// app sends), or read the key and the logs.
pub fn create_dirs(runtime: &Path, state: &Path, log: &Path) -> Result<()> {
    let service_uid = crate::platform::accounts::current_uid();
    for (dir, mode) in [(runtime, 0o755), (state, 0o700), (log, 0o750)] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        check_owned_dir(dir, service_uid)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    }
    Ok(())
}

/// Refuses `dir` unless it is a real folder (not a symlink) owned by root or `service_uid`.
pub fn check_owned_dir(dir: &Path, service_uid: u32) -> Result<()> {
    let metadata = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect {}", dir.display()))?;
    if metadata.file_type().is_symlink() {
        anyhow::bail!(
            "{} is a symbolic link; the service uses only a real folder there",
            dir.display()
        );
    }
    if !metadata.is_dir() {
        anyhow::bail!("{} is not a folder", dir.display());
    }
    let owner = metadata.uid();
    if owner != 0 && owner != service_uid {
        anyhow::bail!(
            "{} belongs to uid {owner}, not to root or the service's user; remove it and start \
             the service again",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlinked_runtime_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("attacker");
        std::fs::create_dir(&elsewhere).unwrap();
        let runtime = dir.path().join("run");
        std::os::unix::fs::symlink(&elsewhere, &runtime).unwrap();
        let (state, log) = (dir.path().join("state"), dir.path().join("log"));
        let error = create_dirs(&runtime, &state, &log).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error:#}");
    }

    #[test]
    fn a_runtime_dir_another_user_owns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let service_uid = crate::platform::accounts::current_uid();
        // As root the folder is root's, which is allowed; the owner check then needs a
        // folder handed to someone else.
        if service_uid == 0 {
            nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
            let error = check_owned_dir(dir.path(), service_uid).unwrap_err();
            assert!(error.to_string().contains("uid 4242"), "{error:#}");
        } else {
            // Not root: the folder is ours, but a service running as someone else refuses it.
            let error = check_owned_dir(dir.path(), service_uid + 1).unwrap_err();
            assert!(error.to_string().contains("belongs to uid"), "{error:#}");
        }
    }

    #[test]
    fn a_real_folder_of_the_service_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        create_dirs(&root.join("run"), &root.join("state"), &root.join("log")).unwrap();
        check_owned_dir(&root.join("run"), crate::platform::accounts::current_uid()).unwrap();
    }
}

#[cfg(test)]
mod socket_path_tests {
    /// On macOS the service once listened in /var/run while the app looked in /run, so the app
    /// always said the service was not running.
    #[test]
    fn the_app_looks_for_the_socket_where_the_service_puts_it() {
        assert_eq!(
            crate::platform::paths::default_runtime_dir().join(super::SOCKET_FILE_NAME),
            std::path::Path::new(ember_protocol::ipc::SOCKET_PATH)
        );
    }
}
