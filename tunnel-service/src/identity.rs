//! The device's identity: a stable random device id and its WireGuard private key, created on
//! the first start and kept in the state folder, readable by root only.
//!
//! Neither is ever logged. The portal sees a hash of the device id (the key for the device's
//! stable tunnel addresses) and the public key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

const DEVICE_ID_FILE: &str = "device-id";
const PRIVATE_KEY_FILE: &str = "wireguard-private-key";

#[derive(Clone)]
pub struct Identity {
    device_id: String,
    private_key: [u8; 32],
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Identity(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct IdentityError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl Identity {
    /// Reads the identity from `state_dir`, creating what is missing. A file that is not what
    /// Ember wrote is set aside (`*.corrupt`) and replaced: a new identity beats a service that
    /// cannot start.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, IdentityError> {
        let device_id = load_or_create(
            &state_dir.join(DEVICE_ID_FILE),
            |bytes| hex::encode(bytes),
            |text| {
                (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| text.to_owned())
            },
        )?;
        let private_key = load_or_create(
            &state_dir.join(PRIVATE_KEY_FILE),
            |bytes| base64::engine::general_purpose::STANDARD.encode(bytes),
            |text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()?
                    .try_into()
                    .ok()
            },
        )?;
        Ok(Self {
            device_id,
            private_key,
        })
    }

    /// What the portal gets as the device id: a hash, so the id on disk stays private.
    pub fn portal_device_id(&self) -> String {
        let digest = Sha256::digest(format!("ember-device:{}", self.device_id));
        hex::encode(digest)
    }

    pub fn private_key(&self) -> [u8; 32] {
        self.private_key
    }

    /// The WireGuard public key (standard base64) the portal knows this device by; a token
    /// from a sign-in is bound to it.
    pub fn public_key_base64(&self) -> String {
        let engine = ember_engine::Engine::new(
            ember_engine::EngineConfig::new(ember_engine::Role::Client, self.private_key, 0),
            std::time::Instant::now(),
        );
        base64::engine::general_purpose::STANDARD.encode(engine.public_key())
    }
}

/// Reads `path` and parses it, or writes a fresh random value (mode 0600) and returns it.
fn load_or_create<T>(
    path: &Path,
    encode: impl Fn(&[u8; 32]) -> String,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, IdentityError> {
    let error = |action, source| IdentityError {
        action,
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Some(value) = parse(text.trim()) {
                return Ok(value);
            }
            tracing::warn!(path = %path.display(), "Not a file Ember wrote; setting it aside and creating a new one");
            std::fs::rename(path, path.with_extension("corrupt"))
                .map_err(|e| error("move aside", e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(error("read", e)),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let text = encode(&bytes);
    write_private(path, &text).map_err(|e| error("write", e))?;
    tracing::info!(path = %path.display(), "Created");
    parse(&text).ok_or_else(|| {
        error(
            "parse",
            io::Error::other("a freshly written value does not parse"),
        )
    })
}

/// Writes `text` and a newline atomically, readable by its owner only (mode 0600 on Unix).
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    ember_fsutil::write_atomically(path, format!("{text}\n").as_bytes(), Some(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_created_once_with_private_permissions_and_stays_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.device_id, again.device_id);
        assert_eq!(first.private_key, again.private_key);
        assert_ne!(first.private_key, [0; 32]);
        #[cfg(unix)]
        for file in [DEVICE_ID_FILE, PRIVATE_KEY_FILE] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let other = Identity::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(first.device_id, other.device_id);
        assert_ne!(first.portal_device_id(), other.portal_device_id());
    }

    #[test]
    fn the_portal_sees_a_hash_never_the_id_or_key() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path()).unwrap();
        let shown = identity.portal_device_id();
        assert_eq!(shown.len(), 64);
        assert!(!shown.contains(&identity.device_id));
        assert_eq!(format!("{identity:?}"), "Identity(<redacted>)");
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PRIVATE_KEY_FILE), "not base64 of 32 bytes").unwrap();
        let identity = Identity::load_or_create(dir.path()).unwrap();
        assert_ne!(identity.private_key, [0; 32]);
        assert!(dir.path().join("wireguard-private-key.corrupt").exists());
    }
}
