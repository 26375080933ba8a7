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
    ClientMessage, IpcError, Request, ServiceMessage, ServiceSettings, ViewState,
};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot, watch};

use crate::notifications::{Notification, NotificationGate};
use crate::sign_in::{self, PendingSignIn};
use crate::token_store::{Kept, TokenVault};
use crate::view::{AppError, AppView, ServiceStatus};
use ember_protocol::SecretToken;
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
        let Some(token) = self.tokens.recall() else {
            self.wants_session = false;
            return Ok(());
        };
        tracing::info!("Signing in with the kept token");
        self.send_request(
            connection,
            Request::SignIn { token },
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
                let Some(token) = self.handle_deep_link(&link) else {
                    return Ok(());
                };
                self.send_request(
                    connection,
                    Request::SignIn { token },
                    Waiter::Log("the sign-in"),
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

    /// The token of a link that completes the pending sign-in, now kept in the vault. Any
    /// other link is logged (without its query) and ignored.
    fn handle_deep_link(&mut self, link: &url::Url) -> Option<SecretToken> {
        let redacted = sign_in::redact(link);
        let Some(pending) = &self.pending_sign_in else {
            tracing::info!(link = %redacted, "Ignoring a deep link: no sign-in is pending");
            return None;
        };
        let signed_in = match pending.complete(link, Instant::now()) {
            Ok(signed_in) => signed_in,
            Err(e) => {
                tracing::warn!(link = %redacted, "Ignoring a deep link: {e}");
                return None;
            }
        };
        tracing::info!(link = %redacted, "Sign-in completed in the browser");
        self.pending_sign_in = None;
        self.set_waiting_for_browser(false);
        if let Kept::ThisRunOnly {
            notice: Some(notice),
        } = self.tokens.remember(signed_in.token.clone())
        {
            self.notify(Notification {
                key: "keychain-unavailable".into(),
                title: "Signed in for this session only".into(),
                body: notice,
            });
        }
        self.wants_session = true;
        Some(signed_in.token)
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
                    // Kept in the vault: the session starts when the service is back.
                    Some(Command::DeepLink { link }) => {
                        let _ = self.handle_deep_link(&link);
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
            Self::Log(_) => {}
        }
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
mod tests {
    use std::sync::{Arc, Mutex};

    use ember_ipc::transport::Listener;
    use ember_protocol::codec::JsonCodec;
    use ember_protocol::ipc::{PROTOCOL_VERSION, Reply};
    use tokio_util::codec::Framed;

    use super::*;
    use crate::token_store::{StoreError, TokenStore};

    /// Records what the controller shows and opens, instead of a window and a browser.
    #[derive(Clone, Default)]
    struct FakeDesktop {
        views: Arc<Mutex<Vec<AppView>>>,
        opened: Arc<Mutex<Vec<String>>>,
        notified: Arc<Mutex<Vec<Notification>>>,
    }

    impl Desktop for FakeDesktop {
        fn show_view(&self, view: &AppView) {
            self.views.lock().unwrap().push(view.clone());
        }
        fn open_browser(&self, url: &str) -> Result<(), String> {
            self.opened.lock().unwrap().push(url.to_owned());
            Ok(())
        }
        fn notify(&self, notification: Notification) {
            self.notified.lock().unwrap().push(notification);
        }
    }

    fn settings() -> ServiceSettings {
        ServiceSettings {
            portal_url: "http://127.0.0.1:8080".into(),
            log_filter: "info".into(),
        }
    }

    /// What a test tells its scripted service to do.
    enum Script {
        Stop,
        /// The portal ended the session (token revoked).
        SignOutBecause(String),
    }

    /// A service that speaks the protocol over a real socket: hello, state, settings applied,
    /// sign-in and sign-out as state changes. Records every request. Serves one app.
    async fn scripted_service(
        endpoint: Endpoint,
        mut script: mpsc::Receiver<Script>,
        requests: Arc<Mutex<Vec<Request>>>,
    ) {
        let mut listener = Listener::bind(&endpoint, None).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut app = Framed::new(stream, JsonCodec::<ClientMessage, ServiceMessage>::new());
        let Some(Ok(ClientMessage::Hello { .. })) = app.next().await else {
            panic!("expected a hello");
        };
        let mut state = ViewState::signed_out(settings());
        app.send(ServiceMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            service_version: "test".into(),
        })
        .await
        .unwrap();
        app.send(ServiceMessage::State {
            state: state.clone(),
        })
        .await
        .unwrap();
        loop {
            tokio::select! {
                step = script.recv() => {
                    match step {
                        None | Some(Script::Stop) => {
                            app.send(ServiceMessage::Stopping { reason: "test stop".into() }).await.unwrap();
                            return;
                        }
                        Some(Script::SignOutBecause(reason)) => {
                            state.session = SessionState::SignedOut { reason: Some(reason) };
                            app.send(ServiceMessage::State { state: state.clone() }).await.unwrap();
                        }
                    }
                }
                message = app.next() => {
                    let Some(Ok(ClientMessage::Request { id, request })) = message else {
                        return;
                    };
                    requests.lock().unwrap().push(request.clone());
                    let steps = match request {
                        Request::ApplySettings { settings } => {
                            state.settings = settings;
                            vec![state.session.clone()]
                        }
                        Request::SignIn { .. } => vec![
                            SessionState::ConnectingToPortal,
                            SessionState::SignedIn { account: "acme".into(), actor: "Ada".into() },
                        ],
                        Request::SignOut => vec![SessionState::SignedOut { reason: None }],
                        _ => vec![state.session.clone()],
                    };
                    for session in steps {
                        state.session = session;
                        app.send(ServiceMessage::State { state: state.clone() }).await.unwrap();
                    }
                    app.send(ServiceMessage::Response { id, result: Ok(Reply::Done) }).await.unwrap();
                }
            }
        }
    }

    /// A keychain in memory, shared with the test so it can look inside.
    #[derive(Debug, Clone, Default)]
    struct MemoryKeychain(Arc<Mutex<Option<String>>>);

    impl MemoryKeychain {
        fn holding(token: &str) -> Self {
            Self(Arc::new(Mutex::new(Some(token.to_owned()))))
        }
    }

    impl TokenStore for MemoryKeychain {
        fn load(&self) -> Result<Option<SecretToken>, StoreError> {
            Ok(self.0.lock().unwrap().clone().map(SecretToken::new))
        }
        fn save(&self, token: &SecretToken) -> Result<(), StoreError> {
            *self.0.lock().unwrap() = Some(token.expose().to_owned());
            Ok(())
        }
        fn delete(&self) -> Result<(), StoreError> {
            *self.0.lock().unwrap() = None;
            Ok(())
        }
    }

    struct Harness {
        handle: ControllerHandle,
        desktop: FakeDesktop,
        keychain: MemoryKeychain,
        script: mpsc::Sender<Script>,
        requests: Arc<Mutex<Vec<Request>>>,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        /// The controller and a scripted service, connected.
        async fn connected(keychain: MemoryKeychain) -> Self {
            let (handle, desktop, endpoint, dir) = start_with(keychain.clone());
            let (script, script_rx) = mpsc::channel(4);
            let requests = Arc::new(Mutex::new(Vec::new()));
            tokio::spawn(scripted_service(endpoint, script_rx, requests.clone()));
            until(&handle, "connected", |v| v.state.is_some()).await;
            Self {
                handle,
                desktop,
                keychain,
                script,
                requests,
                _dir: dir,
            }
        }

        fn sign_ins(&self) -> Vec<String> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .filter_map(|r| match r {
                    Request::SignIn { token } => Some(token.expose().to_owned()),
                    _ => None,
                })
                .collect()
        }

        async fn until_signed_in(&self) {
            until(&self.handle, "signed in", |v| {
                v.state
                    .as_ref()
                    .is_some_and(|s| matches!(s.session, SessionState::SignedIn { .. }))
            })
            .await;
        }

        /// Starts a sign-in and returns the `state` and `nonce` of the page it opened.
        async fn begin_sign_in(&self) -> (String, String) {
            self.handle.sign_in().await.unwrap();
            let opened = self.desktop.opened.lock().unwrap().last().cloned().unwrap();
            let url = url::Url::parse(&opened).unwrap();
            let get = |key: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.into_owned())
                    .unwrap()
            };
            (get("state"), get("nonce"))
        }
    }

    fn callback(state: &str, fragment: &str) -> url::Url {
        url::Url::parse(&format!(
            "ember://sign-in-callback?state={state}&fragment={fragment}&actor=Ada&account=acme"
        ))
        .unwrap()
    }

    fn expected_token(nonce: &str, fragment: &str) -> String {
        use hmac::Mac as _;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&hex::decode(nonce).unwrap()).unwrap();
        mac.update(&hex::decode(fragment).unwrap());
        hex::encode(mac.finalize().into_bytes())
    }

    async fn until(handle: &ControllerHandle, what: &str, test: impl Fn(&AppView) -> bool) {
        let mut view = handle.view.clone();
        tokio::time::timeout(Duration::from_secs(5), view.wait_for(|v| test(v)))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {what}; last view {:?}",
                    handle.view()
                )
            })
            .unwrap();
    }

    fn start() -> (ControllerHandle, FakeDesktop, Endpoint, tempfile::TempDir) {
        start_with(MemoryKeychain::default())
    }

    fn start_with(
        keychain: MemoryKeychain,
    ) -> (ControllerHandle, FakeDesktop, Endpoint, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint(dir.path().join("tunnel.sock"));
        let desktop = FakeDesktop::default();
        let (controller, handle) = Controller::new(
            desktop.clone(),
            endpoint.clone(),
            TokenVault::new(keychain),
            true,
        );
        tokio::spawn(controller.run());
        (handle, desktop, endpoint, dir)
    }

    #[tokio::test]
    async fn shows_not_running_until_the_service_appears_then_its_state() {
        let (handle, desktop, endpoint, _dir) = start();
        until(&handle, "not running", |v| {
            matches!(v.service, ServiceStatus::NotRunning { .. }) && v.state.is_none()
        })
        .await;
        assert!(
            desktop.notified.lock().unwrap().is_empty(),
            "no notification for a service that never ran"
        );

        let (_script, script_rx) = mpsc::channel(1);
        tokio::spawn(scripted_service(endpoint, script_rx, Default::default()));
        until(&handle, "connected", |v| {
            matches!(v.service, ServiceStatus::Connected { .. }) && v.state.is_some()
        })
        .await;
        // Every change reached the desktop, the latest last.
        assert_eq!(desktop.views.lock().unwrap().last(), Some(&handle.view()));
    }

    #[tokio::test]
    async fn a_stopping_service_is_shown_as_not_running_with_its_reason_and_a_notification() {
        let (handle, desktop, endpoint, _dir) = start();
        let (script, script_rx) = mpsc::channel(1);
        tokio::spawn(scripted_service(endpoint, script_rx, Default::default()));
        until(&handle, "connected", |v| v.state.is_some()).await;
        script.send(Script::Stop).await.unwrap();
        until(&handle, "the stop", |v| {
            v.service
                == ServiceStatus::NotRunning {
                    detail: "test stop".into(),
                }
        })
        .await;
        assert_eq!(
            handle.view().state,
            None,
            "no stale state after the service left"
        );
        let notified = desktop.notified.lock().unwrap().clone();
        assert_eq!(notified.len(), 1);
        assert_eq!(notified[0].title, "The tunnel service stopped");
    }

    #[tokio::test]
    async fn settings_round_trip_through_the_service() {
        let harness = Harness::connected(MemoryKeychain::default()).await;
        let handle = &harness.handle;

        let new = ServiceSettings {
            log_filter: "debug".into(),
            ..settings()
        };
        handle.apply_settings(new.clone()).await.unwrap();
        assert_eq!(handle.view().state.unwrap().settings, new);
    }

    #[tokio::test]
    async fn switching_the_internet_resource_asks_the_service() {
        let harness = Harness::connected(MemoryKeychain::default()).await;
        harness
            .handle
            .set_resource_enabled("res_internet".into(), true)
            .await
            .unwrap();
        assert!(
            harness
                .requests
                .lock()
                .unwrap()
                .contains(&Request::SetResourceEnabled {
                    resource_id: "res_internet".into(),
                    enabled: true
                })
        );
    }

    #[tokio::test]
    async fn requests_without_a_service_fail_clearly() {
        let (handle, _desktop, _endpoint, _dir) = start();
        until(&handle, "not running", |v| {
            matches!(v.service, ServiceStatus::NotRunning { .. })
        })
        .await;
        let result = handle.apply_settings(settings()).await;
        assert!(
            matches!(result, Err(AppError::ServiceUnavailable { .. })),
            "{result:?}"
        );
        assert!(matches!(
            handle.sign_in().await,
            Err(AppError::ServiceUnavailable { .. })
        ));
    }

    #[tokio::test]
    async fn sign_in_opens_the_portal_page_with_state_and_nonce_and_waits_for_the_browser() {
        let harness = Harness::connected(MemoryKeychain::default()).await;
        let (state, nonce) = harness.begin_sign_in().await;
        let opened = harness.desktop.opened.lock().unwrap().clone();
        assert_eq!(opened.len(), 1);
        assert!(
            opened[0].starts_with("http://127.0.0.1:8080/sign-in?as=client&state="),
            "{}",
            opened[0]
        );
        assert_eq!((state.len(), nonce.len()), (64, 64));
        assert!(harness.handle.view().waiting_for_browser);
        harness.handle.cancel_sign_in().await;
        until(&harness.handle, "no longer waiting", |v| {
            !v.waiting_for_browser
        })
        .await;
    }

    #[tokio::test]
    async fn the_callback_link_signs_in_with_the_derived_token_kept_in_the_keychain() {
        let harness = Harness::connected(MemoryKeychain::default()).await;
        let (state, nonce) = harness.begin_sign_in().await;
        let fragment = "5a".repeat(32);
        harness.handle.deep_link(callback(&state, &fragment)).await;
        harness.until_signed_in().await;
        let token = expected_token(&nonce, &fragment);
        assert_eq!(harness.sign_ins(), std::slice::from_ref(&token));
        assert_eq!(
            harness.keychain.0.lock().unwrap().as_deref(),
            Some(token.as_str())
        );
        assert!(!harness.handle.view().waiting_for_browser);
        let titles: Vec<String> = harness
            .desktop
            .notified
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.title.clone())
            .collect();
        assert_eq!(titles, ["Connected"]);

        // The same link again (a browser "back") finds no pending sign-in.
        harness.handle.deep_link(callback(&state, &fragment)).await;
        harness.handle.sign_out().await.unwrap();
        assert_eq!(harness.sign_ins().len(), 1);
        assert_eq!(
            *harness.keychain.0.lock().unwrap(),
            None,
            "sign-out forgets the token"
        );
        assert!(harness.requests.lock().unwrap().contains(&Request::SignOut));
    }

    #[tokio::test]
    async fn a_forged_or_unexpected_link_changes_nothing() {
        let harness = Harness::connected(MemoryKeychain::default()).await;
        let fragment = "5a".repeat(32);
        // No sign-in pending.
        harness
            .handle
            .deep_link(callback(&"1".repeat(64), &fragment))
            .await;
        let (state, _) = harness.begin_sign_in().await;
        // Pending, but the wrong state, and garbage.
        harness
            .handle
            .deep_link(callback(&"2".repeat(64), &fragment))
            .await;
        harness
            .handle
            .deep_link(url::Url::parse("ember://sign-in-callback?state=%00%ff").unwrap())
            .await;
        harness.handle.deep_link(callback(&state, "not-hex")).await;
        // A settings round trip proves the links above were all handled before it.
        harness.handle.apply_settings(settings()).await.unwrap();
        assert!(harness.sign_ins().is_empty());
        assert_eq!(*harness.keychain.0.lock().unwrap(), None);
        assert!(
            harness.handle.view().waiting_for_browser,
            "the real link may still come"
        );
    }

    #[tokio::test]
    async fn a_kept_token_signs_in_when_the_service_appears() {
        let harness = Harness::connected(MemoryKeychain::holding("kept-token")).await;
        harness.until_signed_in().await;
        assert_eq!(harness.sign_ins(), ["kept-token"]);
    }

    #[tokio::test]
    async fn a_session_the_portal_ends_forgets_the_token_and_says_why() {
        let harness = Harness::connected(MemoryKeychain::holding("kept-token")).await;
        harness.until_signed_in().await;
        harness
            .script
            .send(Script::SignOutBecause(
                "this device's sign-in was revoked".into(),
            ))
            .await
            .unwrap();
        until(&harness.handle, "signed out", |v| {
            v.state
                .as_ref()
                .is_some_and(|s| matches!(s.session, SessionState::SignedOut { reason: Some(_) }))
        })
        .await;
        assert_eq!(*harness.keychain.0.lock().unwrap(), None);
        let last = harness
            .desktop
            .notified
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap();
        assert_eq!(last.title, "Signed out");
        assert!(
            last.body.starts_with("this device's sign-in was revoked"),
            "{}",
            last.body
        );
    }
}
