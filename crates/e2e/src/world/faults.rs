//! Faults a test injects: roaming, loss, blocked ports, forgetful NATs, a relay restart.

use super::*;

impl World {
    /// The client moves to another network: its router's public address changes and every
    /// mapping is forgotten.
    pub fn roam_client(&mut self) -> Result<()> {
        self.client.router = self.testbed.change_wan_addr(&self.client.router)?;
        Ok(())
    }

    /// Random loss on the client's WAN (both ways); 0 removes it.
    pub fn set_client_loss(&self, percent: u8) -> Result<()> {
        Ok(self.testbed.set_loss(&self.client.router, percent)?)
    }

    /// The client's own network refuses TCP to `port` on the internet (a firewall on its
    /// router), so only a path through the tunnel reaches it.
    pub fn block_client_tcp_port(&self, port: u16) -> Result<()> {
        Ok(self.testbed.nft(
            &self.client.router.ns,
            &format!(
                "table ip e2e_block {{
                    chain forward {{
                        type filter hook forward priority -5;
                        tcp dport {port} counter reject with tcp reset;
                    }}
                }}"
            ),
        )?)
    }

    /// How long both routers keep idle UDP mappings.
    pub fn set_udp_timeouts(&self, seconds: u32) -> Result<()> {
        self.testbed.set_udp_timeout(&self.client.router, seconds)?;
        Ok(self
            .testbed
            .set_udp_timeout(&self.gateway.router, seconds)?)
    }

    /// Both routers reboot: every mapping is forgotten, the TCP of the portal links too.
    pub fn reboot_routers(&self) -> Result<()> {
        self.testbed.flush_conntrack(&self.client.router)?;
        Ok(self.testbed.flush_conntrack(&self.gateway.router)?)
    }

    /// Both routers forget their UDP mappings now (idle UDP is forgotten long before the
    /// TCP of the portal links, which their heartbeats keep alive).
    pub fn forget_udp_mappings(&self) -> Result<()> {
        self.testbed.forget_udp_mappings(&self.client.router)?;
        Ok(self.testbed.forget_udp_mappings(&self.gateway.router)?)
    }

    /// Kills the relay and starts it again (every allocation is lost).
    pub fn restart_relay(&mut self) -> Result<()> {
        Ok(self.coturn.restart(&mut self.testbed)?)
    }

    /// Packets counted so far by the named nftables counter `ip TABLE NAME` in `ns`.
    pub fn nft_packets(&self, ns: &str, table: &str, name: &str) -> Result<u64> {
        let out = self
            .testbed
            .exec(ns, "nft", &["list", "counter", "ip", table, name])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            if word == "packets"
                && let Some(n) = words.next().and_then(|n| n.parse().ok())
            {
                return Ok(n);
            }
        }
        Err(Error::Failed(format!("no packet count in `{text}`")))
    }
}
