//! The golden-file check shared by `golden.rs` (IPC) and `golden_portal.rs` (portal).

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Compares `message`'s pretty JSON with `{dir}/{name}.json` and decodes the file back.
/// `EMBER_UPDATE_GOLDEN=1` rewrites the file first.
pub fn check_golden<T>(dir: &str, name: &str, message: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(format!("{name}.json"));
    let encoded = serde_json::to_string_pretty(&message).unwrap() + "\n";
    if std::env::var_os("EMBER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set EMBER_UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(encoded, golden, "encoding of `{name}` changed");
    let decoded: T = serde_json::from_str(&golden).unwrap();
    assert_eq!(
        decoded, message,
        "`{name}.json` decodes to a different message"
    );
}
