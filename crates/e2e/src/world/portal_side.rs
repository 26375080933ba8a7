//! The portal seen from the world: its configuration, process, admin CLI and sign-in.

use super::*;

impl World {
    pub(super) fn write_portal_config(&self) -> Result<()> {
        let hash = self.portal_cli_with_stdin(None, &["hash-password"], &self.password)?;
        let model = portal::Model {
            listen: (self.portal_host.addr, addr::PORTAL_PORT).into(),
            database: format!("sqlite://{}", self.dir.join("portal.db").display()),
            relay: self.coturn.addr,
            relay_secret: RELAY_SECRET.to_owned(),
            password_hash: hash.trim().to_owned(),
            extra_sites: self.options.extra_sites,
            bulk_resources: self.options.bulk_resources,
        };
        std::fs::write(&self.portal_config, portal::config_toml(&model))
            .map_err(io_error("write the portal's configuration"))
    }

    /// Starts `ember-portal serve` on the portal host and waits until it accepts connections.
    pub fn start_portal(&mut self) -> Result<()> {
        let bin = self.bins.portal()?;
        let config = self.portal_config.to_string_lossy().into_owned();
        let log = self.dir.join("portal.log");
        let child = ember_testbed::spawn_in(
            &self.portal_host.ns,
            &bin.to_string_lossy(),
            &["--config", &config, "serve"],
            &[("EMBER_LOG", &self.options.log_filter)],
            &log,
        )?;
        let mut proc = Proc {
            name: "ember-portal".into(),
            child,
            log,
        };
        let target = std::net::SocketAddr::from((self.portal_host.addr, addr::PORTAL_PORT));
        let started = Instant::now();
        loop {
            proc.check_running()?;
            let up = self.testbed.in_ns(&self.portal_host.ns, || {
                std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(Error::Timeout {
                    what: "the portal to listen".into(),
                    after: Duration::from_secs(20),
                    last: tail(&proc.log, 10),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.portal = Some(proc);
        Ok(())
    }

    pub fn stop_portal(&mut self, signal: Signal) {
        if let Some(proc) = self.portal.take() {
            proc.stop(signal, Duration::from_secs(5));
        }
    }

    /// `ember-portal --config … ARGS` (admin commands); its standard output.
    pub fn portal_cli(&self, args: &[&str]) -> Result<String> {
        self.portal_cli_with_stdin(Some(&self.portal_config), args, "")
    }

    pub(super) fn portal_cli_with_stdin(
        &self,
        config: Option<&Path>,
        args: &[&str],
        stdin: &str,
    ) -> Result<String> {
        let bin = self.bins.portal()?;
        let mut command = Command::new(&bin);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .args(args)
            .env("EMBER_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_error(format!("run {}", bin.display())))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.as_bytes())
                .map_err(io_error("write to ember-portal"))?;
        }
        let output = child
            .wait_with_output()
            .map_err(io_error("wait for ember-portal"))?;
        if !output.status.success() {
            return Err(Error::Failed(format!(
                "ember-portal {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A new token for a gateway of the model (`admin gateway token`).
    pub fn gateway_token(&self, site: &str, name: &str) -> Result<String> {
        let out = self.portal_cli(&[
            "admin",
            "gateway",
            "token",
            "--account",
            portal::ACCOUNT,
            "--site",
            site,
            "--name",
            name,
        ])?;
        out.trim()
            .rsplit_once(": ")
            .map(|(_, token)| token.to_owned())
            .ok_or_else(|| Error::Failed(format!("no token in `{out}`")))
    }

    /// The whole browser sign-in, from the client host; the token the app would derive.
    pub fn browser_sign_in(&self, email: &str) -> Result<portal::BrowserSignIn> {
        portal::sign_in_through_browser(
            &self.client.host.ns,
            &self.portal_url(),
            email,
            &self.password,
            &self.dir,
        )
    }
}
