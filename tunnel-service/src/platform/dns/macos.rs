//! Pointing macOS's DNS at the stub: one `/etc/resolver/<suffix>` file per DNS resource suffix
//! (`resolver_files`), so only resource names reach the stub and everything else keeps the
//! system's resolvers. The stub's sentinel addresses are reachable because their networks are
//! among the tunnel's fixed routes (`ember_client::resources::fixed_routes`), through utun like on Linux.
//!
//! Why files rather than SystemConfiguration (a supplemental `State:/Network/Service/…/DNS`
//! entry through `scutil` or the framework): files need no Objective-C bridge or child
//! process, the logic is plain Rust tested on Linux, and a user sees them with
//! `ls /etc/resolver` and `scutil --dns`. Their cost: unlike a dynamic-store entry they
//! survive a crash and a reboot, so the service removes its marked files on stop and again at
//! every start (`recover_after_crash`; launchd restarts it within seconds after a crash), and
//! the uninstaller removes them too.
//!
//! Type-checked on Linux by `scripts/cross-check.sh`; the file bookkeeping is tested there.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::nameservers;
use super::resolver_files::{self, ResolverFiles};

/// The folder macOS reads per-domain resolver files from (resolver(5)).
pub const RESOLVER_DIR: &str = "/etc/resolver";
/// Kept current by macOS with the primary service's resolvers: the upstream for names under
/// a resource suffix that are no resource. Ember never writes it.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// How the service changes the system's DNS configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DnsMode {
    /// Resolver files in `/etc/resolver`.
    Auto,
    /// Leave the system's DNS alone (the stub still answers on the sentinel addresses).
    Off,
}

#[derive(Debug)]
pub struct SystemDns {
    /// `None` with [`DnsMode::Off`].
    files: Option<Mutex<ResolverFiles>>,
}

impl SystemDns {
    /// Writes the resource suffixes' resolver files pointing at `servers` (the sentinels) and
    /// returns, with the handle to undo it, the system's own resolvers.
    pub fn activate(
        mode: DnsMode,
        _state_dir: &Path,
        _interface: &str,
        servers: &[IpAddr],
        patterns: &[String],
    ) -> io::Result<(Self, Vec<IpAddr>)> {
        let upstream = std::fs::read_to_string(RESOLV_CONF)
            .map(|text| {
                nameservers(&text)
                    .into_iter()
                    .filter(|ip| !servers.contains(ip))
                    .collect()
            })
            .unwrap_or_default();
        if mode == DnsMode::Off {
            return Ok((Self { files: None }, upstream));
        }
        let mut files = ResolverFiles::new(RESOLVER_DIR, servers);
        if let Err(e) = files.set_patterns(patterns) {
            let _ = files.remove_all();
            return Err(e);
        }
        tracing::info!("DNS for resources through {RESOLVER_DIR}");
        Ok((
            Self {
                files: Some(Mutex::new(files)),
            },
            upstream,
        ))
    }

    /// Keeps the resolver files in step with the DNS resources.
    pub fn set_patterns(&self, patterns: &[String]) -> io::Result<()> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_patterns(patterns)
    }

    /// Removes the resolver files this run wrote.
    pub fn deactivate(self) -> io::Result<()> {
        let Some(files) = self.files else {
            return Ok(());
        };
        files
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_all()
    }
}

/// Removes the resolver files a run that crashed or was killed left behind (they carry
/// Ember's mark; no other file is touched).
pub fn recover_after_crash(_state_dir: &Path) {
    match resolver_files::remove_marked(Path::new(RESOLVER_DIR)) {
        Ok(0) => {}
        Ok(removed) => {
            tracing::warn!(
                removed,
                "Removed resolver files left behind by a previous run"
            )
        }
        Err(e) => tracing::error!("Cannot remove resolver files of a previous run: {e}"),
    }
}
