//! The service's state and the requests that change it.
//!
//! One task owns the [`ViewState`]; connections talk to it through a [`ServiceHandle`] and
//! watch the state through a `watch` channel, which also coalesces bursts of changes: a slow
//! client only ever gets the newest state. A signed-in [`session`](crate::session) runs on its
//! own task and publishes into the same channel.

use std::path::PathBuf;

use ember_logging::LogHandle;
use ember_protocol::SecretToken;
use ember_protocol::ipc::{IpcError, Reply, Request, ServiceSettings, SessionState, ViewState};
use ember_protocol::sign_in::RedeemRequest;
use tokio::sync::{mpsc, oneshot, watch};

use crate::identity::Identity;
use crate::platform::dns::DnsMode;
use crate::session::{self, SessionConfig, SessionHandle};
use crate::settings::{self, PlainHttpPortals, SettingsStore};

/// What reaches the service task.
#[derive(Debug)]
pub enum Input {
    Request(Request, oneshot::Sender<Result<Reply, IpcError>>),
    /// End the session, undo its changes to the system, then stop.
    Shutdown(oneshot::Sender<()>),
}

/// How a connection reaches the service task.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    inputs: mpsc::Sender<Input>,
    state: watch::Receiver<ViewState>,
}

impl ServiceHandle {
    pub async fn request(&self, request: Request) -> Result<Reply, IpcError> {
        let gone = || IpcError::Internal {
            message: "the service is shutting down".into(),
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        self.inputs
            .send(Input::Request(request, reply_tx))
            .await
            .map_err(|_| gone())?;
        reply_rx.await.map_err(|_| gone())?
    }

    /// Ends the session (routes, DNS and the device are restored) and stops the service task.
    pub async fn shutdown(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.inputs.send(Input::Shutdown(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }

    /// A receiver whose current value is the latest state.
    pub fn watch_state(&self) -> watch::Receiver<ViewState> {
        self.state.clone()
    }
}

/// What sessions need from the machine.
#[derive(Debug, Clone)]
pub struct Environment {
    pub identity: Identity,
    pub state_dir: PathBuf,
    pub dns_mode: DnsMode,
    /// Where a portal may be reached without TLS.
    pub plain_http: PlainHttpPortals,
}

#[derive(Debug)]
pub struct Service {
    state: watch::Sender<ViewState>,
    settings: SettingsStore,
    /// The user's switch for the internet resource; kept across restarts.
    internet_enabled: watch::Sender<bool>,
    logs: Option<LogHandle>,
    environment: Environment,
    session: Option<SessionHandle>,
}

impl Service {
    pub fn new(
        settings: ServiceSettings,
        store: SettingsStore,
        logs: Option<LogHandle>,
        environment: Environment,
    ) -> (Self, ServiceHandle, mpsc::Receiver<Input>) {
        let (state_tx, state_rx) = watch::channel(ViewState::signed_out(settings));
        let (inputs_tx, inputs_rx) = mpsc::channel(32);
        let internet_enabled =
            watch::Sender::new(settings::internet_enabled(&environment.state_dir));
        let service = Self {
            state: state_tx,
            settings: store,
            internet_enabled,
            logs,
            environment,
            session: None,
        };
        let handle = ServiceHandle {
            inputs: inputs_tx,
            state: state_rx,
        };
        (service, handle, inputs_rx)
    }

    /// Serves requests until a shutdown or until every handle is dropped; the session ends
    /// either way.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        while let Some(input) = inputs.recv().await {
            match input {
                Input::Request(request, reply) => {
                    let result = self.handle(request).await;
                    // The connection that asked may be gone already; nothing to do then.
                    let _ = reply.send(result);
                }
                Input::Shutdown(done) => {
                    self.end_session().await;
                    let _ = done.send(());
                    return;
                }
            }
        }
        self.end_session().await;
    }

    async fn handle(&mut self, request: Request) -> Result<Reply, IpcError> {
        match request {
            Request::GetState => Ok(Reply::State {
                state: self.state.borrow().clone(),
            }),
            Request::SignIn {
                portal_url,
                code,
                verifier,
            } => {
                self.check_session_portal(&portal_url)?;
                let request = RedeemRequest {
                    code,
                    verifier,
                    public_key: self.environment.identity.public_key_base64(),
                };
                let redeemed = ember_portal_client::redeem_sign_in(&portal_url, &request)
                    .await
                    .map_err(|e| {
                        tracing::warn!("The portal did not redeem the sign-in: {e}");
                        IpcError::SignInRefused {
                            message: e.to_string(),
                        }
                    })?;
                tracing::info!("Redeemed the sign-in code");
                self.start_session(portal_url, redeemed.token.clone()).await;
                Ok(Reply::SignedIn {
                    token: redeemed.token,
                })
            }
            Request::ResumeSession { portal_url, token } => {
                self.check_session_portal(&portal_url)?;
                self.start_session(portal_url, token).await;
                Ok(Reply::Done)
            }
            Request::SignOut => {
                self.end_session().await;
                self.state.send_if_modified(|state| {
                    let signed_out = SessionState::SignedOut { reason: None };
                    let changed = state.session != signed_out;
                    state.session = signed_out;
                    changed
                });
                Ok(Reply::Done)
            }
            Request::ApplySettings { settings } => self.apply_settings(settings),
            Request::SetResourceEnabled {
                resource_id,
                enabled,
            } => self.set_resource_enabled(resource_id, enabled),
            // Streamed by the connection itself, which owns the socket the chunks go to.
            Request::ExportLogs => Err(IpcError::Internal {
                message: "log export is handled by the connection".into(),
            }),
        }
    }

    /// Replaces the session, whatever state it is in, with one for `token` at `portal_url`.
    async fn start_session(&mut self, portal_url: String, token: SecretToken) {
        self.end_session().await;
        let config = SessionConfig {
            portal_url,
            token,
            identity: self.environment.identity.clone(),
            state_dir: self.environment.state_dir.clone(),
            dns_mode: self.environment.dns_mode,
            internet_enabled: self.internet_enabled.subscribe(),
        };
        self.state
            .send_modify(|state| state.session = SessionState::ConnectingToPortal);
        self.session = Some(session::start(config, self.state.clone()));
    }

    /// A session's token goes only to the portal that issued it, and only when that is still the
    /// portal this computer is set to (over TLS unless allowed otherwise).
    fn check_session_portal(&self, portal_url: &str) -> Result<(), IpcError> {
        let configured = self.state.borrow().settings.portal_url.clone();
        if !same_portal(portal_url, &configured) {
            tracing::warn!(
                token_portal = %portal_url,
                portal_url = %configured,
                "Refused a session for another portal than the configured one"
            );
            return Err(IpcError::WrongPortal {
                token_portal: portal_url.to_owned(),
                portal_url: configured,
            });
        }
        self.environment.plain_http.permit_str(portal_url)
    }

    /// Stops the session, if any, and waits until its changes to the system are undone.
    async fn end_session(&mut self) {
        if let Some(session) = self.session.take() {
            session.stop().await;
        }
    }

    fn set_resource_enabled(
        &mut self,
        resource_id: String,
        enabled: bool,
    ) -> Result<Reply, IpcError> {
        let switchable = match self
            .state
            .borrow()
            .resources
            .iter()
            .find(|r| r.id == resource_id)
        {
            None => return Err(IpcError::UnknownResource { resource_id }),
            Some(resource) => resource.enabled.is_some(),
        };
        if !switchable {
            return Err(IpcError::InvalidSettings {
                field: "enabled".into(),
                reason: "only the internet resource can be switched on and off".into(),
            });
        }
        if enabled && !ember_io::policy::OWN_SOCKETS_SKIP_DEFAULT_ROUTES {
            return Err(IpcError::NotAvailableYet {
                what: "The internet resource on this operating system".into(),
            });
        }
        settings::save_internet_enabled(&self.environment.state_dir, enabled).map_err(|e| {
            IpcError::Internal {
                message: e.to_string(),
            }
        })?;
        self.internet_enabled.send_replace(enabled);
        Ok(Reply::Done)
    }

    fn apply_settings(&mut self, settings: ServiceSettings) -> Result<Reply, IpcError> {
        settings::validate(&settings)?;
        self.environment
            .plain_http
            .permit_str(&settings.portal_url)?;
        if self.state.borrow().settings == settings {
            return Ok(Reply::Done);
        }
        self.settings
            .save(&settings)
            .map_err(|e| IpcError::Internal {
                message: e.to_string(),
            })?;
        if let Some(logs) = &self.logs
            && let Err(e) = logs.set_filter(&settings.log_filter)
        {
            tracing::warn!("Could not apply the new log filter: {e}");
        }
        tracing::info!(portal_url = %settings.portal_url, log_filter = %settings.log_filter, "Settings changed");
        self.state.send_modify(|state| state.settings = settings);
        Ok(Reply::Done)
    }
}

/// Two spellings of one portal (`https://p.example` and `https://p.example/`) are the same.
fn same_portal(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_with(settings: ServiceSettings) -> (ServiceHandle, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let environment = Environment {
            identity: Identity::load_or_create(dir.path()).unwrap(),
            state_dir: dir.path().to_owned(),
            dns_mode: DnsMode::Off,
            plain_http: PlainHttpPortals::default(),
        };
        let (service, handle, requests) =
            Service::new(settings, SettingsStore::new(dir.path()), None, environment);
        tokio::spawn(service.run(requests));
        (handle, dir)
    }

    fn start() -> (ServiceHandle, tempfile::TempDir) {
        start_with(settings::defaults())
    }

    /// A portal URL where nothing listens.
    fn closed_port_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn sign_in_keeps_trying_an_unreachable_portal_until_sign_out() {
        let settings = ServiceSettings {
            portal_url: closed_port_url(),
            ..settings::defaults()
        };
        let portal_url = settings.portal_url.clone();
        let (handle, _dir) = start_with(settings);
        let result = handle
            .request(Request::ResumeSession {
                portal_url,
                token: SecretToken::new("t"),
            })
            .await;
        assert_eq!(result, Ok(Reply::Done));
        assert_eq!(
            handle.watch_state().borrow().session,
            SessionState::ConnectingToPortal
        );
        // Several refused attempts later it is still trying, not signed out.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(
            handle.watch_state().borrow().session,
            SessionState::ConnectingToPortal
        );
        assert_eq!(handle.request(Request::SignOut).await, Ok(Reply::Done));
        let state = handle.watch_state().borrow().clone();
        assert_eq!(state.session, SessionState::SignedOut { reason: None });
        assert_eq!(state.interface, None);
    }

    #[tokio::test]
    async fn shutdown_ends_the_session_and_the_service() {
        let settings = ServiceSettings {
            portal_url: closed_port_url(),
            ..settings::defaults()
        };
        let portal_url = settings.portal_url.clone();
        let (handle, _dir) = start_with(settings);
        handle
            .request(Request::ResumeSession {
                portal_url,
                token: SecretToken::new("t"),
            })
            .await
            .unwrap();
        handle.shutdown().await;
        assert_eq!(
            handle.watch_state().borrow().session,
            SessionState::SignedOut { reason: None }
        );
        assert!(handle.request(Request::GetState).await.is_err());
    }

    #[tokio::test]
    async fn a_token_is_never_sent_to_another_portal() {
        // The token was issued by `issuer`; the service is set to another portal now (an
        // attacker's, or one the administrator moved to): the token stays in the app.
        let issuer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer_url = format!("http://{}", issuer.local_addr().unwrap());
        let settings = ServiceSettings {
            portal_url: closed_port_url(),
            ..settings::defaults()
        };
        let (handle, _dir) = start_with(settings.clone());
        let result = handle
            .request(Request::ResumeSession {
                portal_url: issuer_url.clone(),
                token: SecretToken::new("t"),
            })
            .await;
        assert_eq!(
            result,
            Err(IpcError::WrongPortal {
                token_portal: issuer_url,
                portal_url: settings.portal_url,
            })
        );
        assert_eq!(
            handle.watch_state().borrow().session,
            SessionState::SignedOut { reason: None }
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        issuer.set_nonblocking(true).unwrap();
        assert!(issuer.accept().is_err(), "nothing connects to the issuer");
    }

    #[tokio::test]
    async fn a_plain_http_portal_elsewhere_is_refused() {
        let (handle, _dir) = start();
        let result = handle
            .request(Request::ApplySettings {
                settings: ServiceSettings {
                    portal_url: "http://portal.example.com".into(),
                    log_filter: "info".into(),
                },
            })
            .await;
        assert!(
            matches!(&result, Err(IpcError::InvalidSettings { field, .. }) if field == "portal_url"),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn valid_settings_are_saved_and_published() {
        let (handle, dir) = start();
        let mut state = handle.watch_state();
        let new = ServiceSettings {
            portal_url: "https://portal.example.com".into(),
            log_filter: "debug".into(),
        };
        handle
            .request(Request::ApplySettings {
                settings: new.clone(),
            })
            .await
            .unwrap();
        state.changed().await.unwrap();
        assert_eq!(state.borrow().settings, new);
        assert_eq!(SettingsStore::new(dir.path()).load().unwrap(), Some(new));
    }

    #[tokio::test]
    async fn invalid_settings_change_nothing() {
        let (handle, dir) = start();
        let result = handle
            .request(Request::ApplySettings {
                settings: ServiceSettings {
                    portal_url: "javascript:alert(1)".into(),
                    log_filter: "info".into(),
                },
            })
            .await;
        assert!(matches!(result, Err(IpcError::InvalidSettings { .. })));
        assert_eq!(handle.watch_state().borrow().settings, settings::defaults());
        assert_eq!(SettingsStore::new(dir.path()).load().unwrap(), None);
    }

    #[tokio::test]
    async fn toggling_an_unknown_resource_names_it() {
        let (handle, _dir) = start();
        let result = handle
            .request(Request::SetResourceEnabled {
                resource_id: "res_x".into(),
                enabled: true,
            })
            .await;
        assert_eq!(
            result,
            Err(IpcError::UnknownResource {
                resource_id: "res_x".into()
            })
        );
    }
}
