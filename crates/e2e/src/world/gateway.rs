//! The gateways: started, stopped, watched until connected.

use super::*;

impl World {
    /// Starts `ember-gateway` for the HQ site on the gateway host (a new token each time) and
    /// waits until it holds a connection to the portal.
    pub fn start_gateway(&mut self) -> Result<()> {
        let token = self.gateway_token(portal::HQ_SITE, portal::HQ_GATEWAY)?;
        let ns = self.gateway.host.ns.clone();
        let resolver = format!("{}:53", addr::RESOURCE);
        let proc = self.spawn_gateway(&ns, portal::HQ_GATEWAY, &token, &resolver)?;
        self.gateway_proc = Some(proc);
        Ok(())
    }

    /// Stops the HQ gateway (SIGTERM lets it clean up; SIGKILL is a crash).
    pub fn stop_gateway(&mut self, signal: Signal) {
        if let Some(proc) = self.gateway_proc.take() {
            proc.stop(signal, Duration::from_secs(5));
        }
    }

    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateway_proc.as_ref().map(Proc::pid)
    }

    /// Waits until the HQ gateway holds a connection to the portal (e.g. after a portal restart).
    pub fn wait_gateway_connected(&mut self, timeout: Duration) -> Result<()> {
        let ns = self.gateway.host.ns.clone();
        let portal = format!("{}:{}", self.portal_host.addr, addr::PORTAL_PORT);
        let proc = self
            .gateway_proc
            .as_mut()
            .ok_or_else(|| Error::Failed("the gateway is not running".into()))?;
        wait_until("the gateway to connect to the portal", timeout, || {
            proc.check_running()?;
            Ok(connected_to(&ns, &portal)?.then_some(()))
        })
    }

    /// Starts one gateway per extra site, each on its own public host.
    pub fn start_extra_gateways(&mut self) -> Result<()> {
        for i in 1..=self.options.extra_sites {
            let (site, name, _) = portal::extra_site(i);
            let token = self.gateway_token(&site, &name)?;
            let ns = self.extra_hosts[usize::from(i) - 1].ns.clone();
            let resolver = format!("{}:53", self.dns_host.addr);
            let proc = self.spawn_gateway(&ns, &name, &token, &resolver)?;
            self.extra_gateways.push(proc);
        }
        Ok(())
    }

    pub fn stop_extra_gateways(&mut self) {
        for proc in self.extra_gateways.drain(..) {
            proc.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
    }

    pub fn extra_gateway_pids(&self) -> Vec<u32> {
        self.extra_gateways.iter().map(Proc::pid).collect()
    }

    pub(super) fn spawn_gateway(
        &self,
        ns: &str,
        name: &str,
        token: &str,
        resolver: &str,
    ) -> Result<Proc> {
        let bin = self.bins.gateway()?;
        let base = self.dir.join(name);
        let (state, logs) = (base.join("state"), base.join("log"));
        for dir in [&state, &logs] {
            std::fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))?;
        }
        let token_file = base.join("token");
        write_private(&token_file, token)?;
        let log = base.join("gateway.out");
        let child = ember_testbed::spawn_in(
            ns,
            &bin.to_string_lossy(),
            &[
                "--portal-url",
                &self.portal_url(),
                "--token-file",
                &token_file.to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
                "--log-dir",
                &logs.to_string_lossy(),
                "--resolver",
                resolver,
                "--name",
                name,
            ],
            &[("EMBER_LOG", &self.options.log_filter)],
            &log,
        )?;
        let mut proc = Proc {
            name: format!("ember-gateway ({name})"),
            child,
            log,
        };
        let portal = format!("{}:{}", self.portal_host.addr, addr::PORTAL_PORT);
        wait_until(
            &format!("{} to connect to the portal", proc.name),
            SERVICE_TIMEOUT,
            || {
                proc.check_running()?;
                Ok(connected_to(ns, &portal)?.then_some(()))
            },
        )?;
        Ok(proc)
    }
}
