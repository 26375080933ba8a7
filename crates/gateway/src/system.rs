//! What the gateway changes in the kernel besides its TUN device: IP forwarding on its own
//! interfaces and one
//! nftables table of its own. The table is replaced at every start (so a crash leaves nothing
//! stale behind the next run) and deleted at exit.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use ember_gateway::grants::{TUNNEL_RANGE_V4, TUNNEL_RANGE_V6};

/// Forwarding switched on for the gateway's own interfaces only — the TUN device and the
/// interfaces routes leave through — never for the whole host, and what each switch was
/// before, kept in the state folder until it is put back (at stop, or at the next start after
/// a crash).
#[derive(Debug)]
pub struct Forwarding {
    saved: PathBuf,
    previous: Vec<(PathBuf, String)>,
}

/// The file in the state folder that holds the switches' earlier values.
const SAVED_FORWARDING: &str = "forwarding.saved";

impl Forwarding {
    pub fn enable(state_dir: &Path, interfaces: &[String]) -> Result<Self> {
        let saved = state_dir.join(SAVED_FORWARDING);
        restore_saved(&saved);
        let mut switches = Vec::new();
        for interface in interfaces {
            switches.push(PathBuf::from(format!(
                "/proc/sys/net/ipv4/conf/{interface}/forwarding"
            )));
            // Per-interface IPv6 forwarding (Linux 6.17+); older kernels only forward IPv6
            // with the host-wide switch, which this gateway leaves alone.
            let v6 = PathBuf::from(format!(
                "/proc/sys/net/ipv6/conf/{interface}/force_forwarding"
            ));
            if v6.exists() {
                switches.push(v6);
            } else {
                tracing::info!(interface, "No per-interface IPv6 forwarding in this kernel");
            }
        }
        let mut previous = Vec::new();
        for path in switches {
            let before = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            previous.push((path, before.trim().to_owned()));
        }
        let record: String = previous
            .iter()
            .map(|(path, value)| format!("{}\t{value}\n", path.display()))
            .collect();
        std::fs::write(&saved, record)
            .with_context(|| format!("cannot write {}", saved.display()))?;
        let forwarding = Self { saved, previous };
        for (path, _) in &forwarding.previous {
            std::fs::write(path, "1")
                .with_context(|| format!("cannot turn on forwarding ({})", path.display()))?;
        }
        tracing::info!(
            ?interfaces,
            "Forwarding turned on for the gateway's interfaces"
        );
        Ok(forwarding)
    }

    /// Puts every switch back; also done when the value is dropped.
    pub fn restore(&mut self) {
        for (path, value) in std::mem::take(&mut self.previous) {
            if let Err(e) = std::fs::write(&path, &value) {
                tracing::warn!(path = %path.display(), "Cannot restore forwarding: {e}");
            }
        }
        let _ = std::fs::remove_file(&self.saved);
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Values left by a run that did not stop cleanly.
fn restore_saved(saved: &Path) {
    let Ok(text) = std::fs::read_to_string(saved) else {
        return;
    };
    for line in text.lines() {
        let Some((path, value)) = line.split_once('\t') else {
            continue;
        };
        // Only switches this code writes: the file must not become a way to write elsewhere.
        let ours = path.starts_with("/proc/sys/net/ipv")
            && (path.ends_with("/forwarding") || path.ends_with("/force_forwarding"));
        if ours && matches!(value, "0" | "1") {
            let _ = std::fs::write(path, value);
        }
    }
    let _ = std::fs::remove_file(saved);
    tracing::info!("Restored forwarding switches left by an earlier run");
}

/// The interfaces the main routing tables send traffic through (IPv4 and IPv6), but loopback:
/// where the gateway's forwarded traffic leaves and its replies come back.
pub fn routed_interfaces() -> Result<Vec<String>> {
    let mut interfaces = BTreeSet::new();
    for family in ["-4", "-6"] {
        let output = Command::new("ip")
            .args([family, "-o", "route", "show", "table", "main"])
            .output()
            .context("cannot run `ip route` (is iproute2 installed?)")?;
        interfaces.extend(route_devices(&String::from_utf8_lossy(&output.stdout)));
    }
    Ok(interfaces.into_iter().collect())
}

/// This host's addresses (all interfaces, from `ip -o addr`).
pub fn own_addresses() -> Result<Vec<IpAddr>> {
    let output = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .context("cannot run `ip addr` (is iproute2 installed?)")?;
    Ok(addr_lines(&String::from_utf8_lossy(&output.stdout)))
}

fn route_devices(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "dev")?;
            let dev = words.next()?;
            let valid = dev != "lo"
                && dev.len() < 16
                && dev
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
            valid.then(|| dev.split('@').next().unwrap_or(dev).to_owned())
        })
        .collect()
}

fn addr_lines(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            let (addr, _) = words.next()?.split_once('/')?;
            addr.parse().ok()
        })
        .collect()
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
    fn routes_name_the_interfaces_to_forward_on_but_loopback() {
        let routes = "default via 10.0.0.1 dev eth0 proto dhcp\n10.77.0.0/24 dev lan1 proto kernel scope link src 10.77.0.1\n100.64.0.0/11 dev ember-gw0 proto kernel\nfe80::/64 dev veth0@if3 proto kernel\nlocal 127.0.0.1 dev lo\n";
        let found: Vec<String> = route_devices(routes).into_iter().collect();
        assert_eq!(found, ["ember-gw0", "eth0", "lan1", "veth0"]);
    }

    #[test]
    fn own_addresses_come_from_ip_addr_lines() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet 203.0.113.5/24 brd 203.0.113.255 scope global eth0\n2: eth0    inet6 2001:db8::5/64 scope global\n";
        let found = addr_lines(text);
        assert_eq!(found.len(), 3);
        assert!(found.contains(&"203.0.113.5".parse().unwrap()));
    }

    #[test]
    fn forwarding_switches_are_put_back_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join(SAVED_FORWARDING);
        // A record pointing outside the forwarding switches is never written to.
        let target = dir.path().join("forwarding");
        std::fs::write(&target, "1").unwrap();
        std::fs::write(&saved, format!("{}\t0\n", target.display())).unwrap();
        restore_saved(&saved);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "1");
        assert!(!saved.exists());
    }

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
