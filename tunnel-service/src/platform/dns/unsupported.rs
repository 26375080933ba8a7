//! DNS configuration where it is not written yet (macOS: `/etc/resolver` or scutil; Windows:
//! NRPT). The stub still answers on the sentinel addresses; the system is left alone and says
//! so once.

use std::io;
use std::net::IpAddr;
use std::path::Path;

/// Nothing to undo while nothing is changed.
pub fn recover_after_crash(_state_dir: &Path) {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DnsMode {
    Auto,
    Off,
}

#[derive(Debug)]
pub struct SystemDns;

impl SystemDns {
    pub fn activate(
        _mode: DnsMode,
        _state_dir: &Path,
        _interface: &str,
        _servers: &[IpAddr],
        _patterns: &[String],
    ) -> io::Result<(Self, Vec<IpAddr>)> {
        tracing::warn!("Pointing the system's DNS at Ember is not implemented on this OS yet");
        Ok((Self, Vec::new()))
    }

    pub fn set_patterns(&self, _patterns: &[String]) -> io::Result<()> {
        Ok(())
    }

    pub fn deactivate(self) -> io::Result<()> {
        Ok(())
    }
}
