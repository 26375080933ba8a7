//! The app's brain: keeps the connection to the tunnel service, owns the [`AppView`], and
//! carries out what the window and the tray ask for.
//!
//! It is generic over [`Desktop`], the few things it needs from the GUI, so its logic is
//! tested without a window. Commands from the webview are thin calls into a
//! [`ControllerHandle`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ember_ipc::Endpoint;
use ember_ipc::client::{ConnectError, Connection};
use ember_protocol::ipc::{
    ClientMessage, IpcError, Reply, Request, ServiceMessage, ServiceSettings, ViewState,
};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot, watch};

use crate::notifications::{Notification, NotificationGate};
use crate::sign_in::{self, PendingSignIn};
use crate::token_store::{Kept, KeptToken, TokenVault};
use crate::view::{AppError, AppView, ServiceStatus};
use ember_protocol::ipc::{ResourceState, ResourceView, SessionState};

/// First retry after losing the service; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Keeps a restarted service visible within about a second.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

const APP_VERSION: &str = concat!("ember ", env!("CARGO_PKG_VERSION"));

/// What the controller needs from the desktop: a place to show the view, and a browser.
pub trait Desktop: Send + 'static {
    /// Shows a changed view in the window and the tray.
    fn show_view(&self, view: &AppView);
    fn open_browser(&self, url: &str) -> Result<(), String>;
    /// Shows a notification; must not block.
    fn notify(&self, notification: Notification);
}

#[derive(Debug)]
enum Command {
    /// A request the service answers with "done" or an error, passed through as it is.
    Forward {
        request: Request,
        reply: oneshot::Sender<Result<(), AppError>>,
    },
    SignIn {
        reply: oneshot::Sender<Result<(), AppError>>,
    },
    CancelSignIn,
    SignOut {
        reply: oneshot::Sender<Result<(), AppError>>,
    },
    DeepLink {
        link: url::Url,
    },
    ExportServiceLogs {
        reply: oneshot::Sender<Result<ServiceLogs, AppError>>,
    },
}

/// Service log files as they arrive: (file name, bytes), in order.
type ServiceLogs = Vec<(String, Vec<u8>)>;

/// Who waits for the answer to a request sent to the service.
#[derive(Debug)]
enum Waiter {
    Caller(oneshot::Sender<Result<(), AppError>>),
    /// A request the controller made on its own (restoring the session); failures are logged.
    Log(&'static str),
    /// A browser sign-in the service redeems; the token it answers is kept for `portal_url`.
    SignIn {
        portal_url: String,
    },
    /// An export of the service's logs, collecting the chunks that come before the answer.
    Logs(oneshot::Sender<Result<ServiceLogs, AppError>>, ServiceLogs),
}

/// A cheap, cloneable way to talk to the controller.
#[derive(Debug, Clone)]
pub struct ControllerHandle {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<AppView>,
}

impl ControllerHandle {
    pub fn view(&self) -> AppView {
        self.view.borrow().clone()
    }

    /// The resource `id` as the service last reported it.
    pub fn resource(&self, id: &str) -> Option<ResourceView> {
        self.view
            .borrow()
            .state
            .iter()
            .flat_map(|s| &s.resources)
            .find(|r| r.id == id)
            .cloned()
    }

    pub async fn apply_settings(&self, settings: ServiceSettings) -> Result<(), AppError> {
        self.ask(|reply| Command::Forward {
            request: Request::ApplySettings { settings },
            reply,
        })
        .await
    }

    /// Opens the portal's sign-in page in the browser.
    pub async fn sign_in(&self) -> Result<(), AppError> {
        self.ask(|reply| Command::SignIn { reply }).await
    }

    /// Switches a resource the user may switch (the internet resource) on or off.
    pub async fn set_resource_enabled(
        &self,
        resource_id: String,
        enabled: bool,
    ) -> Result<(), AppError> {
        self.ask(|reply| Command::Forward {
            request: Request::SetResourceEnabled {
                resource_id,
                enabled,
            },
            reply,
        })
        .await
    }

    /// Stops waiting for the browser; a link for the abandoned sign-in is then ignored.
    pub async fn cancel_sign_in(&self) {
        let _ = self.commands.send(Command::CancelSignIn).await;
    }

    /// Forgets the token and tells the service to sign out.
    pub async fn sign_out(&self) -> Result<(), AppError> {
        self.ask(|reply| Command::SignOut { reply }).await
    }

    /// The service's log files, for the diagnostics bundle.
    pub async fn export_service_logs(&self) -> Result<ServiceLogs, AppError> {
        let (reply, answer) = oneshot::channel();
        let gone = || AppError::ServiceUnavailable {
            detail: "the app is shutting down".into(),
        };
        self.commands
            .send(Command::ExportServiceLogs { reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// An `ember://` link the OS handed to the app.
    pub async fn deep_link(&self, link: url::Url) {
        let _ = self.commands.send(Command::DeepLink { link }).await;
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), AppError>>) -> Command,
    ) -> Result<(), AppError> {
        let (reply, answer) = oneshot::channel();
        let gone = || AppError::ServiceUnavailable {
            detail: "the app is shutting down".into(),
        };
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[derive(Debug)]
pub struct Controller<D> {
    desktop: D,
    endpoint: Endpoint,
    view: watch::Sender<AppView>,
    commands: mpsc::Receiver<Command>,
    next_request_id: u64,
    awaiting_reply: HashMap<u64, Waiter>,
    pending_sign_in: Option<PendingSignIn>,
    notifications: NotificationGate,
    tokens: TokenVault,
    /// The user wants to be signed in: the token goes to the service whenever it has no
    /// session (at start with "connect on start", after a service restart).
    wants_session: bool,
}

impl<D: Desktop> Controller<D> {
    /// `restore_session`: sign in with the token from the keychain once the service is there
    /// (the "connect on start" setting).
    pub fn new(
        desktop: D,
        endpoint: Endpoint,
        tokens: TokenVault,
        restore_session: bool,
    ) -> (Self, ControllerHandle) {
        let wants_session = restore_session && tokens.recall().is_some();
        let (view_tx, view_rx) = watch::channel(AppView::connecting());
        let (commands_tx, commands_rx) = mpsc::channel(16);
        let controller = Self {
            desktop,
            endpoint,
            view: view_tx,
            commands: commands_rx,
            next_request_id: 0,
            awaiting_reply: HashMap::new(),
            pending_sign_in: None,
            notifications: NotificationGate::default(),
            tokens,
            wants_session,
        };
        let handle = ControllerHandle {
            commands: commands_tx,
            view: view_rx,
        };
        (controller, handle)
    }

    /// Runs until every [`ControllerHandle`] is dropped.
    pub async fn run(mut self) {
        self.desktop.show_view(&self.view.borrow());
        let mut retry_delay = FIRST_RETRY_DELAY;
        loop {
            match ember_ipc::client::connect(&self.endpoint, APP_VERSION).await {
                Ok((connection, handshake)) => {
                    retry_delay = FIRST_RETRY_DELAY;
                    tracing::info!(service_version = %handshake.service_version, "Connected to the tunnel service");
                    self.set_view(
                        ServiceStatus::Connected {
                            service_version: handshake.service_version,
                            may_change_settings: handshake.may_change_settings,
                        },
                        Some(handshake.state),
                    );
                    let Some(lost) = self.serve(connection).await else {
                        return;
                    };
                    tracing::warn!("Lost the tunnel service: {lost}");
                    self.notify(Notification {
                        key: "service-stopped".into(),
                        title: "The tunnel service stopped".into(),
                        body: format!("{lost}. Ember reconnects as soon as it is back."),
                    });
                    self.set_view(ServiceStatus::NotRunning { detail: lost }, None);
                }
                Err(e) => {
                    let status = status_after(&e);
                    if status != self.view.borrow().service {
                        tracing::warn!("Cannot use the tunnel service: {e}");
                    }
                    self.set_view(status, None);
                }
            }
            if !self.wait_before_retry(retry_delay).await {
                return;
            }
            retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Serves one connection. `Some(reason)` when it was lost; `None` when the app is quitting.
    async fn serve(&mut self, mut connection: Connection) -> Option<String> {
        if let Err(e) = self.restore_session(&mut connection).await {
            return Some(e);
        }
        let lost = loop {
            tokio::select! {
                message = connection.next() => match message {
                    None => break "the tunnel service closed the connection".to_owned(),
                    Some(Err(e)) => break e.to_string(),
                    Some(Ok(ServiceMessage::Stopping { reason })) => break reason,
                    Some(Ok(message)) => self.handle_message(message),
                },
                command = self.commands.recv() => {
                    // No handles left: the app is quitting.
                    if let Err(e) = self.handle_command(command?, &mut connection).await {
                        break e;
                    }
                }
            }
        };
        for (_, waiter) in self.awaiting_reply.drain() {
            waiter.fail(AppError::ServiceUnavailable {
                detail: lost.clone(),
            });
        }
        Some(lost)
    }

    /// Hands the kept token to a service that has no session, if the user wants one.
    async fn restore_session(&mut self, connection: &mut Connection) -> Result<(), String> {
        let signed_out = self
            .view
            .borrow()
            .state
            .as_ref()
            .is_some_and(|s| matches!(s.session, SessionState::SignedOut { reason: None }));
        if !(self.wants_session && signed_out) {
            return Ok(());
        }
        let Some(kept) = self.tokens.recall() else {
            self.wants_session = false;
            return Ok(());
        };
        let portal_url = self
            .view
            .borrow()
            .state
            .as_ref()
            .map(|state| state.settings.portal_url.clone())
            .unwrap_or_default();
        if !same_portal(&kept.portal_url, &portal_url) {
            // The token goes only to the portal that issued it, never to the one set now.
            tracing::warn!(
                token_portal = %kept.portal_url,
                %portal_url,
                "The kept token belongs to another portal; signing in again is needed"
            );
            self.forget_session();
            self.notify(Notification {
                key: "wrong-portal".into(),
                title: "Sign in again".into(),
                body: IpcError::WrongPortal {
                    token_portal: kept.portal_url,
                    portal_url,
                }
                .to_string(),
            });
            return Ok(());
        }
        tracing::info!("Signing in with the kept token");
        self.send_request(
            connection,
            Request::ResumeSession {
                portal_url: kept.portal_url,
                token: kept.token,
            },
            Waiter::Log("signing in with the kept token"),
        )
        .await
    }

    fn handle_message(&mut self, message: ServiceMessage) {
        match message {
            ServiceMessage::State { state } => {
                let before = self.view.borrow().state.clone();
                self.react_to_change(before.as_ref(), &state);
                let service = self.view.borrow().service.clone();
                self.set_view(service, Some(state));
            }
            ServiceMessage::Response { id, result } => match self.awaiting_reply.remove(&id) {
                None => tracing::debug!(id, "Response to a request nobody waits for"),
                Some(Waiter::Caller(reply)) => {
                    let _ = reply.send(
                        result
                            .map(|_| ())
                            .map_err(|error| AppError::Service { error }),
                    );
                }
                Some(Waiter::Log(what)) => {
                    if let Err(e) = result {
                        tracing::warn!("The service refused {what}: {e}");
                    }
                }
                Some(Waiter::SignIn { portal_url }) => self.finish_sign_in(portal_url, result),
                Some(Waiter::Logs(reply, files)) => {
                    let _ = reply.send(
                        result
                            .map(|_| files)
                            .map_err(|error| AppError::Service { error }),
                    );
                }
            },
            ServiceMessage::LogChunk {
                id,
                file,
                data_base64,
            } => {
                use base64::Engine as _;
                let Some(Waiter::Logs(_, files)) = self.awaiting_reply.get_mut(&id) else {
                    return;
                };
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data_base64)
                else {
                    tracing::warn!(%file, "A log chunk from the service is not base64; skipped");
                    return;
                };
                match files.last_mut() {
                    Some((name, data)) if *name == file => data.extend_from_slice(&bytes),
                    _ => files.push((file, bytes)),
                }
            }
            other => tracing::debug!(?other, "Ignoring an unexpected message from the service"),
        }
    }

    /// Errors only when the connection to the service failed.
    async fn handle_command(
        &mut self,
        command: Command,
        connection: &mut Connection,
    ) -> Result<(), String> {
        match command {
            Command::Forward { request, reply } => {
                self.send_request(connection, request, Waiter::Caller(reply))
                    .await
            }
            Command::SignIn { reply } => {
                let _ = reply.send(self.begin_sign_in());
                Ok(())
            }
            Command::CancelSignIn => {
                self.cancel_sign_in();
                Ok(())
            }
            Command::SignOut { reply } => {
                self.forget_session();
                self.send_request(connection, Request::SignOut, Waiter::Caller(reply))
                    .await
            }
            Command::ExportServiceLogs { reply } => {
                self.send_request(
                    connection,
                    Request::ExportLogs,
                    Waiter::Logs(reply, Vec::new()),
                )
                .await
            }
            Command::DeepLink { link } => {
                let Some(completed) = self.handle_deep_link(&link) else {
                    return Ok(());
                };
                self.send_request(
                    connection,
                    Request::SignIn {
                        portal_url: completed.portal_url.clone(),
                        code: completed.code,
                        verifier: completed.verifier,
                    },
                    Waiter::SignIn {
                        portal_url: completed.portal_url,
                    },
                )
                .await
            }
        }
    }

    async fn send_request(
        &mut self,
        connection: &mut Connection,
        request: Request,
        waiter: Waiter,
    ) -> Result<(), String> {
        self.next_request_id += 1;
        let id = self.next_request_id;
        match connection
            .send(ClientMessage::Request { id, request })
            .await
        {
            Ok(()) => {
                self.awaiting_reply.insert(id, waiter);
                Ok(())
            }
            Err(e) => {
                waiter.fail(AppError::ServiceUnavailable {
                    detail: e.to_string(),
                });
                Err(e.to_string())
            }
        }
    }

    fn begin_sign_in(&mut self) -> Result<(), AppError> {
        let portal_url = self
            .view
            .borrow()
            .state
            .as_ref()
            .map(|state| state.settings.portal_url.clone())
            .ok_or_else(not_connected)?;
        let (pending, page) =
            PendingSignIn::begin(&portal_url, Instant::now()).map_err(|e| AppError::Service {
                error: IpcError::InvalidSettings {
                    field: "portal_url".into(),
                    reason: e.to_string(),
                },
            })?;
        self.desktop
            .open_browser(page.as_str())
            .map_err(|detail| AppError::Browser { detail })?;
        tracing::info!(%portal_url, "Opened the portal's sign-in page");
        self.pending_sign_in = Some(pending);
        self.set_waiting_for_browser(true);
        Ok(())
    }

    fn cancel_sign_in(&mut self) {
        if self.pending_sign_in.take().is_some() {
            tracing::info!("Sign-in cancelled");
        }
        self.set_waiting_for_browser(false);
    }

    /// What the service needs to redeem a link that completes the pending sign-in. Any other
    /// link is logged (without its query) and ignored.
    fn handle_deep_link(&mut self, link: &url::Url) -> Option<sign_in::Completed> {
        let redacted = sign_in::redact(link);
        let Some(pending) = &self.pending_sign_in else {
            tracing::info!(link = %redacted, "Ignoring a deep link: no sign-in is pending");
            return None;
        };
        let completed = match pending.complete(link, Instant::now()) {
            Ok(completed) => completed,
            Err(e) => {
                tracing::warn!(link = %redacted, "Ignoring a deep link: {e}");
                return None;
            }
        };
        tracing::info!(link = %redacted, "Sign-in completed in the browser");
        self.pending_sign_in = None;
        self.set_waiting_for_browser(false);
        Some(completed)
    }

    /// The service's answer to a redeemed sign-in: keep the token for its portal, or say why not.
    fn finish_sign_in(&mut self, portal_url: String, result: Result<Reply, IpcError>) {
        let token = match result {
            Ok(Reply::SignedIn { token }) => token,
            Ok(other) => {
                tracing::warn!(?other, "The service answered a sign-in without a token");
                return;
            }
            Err(error) => {
                tracing::warn!("The sign-in failed: {error}");
                self.notify(Notification {
                    key: "sign-in-failed".into(),
                    title: "Sign-in failed".into(),
                    body: error.to_string(),
                });
                return;
            }
        };
        if let Kept::ThisRunOnly {
            notice: Some(notice),
        } = self.tokens.remember(KeptToken { portal_url, token })
        {
            self.notify(Notification {
                key: "keychain-unavailable".into(),
                title: "Signed in for this session only".into(),
                body: notice,
            });
        }
        self.wants_session = true;
    }

    /// The user signed out, or the portal ended the session: the token is of no more use.
    fn forget_session(&mut self) {
        self.wants_session = false;
        self.tokens.forget();
    }

    /// Notifications and token housekeeping when the service's state changes.
    fn react_to_change(&mut self, before: Option<&ViewState>, after: &ViewState) {
        let session_before = before.map(|s| &s.session);
        match &after.session {
            SessionState::SignedOut {
                reason: Some(reason),
            } if session_before != Some(&after.session) => {
                tracing::info!(%reason, "Signed out by the portal");
                self.forget_session();
                self.notify(Notification {
                    key: "signed-out".into(),
                    title: "Signed out".into(),
                    body: format!("{reason}. Sign in again to reach your resources."),
                });
            }
            SessionState::SignedIn { .. }
                if matches!(
                    session_before,
                    Some(SessionState::ConnectingToPortal | SessionState::RaisingTunnel)
                ) =>
            {
                self.notify(Notification {
                    key: "signed-in".into(),
                    title: "Connected".into(),
                    body: "You can reach your resources.".into(),
                });
            }
            _ => {}
        }
        for resource in &after.resources {
            let was_unreachable = before
                .and_then(|b| b.resources.iter().find(|r| r.id == resource.id))
                .is_some_and(|r| r.state == ResourceState::Unreachable);
            if resource.state == ResourceState::Unreachable && !was_unreachable {
                self.notify(Notification {
                    key: format!("unreachable:{}", resource.id),
                    title: format!("Cannot reach {}", resource.name),
                    body: resource
                        .reason
                        .clone()
                        .unwrap_or_else(|| "The portal gave no reason.".into()),
                });
            }
        }
    }

    /// Waits `delay`, answering commands meanwhile. `false` when the app is quitting.
    async fn wait_before_retry(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(Command::Forward { reply, .. } | Command::SignIn { reply }) => {
                        let _ = reply.send(Err(not_connected()));
                    }
                    Some(Command::SignOut { reply }) => {
                        // Nothing to tell the service; it starts without a session.
                        self.forget_session();
                        let _ = reply.send(Ok(()));
                    }
                    Some(Command::CancelSignIn) => self.cancel_sign_in(),
                    Some(Command::ExportServiceLogs { reply }) => {
                        let _ = reply.send(Err(not_connected()));
                    }
                    // Only the service can redeem the code, and it is gone; the code expires
                    // within minutes, so the user signs in again once it is back.
                    Some(Command::DeepLink { link }) => {
                        if self.handle_deep_link(&link).is_some() {
                            self.notify(Notification {
                                key: "sign-in-failed".into(),
                                title: "Sign-in failed".into(),
                                body: "The tunnel service is not running. Sign in again once it is back.".into(),
                            });
                        }
                    }
                },
            }
        }
    }

    fn notify(&mut self, notification: Notification) {
        if self.notifications.admit(&notification.key, Instant::now()) {
            self.desktop.notify(notification);
        }
    }

    fn set_waiting_for_browser(&mut self, waiting: bool) {
        let view = AppView {
            waiting_for_browser: waiting,
            ..self.view.borrow().clone()
        };
        self.show(view);
    }

    fn set_view(&mut self, service: ServiceStatus, state: Option<ViewState>) {
        let view = AppView {
            service,
            state,
            waiting_for_browser: self.pending_sign_in.is_some(),
        };
        self.show(view);
    }

    fn show(&mut self, view: AppView) {
        if *self.view.borrow() == view {
            return;
        }
        self.desktop.show_view(&view);
        self.view.send_replace(view);
    }
}

impl Waiter {
    fn fail(self, error: AppError) {
        match self {
            Self::Caller(reply) => {
                let _ = reply.send(Err(error));
            }
            Self::Logs(reply, _) => {
                let _ = reply.send(Err(error));
            }
            Self::Log(_) | Self::SignIn { .. } => {}
        }
    }
}

/// Two spellings of one portal (`https://p.example` and `https://p.example/`) are the same.
fn same_portal(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn not_connected() -> AppError {
    AppError::ServiceUnavailable {
        detail: "not connected to the tunnel service".into(),
    }
}

fn status_after(error: &ConnectError) -> ServiceStatus {
    let detail = error.to_string();
    match error {
        ConnectError::PermissionDenied { .. } | ConnectError::Refused { .. } => {
            ServiceStatus::NotAllowed { detail }
        }
        ConnectError::Incompatible { .. } => ServiceStatus::Incompatible { detail },
        _ => ServiceStatus::NotRunning { detail },
    }
}

#[cfg(test)]
mod tests;
