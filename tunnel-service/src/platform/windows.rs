//! Windows: the service runs as LocalSystem; the pipe's DACL (in `ember-ipc`) admits
//! interactive users. Not compiled by the Linux CI.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

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

pub fn create_dirs(_runtime: &Path, state: &Path, log: &Path) -> Result<()> {
    for dir in [state, log] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

pub fn service_group() -> Option<u32> {
    None
}

pub fn current_uid() -> u32 {
    0
}

pub async fn shutdown_signal() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        Err(_) => std::future::pending().await,
    }
}

pub fn notify_ready() {}

/// Windows keeps no state of ours outside the service's own folders yet.
pub fn recover_after_crash(_state_dir: &Path) {}

/// The machine's name, for the portal's device list.
pub fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".into())
}
