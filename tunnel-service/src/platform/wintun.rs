//! `wintun.dll` ships next to `ember-tunnel.exe`. Before the TUN layer loads it, its SHA-256
//! must equal the pin in the repository (`installer/windows/wintun.sha256`, compiled in; the
//! MSI build ships the DLL with that hash). From the check until the adapter exists the file
//! stays open without write or delete sharing, so it cannot be replaced in between; then the
//! loader gets its absolute path, never a search path (`TunConfig::wintun_dll`).
//!
//! The hashing and comparison are plain Rust and tested on every OS; only finding the
//! executable's folder and the sharing mode are Windows-specific.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The SHA-256 of the `wintun.dll` Ember ships (Wintun 0.14.1, amd64), as 64 hex characters and
/// a newline.
pub const PINNED_SHA256: &str = include_str!("../../../installer/windows/wintun.sha256");

#[derive(Debug, thiserror::Error)]
pub enum WintunError {
    #[error("cannot find the folder of the service's executable: {0}")]
    NoExeDir(io::Error),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{} is not the wintun.dll this version of Ember ships (its SHA-256 is {actual}); reinstall Ember",
        path.display()
    )]
    Mismatch { path: PathBuf, actual: String },
    #[error("the pinned wintun.dll hash is not 64 hex characters")]
    BadPin,
}

/// A `wintun.dll` whose hash matched; nobody can change the file while this value lives.
#[derive(Debug)]
pub struct VerifiedWintun {
    path: PathBuf,
    _lock: std::fs::File,
}

impl VerifiedWintun {
    /// The absolute path the TUN layer loads the DLL from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Verifies `wintun.dll` in the folder of the running executable.
#[cfg(windows)]
pub fn verify_next_to_exe() -> Result<VerifiedWintun, WintunError> {
    let exe = std::env::current_exe().map_err(WintunError::NoExeDir)?;
    let dir = exe.parent().ok_or_else(|| {
        WintunError::NoExeDir(io::Error::new(io::ErrorKind::NotFound, "no parent folder"))
    })?;
    verify(&dir.join("wintun.dll"), PINNED_SHA256)
}

/// Opens `path` so that others may only read it (Windows: no write or delete sharing), hashes
/// it and compares the digest with `pinned_hex` in constant time.
pub fn verify(path: &Path, pinned_hex: &str) -> Result<VerifiedWintun, WintunError> {
    let pinned = parse_pin(pinned_hex)?;
    let read_error = |source| WintunError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = open_locked(path).map_err(read_error)?;
    let actual = sha256(&mut file).map_err(read_error)?;
    if !bool::from(actual.ct_eq(&pinned)) {
        return Err(WintunError::Mismatch {
            path: path.to_owned(),
            actual: hex::encode(actual),
        });
    }
    Ok(VerifiedWintun {
        path: path.to_owned(),
        _lock: file,
    })
}

fn parse_pin(pinned_hex: &str) -> Result<[u8; 32], WintunError> {
    let bytes = hex::decode(pinned_hex.trim()).map_err(|_| WintunError::BadPin)?;
    bytes.try_into().map_err(|_| WintunError::BadPin)
}

fn sha256(reader: &mut impl Read) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let read = reader.read(&mut buf)?;
        if read == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..read]);
    }
}

#[cfg(windows)]
fn open_locked(path: &Path) -> io::Result<std::fs::File> {
    use std::os::windows::fs::OpenOptionsExt as _;
    // FILE_SHARE_READ only: the loader may map it (read/execute), nobody may write or delete.
    const FILE_SHARE_READ: u32 = 0x0000_0001;
    std::fs::OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ)
        .open(path)
}

#[cfg(not(windows))]
fn open_locked(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dll(dir: &tempfile::TempDir, contents: &[u8]) -> PathBuf {
        let path = dir.path().join("wintun.dll");
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn pin_of(contents: &[u8]) -> String {
        hex::encode(Sha256::digest(contents))
    }

    #[test]
    fn the_file_with_the_pinned_hash_is_accepted_and_its_absolute_path_given_to_the_loader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dll(&dir, b"MZ wintun");
        let verified = verify(&path, &pin_of(b"MZ wintun")).unwrap();
        assert_eq!(verified.path(), path);
    }

    #[test]
    fn a_file_changed_by_one_byte_is_refused_with_its_actual_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dll(&dir, b"MZ wintuN");
        let error = verify(&path, &pin_of(b"MZ wintun")).unwrap_err();
        let WintunError::Mismatch { actual, .. } = error else {
            panic!("expected a mismatch, got {error:?}");
        };
        assert_eq!(actual, pin_of(b"MZ wintuN"));
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = verify(&dir.path().join("wintun.dll"), &pin_of(b"")).unwrap_err();
        assert!(matches!(error, WintunError::Read { .. }), "{error:?}");
    }

    #[test]
    fn a_pin_that_is_not_a_sha256_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dll(&dir, b"MZ");
        for pin in ["", "abc", &"0".repeat(62), &"g".repeat(64)] {
            assert!(
                matches!(verify(&path, pin), Err(WintunError::BadPin)),
                "{pin:?}"
            );
        }
    }

    #[test]
    fn the_shipped_pin_is_a_sha256() {
        assert_eq!(parse_pin(PINNED_SHA256).unwrap().len(), 32);
    }

    #[test]
    fn a_pin_with_a_trailing_newline_from_a_file_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dll(&dir, b"MZ");
        assert!(verify(&path, &format!("{}\n", pin_of(b"MZ"))).is_ok());
    }
}
