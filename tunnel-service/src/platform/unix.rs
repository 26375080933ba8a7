//! What Linux and macOS share.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context as _, Result};

pub const SOCKET_FILE_NAME: &str = "tunnel.sock";

/// Runtime: reachable by everyone (the socket inside decides); state: root only; logs: root
/// and the service group may read.
pub fn create_dirs(runtime: &Path, state: &Path, log: &Path) -> Result<()> {
    for (dir, mode) in [(runtime, 0o755), (state, 0o700), (log, 0o750)] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    }
    Ok(())
}

/// The gid of the group whose members may use the service, if it exists.
pub fn service_group() -> Option<u32> {
    match nix::unistd::Group::from_name(ember_protocol::ipc::SERVICE_GROUP) {
        Ok(group) => group.map(|g| g.gid.as_raw()),
        Err(e) => {
            tracing::warn!("Cannot look up the service group: {e}");
            None
        }
    }
}

pub fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Waits for SIGTERM (service manager) or SIGINT (Ctrl-C) and names it.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; the service stops only when killed");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The machine's name, for the portal's device list.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
