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
use ember_io::netlink::{MAIN_TABLE, Netlink};

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
pub async fn routed_interfaces(netlink: &Netlink) -> Result<Vec<String>> {
    let routed = netlink
        .route_interfaces(MAIN_TABLE)
        .await
        .context("cannot read the main routing tables")?;
    let names = netlink
        .interface_names()
        .await
        .context("cannot list the network interfaces")?;
    Ok(forwarding_interfaces(&routed, &names))
}

/// This host's addresses, on all interfaces.
pub async fn own_addresses(netlink: &Netlink) -> Result<Vec<IpAddr>> {
    netlink
        .addresses()
        .await
        .context("cannot list the host's addresses")
}

/// The names of the `routed` interfaces but loopback, sorted. A name becomes part of a path
/// under /proc/sys, so only the characters interface names are made of are accepted.
fn forwarding_interfaces(routed: &BTreeSet<u32>, names: &[(u32, String)]) -> Vec<String> {
    let valid = |name: &str| {
        name != "lo"
            && !name.is_empty()
            && name.len() < 16
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let found: BTreeSet<String> = names
        .iter()
        .filter(|(index, name)| routed.contains(index) && valid(name))
        .map(|(_, name)| name.clone())
        .collect();
    found.into_iter().collect()
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
        let names: Vec<(u32, String)> = [
            (1, "lo"),
            (2, "eth0"),
            (3, "lan1"),
            (4, "ember-gw0"),
            (5, "unrouted0"),
            (6, ".."),
        ]
        .into_iter()
        .map(|(index, name)| (index, name.to_owned()))
        .collect();
        let routed = BTreeSet::from([1, 2, 3, 4, 6, 9]);
        assert_eq!(
            forwarding_interfaces(&routed, &names),
            ["ember-gw0", "eth0", "lan1"]
        );
    }

    /// The queries themselves, against the namespace the test runs in (its loopback at least).
    #[tokio::test]
    async fn the_kernel_answers_the_routing_and_address_questions() {
        let netlink = Netlink::connect().unwrap();
        let addresses = own_addresses(&netlink).await.unwrap();
        assert!(
            addresses.contains(&"127.0.0.1".parse().unwrap()),
            "{addresses:?}"
        );
        let routed = routed_interfaces(&netlink).await.unwrap();
        assert!(!routed.iter().any(|name| name == "lo"), "{routed:?}");
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
