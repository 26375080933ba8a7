//! Where the service keeps its socket, its state and its logs, and creating those folders so
//! that no other user can plant or swap anything in them.

#[cfg(target_os = "linux")]
mod linux;
/// Compiled everywhere: the installer's files are checked against its constants on Linux.
pub mod macos;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;
#[cfg(any(windows, test))]
mod windows_acl;

#[cfg(target_os = "linux")]
pub use linux::*;
#[cfg(target_os = "macos")]
pub use macos::*;
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
pub use windows::*;
