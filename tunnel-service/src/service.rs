//! The service's state and the requests that change it.
//!
//! One task owns the [`ViewState`]; connections talk to it through a [`ServiceHandle`] and
//! watch the state through a `watch` channel, which also coalesces bursts of changes: a slow
//! client only ever gets the newest state.

use ember_logging::LogHandle;
use ember_protocol::ipc::{IpcError, Reply, Request, ServiceSettings, ViewState};
use tokio::sync::{mpsc, oneshot, watch};

use crate::settings::{self, SettingsStore};

/// A request and where its answer goes.
pub type Envelope = (Request, oneshot::Sender<Result<Reply, IpcError>>);

/// How a connection reaches the service task.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    requests: mpsc::Sender<Envelope>,
    state: watch::Receiver<ViewState>,
}

impl ServiceHandle {
    pub async fn request(&self, request: Request) -> Result<Reply, IpcError> {
        let gone = || IpcError::Internal {
            message: "the service is shutting down".into(),
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        self.requests
            .send((request, reply_tx))
            .await
            .map_err(|_| gone())?;
        reply_rx.await.map_err(|_| gone())?
    }

    /// A receiver whose current value is the latest state.
    pub fn watch_state(&self) -> watch::Receiver<ViewState> {
        self.state.clone()
    }
}

#[derive(Debug)]
pub struct Service {
    state: watch::Sender<ViewState>,
    settings: SettingsStore,
    logs: Option<LogHandle>,
}

impl Service {
    pub fn new(
        settings: ServiceSettings,
        store: SettingsStore,
        logs: Option<LogHandle>,
    ) -> (Self, ServiceHandle, mpsc::Receiver<Envelope>) {
        let (state_tx, state_rx) = watch::channel(ViewState::signed_out(settings));
        let (requests_tx, requests_rx) = mpsc::channel(32);
        let service = Self {
            state: state_tx,
            settings: store,
            logs,
        };
        let handle = ServiceHandle {
            requests: requests_tx,
            state: state_rx,
        };
        (service, handle, requests_rx)
    }

    /// Serves requests until every handle is dropped.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Envelope>) {
        while let Some((request, reply)) = requests.recv().await {
            let result = self.handle(request);
            // The connection that asked may be gone already; nothing to do then.
            let _ = reply.send(result);
        }
    }

    fn handle(&mut self, request: Request) -> Result<Reply, IpcError> {
        match request {
            Request::GetState => Ok(Reply::State {
                state: self.state.borrow().clone(),
            }),
            Request::SignIn { token: _ } => Err(IpcError::NotAvailableYet {
                what: "signing in (the portal connection)".into(),
            }),
            // Signed out is the only session this version has, so there is nothing to end.
            Request::SignOut => Ok(Reply::Done),
            Request::ApplySettings { settings } => self.apply_settings(settings),
            Request::SetResourceEnabled { resource_id, .. } => {
                let known = self
                    .state
                    .borrow()
                    .resources
                    .iter()
                    .any(|r| r.id == resource_id);
                if known {
                    Err(IpcError::NotAvailableYet {
                        what: "switching resources".into(),
                    })
                } else {
                    Err(IpcError::UnknownResource { resource_id })
                }
            }
            // Streamed by the connection itself, which owns the socket the chunks go to.
            Request::ExportLogs => Err(IpcError::Internal {
                message: "log export is handled by the connection".into(),
            }),
        }
    }

    fn apply_settings(&mut self, settings: ServiceSettings) -> Result<Reply, IpcError> {
        settings::validate(&settings)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use ember_protocol::SecretToken;

    fn start() -> (ServiceHandle, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (service, handle, requests) =
            Service::new(settings::defaults(), SettingsStore::new(dir.path()), None);
        tokio::spawn(service.run(requests));
        (handle, dir)
    }

    #[tokio::test]
    async fn sign_in_is_refused_honestly_until_the_portal_connection_exists() {
        let (handle, _dir) = start();
        let result = handle
            .request(Request::SignIn {
                token: SecretToken::new("t"),
            })
            .await;
        assert!(
            matches!(result, Err(IpcError::NotAvailableYet { .. })),
            "{result:?}"
        );
        let state = handle.watch_state().borrow().clone();
        assert_eq!(state, ViewState::signed_out(settings::defaults()));
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
