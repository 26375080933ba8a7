//! Accounts on Linux and macOS: the `ember` group admits apps; root runs the service.

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

/// The machine's name, for the portal's device list.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
