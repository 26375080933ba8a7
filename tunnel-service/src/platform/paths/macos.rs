//! The service's places on macOS, and the launchd daemon that runs it. Compiled on every OS:
//! these constants are what `installer/macos/dev.ember.tunnel.plist` and the pkg's scripts must
//! agree with, and a Linux test checks that they do.

use std::path::PathBuf;

/// The launchd daemon's label (`launchctl print system/dev.ember.tunnel`) and plist name.
pub const LAUNCHD_LABEL: &str = "dev.ember.tunnel";
/// The service inside the app bundle, as launchd starts it (`ember-tunnel run`).
pub const SERVICE_PROGRAM: &str = "/Applications/Ember.app/Contents/MacOS/ember-tunnel";
/// Holds the socket. macOS has no `/run`.
pub const RUNTIME_DIR: &str = "/var/run/ember";
/// Settings, the device id and the WireGuard key.
pub const STATE_DIR: &str = "/Library/Application Support/dev.ember.tunnel";
/// The rotated log files (and launchd's stderr file).
pub const LOG_DIR: &str = "/Library/Logs/Ember";

// The app finds the socket through ember-protocol's constant: a macOS build that disagrees
// with it does not compile (checked by `scripts/cross-check.sh`).
#[cfg(target_os = "macos")]
const _: () = assert!(same(RUNTIME_DIR, ember_protocol::ipc::RUNTIME_DIR));

#[cfg(target_os = "macos")]
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

pub fn default_runtime_dir() -> PathBuf {
    PathBuf::from(RUNTIME_DIR)
}

pub fn default_state_dir() -> PathBuf {
    PathBuf::from(STATE_DIR)
}

pub fn default_log_dir() -> PathBuf {
    PathBuf::from(LOG_DIR)
}
