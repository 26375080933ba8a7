//! Accounts on Windows: the service runs as LocalSystem; the pipe's DACL, not a group id,
//! decides which apps may connect.

pub fn service_group() -> Option<u32> {
    None
}

pub fn current_uid() -> u32 {
    0
}

/// The machine's name, for the portal's device list.
pub fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".into())
}
