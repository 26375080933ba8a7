//! The tunnel service in the client namespace, talked to over its IPC as the app does.

use super::*;

impl World {
    pub fn service_socket(&self) -> PathBuf {
        self.service_runtime_dir().join("tunnel.sock")
    }

    pub(super) fn service_runtime_dir(&self) -> PathBuf {
        self.options
            .service_runtime_dir
            .clone()
            .unwrap_or_else(|| self.dir.join("tunnel").join("run"))
    }

    /// The service's state folder (settings, DNS backup, device id).
    pub fn service_state_dir(&self) -> PathBuf {
        self.dir.join("tunnel").join("state")
    }

    /// Starts `ember-tunnel run` on the client host (with the client's private
    /// `/etc/resolv.conf`) and waits until it answers on its socket. Not signed in.
    pub fn start_tunnel(&mut self) -> Result<()> {
        let bin = self.bins.tunnel()?;
        let base = self.dir.join("tunnel");
        let (run, state, logs) = (
            self.service_runtime_dir(),
            self.service_state_dir(),
            base.join("log"),
        );
        for dir in [&run, &state, &logs] {
            std::fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))?;
        }
        let settings = serde_json::json!({
            "portal_url": self.portal_url(),
            "log_filter": self.options.log_filter,
        });
        write_private(&state.join("settings.json"), &settings.to_string())?;
        let log = base.join("tunnel.out");
        let child = ember_testbed::spawn_in(
            &self.client.host.ns,
            &bin.to_string_lossy(),
            &[
                "run",
                "--runtime-dir",
                &run.to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
                "--log-dir",
                &logs.to_string_lossy(),
                // The test world's portal serves plain http on the testbed's internet.
                "--allow-http-portal",
                &internet_network(),
            ],
            &[("EMBER_LOG", &self.options.log_filter)],
            &log,
        )?;
        let mut proc = Proc {
            name: "ember-tunnel".into(),
            child,
            log,
        };
        // A crashed service leaves its socket file behind: wait for an answer, not the file.
        let answered = wait_until("the tunnel service to answer", SERVICE_TIMEOUT, || {
            proc.check_running()?;
            Ok(self.status().ok().map(|_| ()))
        });
        self.tunnel = Some(proc);
        answered
    }

    /// Stops the service: SIGTERM is a clean stop (it restores DNS and routes), SIGKILL a crash.
    pub fn stop_tunnel(&mut self, signal: Signal) {
        if let Some(proc) = self.tunnel.take() {
            proc.stop(signal, Duration::from_secs(10));
        }
    }

    pub fn tunnel_pid(&self) -> Option<u32> {
        self.tunnel.as_ref().map(Proc::pid)
    }

    /// Signs in through the browser flow as `email`, hands the code and the verifier to the
    /// service over IPC (as the app does; the service redeems them with the portal), keeps the
    /// token it answers, and waits until the service says it is signed in.
    pub fn sign_in_as(&mut self, email: &str) -> Result<ViewState> {
        let signed_in = self.browser_sign_in(email)?;
        let token = match self.ipc(Request::SignIn {
            portal_url: self.portal_url(),
            code: signed_in.code,
            verifier: signed_in.verifier,
        })? {
            Ok(Reply::SignedIn { token }) => token,
            Ok(other) => {
                return Err(Error::Failed(format!(
                    "the service answered the sign-in with {other:?}"
                )));
            }
            Err(e) => {
                return Err(Error::Failed(format!(
                    "the service refused to sign in: {e}"
                )));
            }
        };
        self.token = Some(token.expose().to_owned());
        self.wait_for_state("the service to be signed in", SERVICE_TIMEOUT, |state| {
            matches!(state.session, SessionState::SignedIn { .. }) && state.interface.is_some()
        })
    }

    /// Hands the last token to the service again (what the app does when it reconnects to a
    /// restarted service) and waits until it is signed in.
    pub fn sign_in_again(&mut self) -> Result<ViewState> {
        let token = self
            .token
            .clone()
            .ok_or_else(|| Error::Failed("nobody signed in yet".into()))?;
        match self.ipc(Request::ResumeSession {
            portal_url: self.portal_url(),
            token: SecretToken::new(token),
        })? {
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Failed(format!(
                    "the service refused to sign in: {e}"
                )));
            }
        }
        self.wait_for_state("the service to be signed in", SERVICE_TIMEOUT, |state| {
            matches!(state.session, SessionState::SignedIn { .. }) && state.interface.is_some()
        })
    }

    pub fn sign_out(&mut self) -> Result<()> {
        match self.ipc(Request::SignOut)? {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Failed(format!(
                "the service refused to sign out: {e}"
            ))),
        }
    }

    /// One request over the service's IPC, as the app sends it.
    pub fn ipc(&self, request: Request) -> Result<Result<Reply, IpcError>> {
        let endpoint = Endpoint(self.service_socket());
        self.runtime.block_on(async move {
            let (mut connection, _) = ember_ipc::client::connect(&endpoint, "ember-e2e")
                .await
                .map_err(|e| Error::Failed(format!("cannot reach the tunnel service: {e}")))?;
            connection
                .send(ClientMessage::Request { id: 1, request })
                .await
                .map_err(|e| Error::Failed(format!("cannot send to the tunnel service: {e}")))?;
            let answer = tokio::time::timeout(SERVICE_TIMEOUT, async {
                while let Some(message) = connection.next().await {
                    match message {
                        Ok(ServiceMessage::Response { id: 1, result }) => return Ok(result),
                        Ok(ServiceMessage::Stopping { reason }) => {
                            return Err(Error::Failed(format!(
                                "the service is stopping: {reason}"
                            )));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(Error::Failed(format!("IPC: {e}"))),
                    }
                }
                Err(Error::Failed(
                    "the tunnel service closed the connection".into(),
                ))
            })
            .await;
            answer.unwrap_or_else(|_| {
                Err(Error::Timeout {
                    what: "the tunnel service's answer".into(),
                    after: SERVICE_TIMEOUT,
                    last: String::new(),
                })
            })
        })
    }

    /// `ember-tunnel status --socket …`, parsed.
    pub fn status(&self) -> Result<ViewState> {
        let bin = self.bins.tunnel()?;
        let output = Command::new(&bin)
            .arg("status")
            .arg("--socket")
            .arg(self.service_socket())
            .output()
            .map_err(io_error("run ember-tunnel status"))?;
        if !output.status.success() {
            return Err(Error::Failed(format!(
                "ember-tunnel status: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            Error::Failed(format!(
                "ember-tunnel status printed no view state ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            ))
        })
    }

    /// Watches the service's state over its IPC (as the app does: the whole state on every
    /// change) until `done` holds; the state that satisfied it. Reconnects when the service is
    /// not (yet) there.
    pub fn wait_for_state(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&ViewState) -> bool,
    ) -> Result<ViewState> {
        let endpoint = Endpoint(self.service_socket());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("nothing yet");
        let found = self.runtime.block_on(async {
            loop {
                match ember_ipc::client::connect(&endpoint, "ember-e2e watch").await {
                    Ok((mut connection, handshake)) => {
                        if done(&handshake.state) {
                            return Some(handshake.state);
                        }
                        last = summary(&handshake.state);
                        loop {
                            match tokio::time::timeout_at(deadline, connection.next()).await {
                                Err(_) => return None,
                                Ok(Some(Ok(ServiceMessage::State { state }))) => {
                                    if done(&state) {
                                        return Some(state);
                                    }
                                    last = summary(&state);
                                }
                                Ok(Some(Ok(_))) => {}
                                Ok(Some(Err(e))) => {
                                    last = format!("IPC: {e}");
                                    break;
                                }
                                Ok(None) => {
                                    last = "the service closed the connection".into();
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => last = e.to_string(),
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        found.ok_or_else(|| Error::Timeout {
            what: what.to_owned(),
            after: timeout,
            last,
        })
    }

    /// The client's `/etc/resolv.conf` (the file `ip netns exec` shows the service).
    pub fn client_resolv_conf(&self) -> Result<String> {
        let path = netns_etc_dir(&self.client.host.ns).join("resolv.conf");
        std::fs::read_to_string(&path).map_err(io_error(format!("read {}", path.display())))
    }

    /// What the client's `/etc/resolv.conf` said before Ember.
    pub fn original_client_resolv_conf(&self) -> &str {
        &self.original_client_resolv_conf
    }

    /// Every IPv4 and IPv6 route of the client host, all tables.
    pub fn client_routes(&self) -> Result<String> {
        let mut routes = String::new();
        for family in ["-4", "-6"] {
            let out = self.testbed.exec(
                &self.client.host.ns,
                "ip",
                &[family, "route", "show", "table", "all"],
            )?;
            routes.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        Ok(routes)
    }
}
