//! What differs between operating systems: one facade module per concern, each picking its
//! per-OS file (`linux.rs`, `macos.rs`, `windows.rs`, and `unix.rs` for what Linux and macOS
//! share). Linux is built and tested here; Windows and macOS are type-checked by
//! `scripts/cross-check.sh`.
//!
//! - [`paths`]: default folders, the IPC endpoint's name, creating those folders safely.
//! - [`dns`]: pointing the system's DNS at the stub resolver, and back (also after a crash).
//! - [`lifecycle`]: how the service manager stops the service and learns it is ready.
//! - [`accounts`]: who the service runs as, whose apps may use it, the machine's name.
//! - [`installed`]: what the installer was told for this machine (`msiexec … PORTAL_URL=…`).
//! - [`wintun`]: checking the shipped `wintun.dll` against its pinned hash (Windows).
//!
//! Routes and keeping the tunnel's own sockets out of the tunnel live in `ember-io`
//! (`route_table`, `policy`); noticing sleep in `ember_io::clock`.

pub mod accounts;
pub mod dns;
pub mod installed;
pub mod lifecycle;
pub mod paths;
pub mod wintun;
