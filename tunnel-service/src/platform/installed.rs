//! What the installer was told for this machine. The MSI writes `msiexec … PORTAL_URL=…` to
//! `HKLM\SOFTWARE\Ember` (only administrators can); the deb and the macOS pkg take no such
//! property, so elsewhere there is nothing to read.

/// The portal URL given to the installer, if any (not yet validated).
#[cfg(windows)]
pub fn portal_url() -> Option<String> {
    let key = windows_registry::LOCAL_MACHINE
        .open(r"SOFTWARE\Ember")
        .ok()?;
    key.get_string("PortalUrl").ok()
}

#[cfg(not(windows))]
pub fn portal_url() -> Option<String> {
    None
}
