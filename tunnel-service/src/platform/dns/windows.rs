//! Pointing Windows' DNS at the stub while signed in: an NRPT rule (Name Resolution Policy
//! Table) sends resource names to the stub's addresses, and the stub becomes the tunnel
//! interface's resolver. The rule is written in the registry (see `windows_nrpt` for why and
//! for its layout) and survives a crash, so a state file says it exists and the next start
//! removes it; the interface's resolvers vanish with the Wintun adapter.
//!
//! Type-checked on Linux by `scripts/cross-check.sh`; the registry writes only run on Windows.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use windows_registry::{Key, LOCAL_MACHINE};

use super::windows_nrpt::{
    NRPT_PARENT, RULE_COMMENT, RULE_KEY, STATE_FILE, Value, interface_dns_commands, is_ember_rule,
    namespaces, rule_values, state_file_contents, upstream_resolvers,
};

mod adapters;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DnsMode {
    /// An NRPT rule for the resource names, and the stub as the tunnel's resolver.
    Auto,
    /// Leave the system's DNS alone (the stub still answers on the sentinel addresses).
    Off,
}

#[derive(Debug)]
pub struct SystemDns {
    /// `None` when the mode is `Off`.
    rule: Option<Rule>,
}

#[derive(Debug)]
struct Rule {
    state_file: PathBuf,
    servers: Vec<IpAddr>,
}

impl SystemDns {
    /// Sends the names of `patterns` to `servers` (the sentinels) and makes them the resolvers
    /// of `interface`; returns, with the handle to undo it, the other adapters' resolvers, for
    /// names the stub does not answer itself.
    pub fn activate(
        mode: DnsMode,
        state_dir: &Path,
        interface: &str,
        servers: &[IpAddr],
        patterns: &[String],
    ) -> io::Result<(Self, Vec<IpAddr>)> {
        let upstream = match adapters::resolvers() {
            Ok(found) => upstream_resolvers(&found, interface, servers),
            Err(e) => {
                tracing::warn!("Cannot read the adapters' DNS servers: {e}");
                Vec::new()
            }
        };
        if mode == DnsMode::Off {
            return Ok((Self { rule: None }, upstream));
        }
        for args in interface_dns_commands(interface, servers) {
            netsh(&args)?;
        }
        let dns = Self {
            rule: Some(Rule {
                state_file: state_dir.join(STATE_FILE),
                servers: servers.to_vec(),
            }),
        };
        dns.set_patterns(patterns)?;
        tracing::info!(%interface, "DNS for resources through an NRPT rule");
        Ok((dns, upstream))
    }

    /// Rewrites the rule's namespaces when the DNS resources change; no namespaces, no rule.
    pub fn set_patterns(&self, patterns: &[String]) -> io::Result<()> {
        let Some(rule) = &self.rule else {
            return Ok(());
        };
        let names = namespaces(patterns);
        if names.is_empty() {
            return remove_rule(&rule.state_file);
        }
        // The state file first: a crash between the two leaves a file without a rule, which
        // recovery handles, never a rule nobody knows about.
        std::fs::write(&rule.state_file, state_file_contents())?;
        write_rule(&rule_values(&names, &rule.servers))?;
        refresh_policy();
        tracing::debug!(namespaces = ?names, "NRPT rule written");
        Ok(())
    }

    /// Removes the rule; the interface's resolvers go with the adapter.
    pub fn deactivate(self) -> io::Result<()> {
        match self.rule {
            Some(rule) => remove_rule(&rule.state_file),
            None => Ok(()),
        }
    }
}

/// Removes Ember's NRPT rule left behind by a run that crashed or was killed.
pub fn recover_after_crash(state_dir: &Path) {
    let state_file = state_dir.join(STATE_FILE);
    let left_behind = state_file.exists() || ember_rule_exists();
    if !left_behind {
        return;
    }
    match remove_rule(&state_file) {
        Ok(()) => tracing::warn!("Removed the NRPT rule left behind by a previous run"),
        Err(e) => tracing::error!("Cannot remove the NRPT rule of a previous run: {e}"),
    }
}

fn ember_rule_exists() -> bool {
    let Ok(key) = LOCAL_MACHINE.open(format!("{NRPT_PARENT}\\{RULE_KEY}")) else {
        return false;
    };
    let comment = key.get_string("Comment").ok();
    is_ember_rule(RULE_KEY, comment.as_deref())
}

fn write_rule(values: &[(&str, Value)]) -> io::Result<()> {
    let key = LOCAL_MACHINE
        .create(format!("{NRPT_PARENT}\\{RULE_KEY}"))
        .map_err(registry_error)?;
    for (name, value) in values {
        set(&key, name, value).map_err(registry_error)?;
    }
    Ok(())
}

fn set(key: &Key, name: &str, value: &Value) -> windows_registry::Result<()> {
    match value {
        Value::Dword(v) => key.set_u32(name, *v),
        Value::Sz(v) => key.set_string(name, v),
        Value::MultiSz(v) => {
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            key.set_multi_string(name, &v)
        }
    }
}

/// Deletes Ember's rule (only if its comment says it is Ember's), then the state file.
fn remove_rule(state_file: &Path) -> io::Result<()> {
    if let Ok(parent) = LOCAL_MACHINE.open(NRPT_PARENT) {
        let comment = parent
            .open(RULE_KEY)
            .ok()
            .and_then(|key| key.get_string("Comment").ok());
        if comment.is_some() && is_ember_rule(RULE_KEY, comment.as_deref()) {
            parent.remove_tree(RULE_KEY).map_err(registry_error)?;
            refresh_policy();
        } else if comment.is_some() {
            tracing::warn!(
                key = RULE_KEY,
                expected = RULE_COMMENT,
                "An NRPT rule with Ember's key name but another comment is left alone"
            );
        }
    }
    match std::fs::remove_file(state_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The DNS client rereads the policy table on a policy refresh; cached answers from before
/// would outlive the rule, so the cache is flushed too.
fn refresh_policy() {
    #[allow(unsafe_code)] // one Win32 call without arguments that point anywhere
    // SAFETY: plain values, no pointers.
    let ok = unsafe {
        windows_sys::Win32::System::GroupPolicy::RefreshPolicyEx(
            1,
            windows_sys::Win32::System::GroupPolicy::RP_FORCE,
        )
    };
    if ok == 0 {
        tracing::warn!(
            "Cannot refresh the machine policy: {}",
            io::Error::last_os_error()
        );
    }
    if let Err(e) = Command::new("ipconfig").arg("/flushdns").output() {
        tracing::warn!("Cannot flush the DNS cache: {e}");
    }
}

fn registry_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("registry: {e}"))
}

fn netsh(args: &[String]) -> io::Result<()> {
    let output = Command::new("netsh").args(args).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "netsh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout).trim()
        )))
    }
}
