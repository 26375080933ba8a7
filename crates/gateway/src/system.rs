//! What the gateway changes in the kernel besides its TUN device: IP forwarding and one
//! nftables table of its own. The table is replaced at every start (so a crash leaves nothing
//! stale behind the next run) and deleted at exit.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use ember_gateway::grants::{TUNNEL_RANGE_V4, TUNNEL_RANGE_V6};

/// Turns on IPv4 and IPv6 forwarding (per network namespace).
pub fn enable_forwarding() -> Result<()> {
    for (path, what) in [
        ("/proc/sys/net/ipv4/ip_forward", "IPv4 forwarding"),
        ("/proc/sys/net/ipv6/conf/all/forwarding", "IPv6 forwarding"),
    ] {
        match std::fs::write(path, "1") {
            Ok(()) => {}
            // A kernel without IPv6 has no such file: IPv6 resources cannot work, IPv4 can.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.contains("ipv6") => {
                tracing::warn!("No IPv6 in this kernel; only IPv4 resources can be reached");
            }
            Err(e) => return Err(e).with_context(|| format!("cannot turn on {what} ({path})")),
        }
    }
    Ok(())
}

/// The gateway's nftables table (family `inet`): its name includes the TUN device's.
#[derive(Debug)]
pub struct NftTable {
    name: String,
}

impl NftTable {
    /// Replaces (or creates) the table in one transaction: masquerade for traffic from the
    /// tunnel ranges that leaves through any other interface, and nothing from the site into
    /// the tunnel that is not an answer to a client's own flow.
    pub fn install(tun: &str) -> Result<Self> {
        let table = Self {
            name: table_name(tun),
        };
        nft(&ruleset(&table.name, tun)).context("cannot install the nftables table")?;
        tracing::info!(table = %table.name, "nftables rules installed");
        Ok(table)
    }

    /// Deletes the table; also done when the value is dropped.
    pub fn remove(&mut self) {
        if self.name.is_empty() {
            return;
        }
        match nft(&format!("delete table inet {}\n", self.name)) {
            Ok(()) => tracing::info!(table = %self.name, "nftables rules removed"),
            Err(e) => tracing::warn!(table = %self.name, "Cannot remove the nftables table: {e:#}"),
        }
        self.name.clear();
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `ember_gateway_` and the TUN device's name, reduced to what nft accepts in a name.
pub fn table_name(tun: &str) -> String {
    let suffix: String = tun
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("ember_gateway_{suffix}")
}

fn ruleset(table: &str, tun: &str) -> String {
    let (v4, v4_len) = TUNNEL_RANGE_V4;
    let (v6, v6_len) = TUNNEL_RANGE_V6;
    // Declaring the table first makes the delete succeed when it does not exist yet; the
    // three statements are one transaction.
    format!(
        "table inet {table}
delete table inet {table}
table inet {table} {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        oifname \"{tun}\" ct state established,related accept
        oifname \"{tun}\" drop
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname != \"{tun}\" ip saddr {v4}/{v4_len} masquerade
        oifname != \"{tun}\" ip6 saddr {v6}/{v6_len} masquerade
    }}
}}
"
    )
}

fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `nft` (is nftables installed?)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .context("cannot write to `nft`")?;
    }
    let output = child.wait_with_output().context("`nft` did not finish")?;
    if !output.status.success() {
        bail!(
            "`nft -f -` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The host's name, for the portal's list of gateways.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_tun_device_and_stay_valid() {
        assert_eq!(table_name("ember-gw0"), "ember_gateway_ember_gw0");
        assert_eq!(table_name("gw.1"), "ember_gateway_gw_1");
    }

    #[test]
    fn the_ruleset_masquerades_both_tunnel_ranges_on_other_interfaces() {
        let rules = ruleset("ember_gateway_x", "x");
        assert!(rules.contains("oifname != \"x\" ip saddr 100.64.0.0/11 masquerade"));
        assert!(rules.contains("oifname != \"x\" ip6 saddr fd00:2021:1111::/107 masquerade"));
        assert!(
            rules.starts_with("table inet ember_gateway_x\ndelete table inet ember_gateway_x\n")
        );
    }
}
