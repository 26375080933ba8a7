//! Folders on Windows: state and logs under `%ProgramData%\\Ember`, SYSTEM/administrators-only
//! (`windows_acl`); the IPC endpoint is a named pipe whose DACL lives in `ember-ipc`.
//! Type-checked on Linux by `scripts/cross-check.sh`, never run there.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::windows_acl::secure_folder;

/// The pipe name is the endpoint; the runtime folder is not used for it.
pub const SOCKET_FILE_NAME: &str = "ember-tunnel";

fn program_data() -> PathBuf {
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join("Ember")
}

pub fn default_runtime_dir() -> PathBuf {
    PathBuf::from(r"\\.\pipe")
}

pub fn default_state_dir() -> PathBuf {
    program_data().join("state")
}

pub fn default_log_dir() -> PathBuf {
    program_data().join("logs")
}

/// State and logs: SYSTEM and administrators only, and so is the `Ember` folder holding them
/// by default (a user who controlled it could swap its children).
pub fn create_dirs(_runtime: &Path, state: &Path, log: &Path) -> Result<()> {
    let root = program_data();
    for dir in [state, log] {
        match dir.parent() {
            Some(parent) if parent == root => secure_folder(&root)?,
            Some(parent) => std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?,
            None => {}
        }
        secure_folder(dir)?;
    }
    Ok(())
}
