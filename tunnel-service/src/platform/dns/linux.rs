//! Pointing the system's DNS at the stub resolver, and back.
//!
//! - systemd-resolved, when it runs: per-link servers and routing domains on the TUN device
//!   (`resolvectl dns/domain/default-route`), so only resource names reach the stub. The
//!   settings vanish with the device, so a crash leaves nothing behind.
//! - otherwise `/etc/resolv.conf`, with a backup in the state folder that is restored on stop
//!   and at the next start after a crash (see [`resolv_conf`]).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::routing_domain;

pub mod resolv_conf;

use resolv_conf::ResolvConf;

/// How the service changes the system's DNS configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DnsMode {
    /// systemd-resolved when it runs, else `/etc/resolv.conf`.
    Auto,
    Resolved,
    ResolvConf,
    /// Leave the system's DNS alone (the stub still answers on the sentinel addresses).
    Off,
}

const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The upstream servers systemd-resolved uses (not its own 127.0.0.53 stub).
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";
const RESOLVED_SOCKET: &str = "/run/systemd/resolve/io.systemd.Resolve";

#[derive(Debug)]
pub struct SystemDns {
    how: How,
}

#[derive(Debug)]
enum How {
    Resolved { interface: String },
    ResolvConf(ResolvConf),
    Untouched,
}

impl SystemDns {
    /// Points the system at `servers` (the sentinels) and returns, with the handle to undo it,
    /// the upstream resolvers as they were configured before.
    pub fn activate(
        mode: DnsMode,
        state_dir: &Path,
        interface: &str,
        servers: &[IpAddr],
        patterns: &[String],
    ) -> io::Result<(Self, Vec<IpAddr>)> {
        let use_resolved = match mode {
            DnsMode::Auto => Path::new(RESOLVED_SOCKET).exists(),
            DnsMode::Resolved => true,
            DnsMode::ResolvConf | DnsMode::Off => false,
        };
        if mode == DnsMode::Off {
            let upstream = read_nameservers(Path::new(RESOLV_CONF), servers);
            return Ok((
                Self {
                    how: How::Untouched,
                },
                upstream,
            ));
        }
        if use_resolved {
            let upstream = read_nameservers(Path::new(RESOLVED_UPSTREAM), servers);
            let mut args = vec!["dns".to_owned(), interface.to_owned()];
            args.extend(servers.iter().map(IpAddr::to_string));
            resolvectl(&args)?;
            resolvectl(&["default-route".into(), interface.into(), "false".into()])?;
            let dns = Self {
                how: How::Resolved {
                    interface: interface.to_owned(),
                },
            };
            dns.set_patterns(patterns)?;
            tracing::info!(%interface, "DNS for resources through systemd-resolved");
            return Ok((dns, upstream));
        }
        let file = ResolvConf::new(RESOLV_CONF, state_dir);
        let upstream = file.activate(servers)?;
        tracing::info!("DNS through {RESOLV_CONF}");
        Ok((
            Self {
                how: How::ResolvConf(file),
            },
            upstream,
        ))
    }

    /// Keeps systemd-resolved's routing domains in step with the DNS resources (the file mode
    /// sends every name to the stub anyway).
    pub fn set_patterns(&self, patterns: &[String]) -> io::Result<()> {
        let How::Resolved { interface } = &self.how else {
            return Ok(());
        };
        let mut args = vec!["domain".to_owned(), interface.clone()];
        let mut domains: Vec<String> = patterns
            .iter()
            .filter_map(|p| routing_domain(p))
            .map(|d| format!("~{d}"))
            .collect();
        domains.sort();
        domains.dedup();
        args.extend(domains);
        resolvectl(&args)
    }

    /// Undoes what [`Self::activate`] did.
    pub fn deactivate(self) -> io::Result<()> {
        match self.how {
            How::Resolved { interface } => resolvectl(&["revert".into(), interface]),
            How::ResolvConf(file) => file.restore().map(drop),
            How::Untouched => Ok(()),
        }
    }
}

/// Undoes system changes a previous run could not undo because it crashed or was killed.
/// systemd-resolved forgets the per-link settings when the device goes, so only the file
/// needs care.
pub fn recover_after_crash(state_dir: &Path) {
    match ResolvConf::new(RESOLV_CONF, state_dir).restore() {
        Ok(true) => tracing::warn!("Restored {RESOLV_CONF} left behind by a previous run"),
        Ok(false) => {}
        Err(e) => tracing::error!("Cannot restore {RESOLV_CONF}: {e}"),
    }
}

fn read_nameservers(path: &Path, ours: &[IpAddr]) -> Vec<IpAddr> {
    std::fs::read_to_string(path)
        .map(|text| {
            resolv_conf::nameservers(&text)
                .into_iter()
                .filter(|ip| !ours.contains(ip))
                .collect()
        })
        .unwrap_or_default()
}

fn resolvectl(args: &[String]) -> io::Result<()> {
    let program = PathBuf::from("resolvectl");
    let output = Command::new(&program).args(args).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "resolvectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_servers_never_include_the_stub_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resolv.conf");
        std::fs::write(&file, "nameserver 100.100.111.1\nnameserver 192.0.2.53\n").unwrap();
        let stub: IpAddr = "100.100.111.1".parse().unwrap();
        assert_eq!(
            read_nameservers(&file, &[stub]),
            vec!["192.0.2.53".parse::<IpAddr>().unwrap()]
        );
    }
}
