//! The gateway's WireGuard private key: created once in the state folder, readable by root only.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, Result};
use ember_gateway::grants::{decode_key, encode_key};
use rand::TryRngCore as _;

const KEY_FILE: &str = "private_key";

/// Reads the key from `state_dir`, or creates it there (folder 0700, file 0600).
pub fn load_or_create(state_dir: &Path) -> Result<[u8; 32]> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("cannot create the state folder {}", state_dir.display()))?;
    let path = state_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mode = fs::metadata(&path)
                .with_context(|| format!("cannot inspect {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "The private key was readable by others; restricting it to its owner");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot restrict {}", path.display()))?;
            }
            decode_key(&text).with_context(|| {
                format!(
                    "{} does not hold a key (base64 of 32 bytes); move it away to create a new one",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn create(path: &Path) -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .context("the operating system's random generator failed")?;
    // Atomic, so a crash never leaves half a key.
    let text = format!("{}\n", encode_key(&key));
    ember_fsutil::write_atomically(path, text.as_bytes(), Some(0o600))
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "Created the gateway's private key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = load_or_create(&state).unwrap();
        let second = load_or_create(&state).unwrap();
        assert_eq!(first, second);
        assert_ne!(first, [0u8; 32]);
        let mode = fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn a_key_readable_by_others_is_restricted_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, encode_key(&[9u8; 32])).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), [9u8; 32]);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        fs::write(&path, "not a key").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
