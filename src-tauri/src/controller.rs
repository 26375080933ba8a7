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
use crate::view::{AppError, AppView, ServiceStatus};

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
    ApplySettings {
        settings: ServiceSettings,
        reply: oneshot::Sender<Result<(), AppError>>,
    },
    SignIn {
        reply: oneshot::Sender<Result<(), AppError>>,
    },
    DeepLink {
        link: url::Url,
    },
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

    pub async fn apply_settings(&self, settings: ServiceSettings) -> Result<(), AppError> {
        self.ask(|reply| Command::ApplySettings { settings, reply })
            .await
    }

    /// Opens the portal's sign-in page in the browser.
    pub async fn sign_in(&self) -> Result<(), AppError> {
        self.ask(|reply| Command::SignIn { reply }).await
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
    awaiting_reply: HashMap<u64, oneshot::Sender<Result<(), AppError>>>,
    pending_sign_in: Option<PendingSignIn>,
    notifications: NotificationGate,
}

impl<D: Desktop> Controller<D> {
    pub fn new(desktop: D, endpoint: Endpoint) -> (Self, ControllerHandle) {
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
        for (_, reply) in self.awaiting_reply.drain() {
            let _ = reply.send(Err(AppError::ServiceUnavailable {
                detail: lost.clone(),
            }));
        }
        Some(lost)
    }

    fn handle_message(&mut self, message: ServiceMessage) {
        match message {
            ServiceMessage::State { state } => {
                let service = self.view.borrow().service.clone();
                self.set_view(service, Some(state));
            }
            ServiceMessage::Response { id, result } => {
                let Some(reply) = self.awaiting_reply.remove(&id) else {
                    tracing::debug!(id, "Response to a request nobody waits for");
                    return;
                };
                let _ = reply.send(
                    result
                        .map(|_| ())
                        .map_err(|error| AppError::Service { error }),
                );
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
            Command::ApplySettings { settings, reply } => {
                self.send_request(connection, Request::ApplySettings { settings }, reply)
                    .await
            }
            Command::SignIn { reply } => {
                let _ = reply.send(self.begin_sign_in());
                Ok(())
            }
            Command::DeepLink { link } => {
                self.handle_deep_link(&link);
                Ok(())
            }
        }
    }

    async fn send_request(
        &mut self,
        connection: &mut Connection,
        request: Request,
        reply: oneshot::Sender<Result<(), AppError>>,
    ) -> Result<(), String> {
        self.next_request_id += 1;
        let id = self.next_request_id;
        match connection
            .send(ClientMessage::Request { id, request })
            .await
        {
            Ok(()) => {
                self.awaiting_reply.insert(id, reply);
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(AppError::ServiceUnavailable {
                    detail: e.to_string(),
                }));
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
        Ok(())
    }

    /// Completing the sign-in needs the portal's token exchange; until then the link is only
    /// checked and logged, never acted on.
    fn handle_deep_link(&mut self, link: &url::Url) {
        let state = link
            .query_pairs()
            .find(|(key, _)| key == "state")
            .map(|(_, value)| value.into_owned());
        let matches = match (&self.pending_sign_in, state) {
            (Some(pending), Some(state)) => pending.accepts(&state, Instant::now()),
            _ => false,
        };
        tracing::info!(link = %sign_in::redact(link), matches_pending_sign_in = matches, "Received a deep link");
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
                    Some(Command::ApplySettings { reply, .. } | Command::SignIn { reply }) => {
                        let _ = reply.send(Err(not_connected()));
                    }
                    Some(Command::DeepLink { link }) => self.handle_deep_link(&link),
                },
            }
        }
    }

    fn notify(&mut self, notification: Notification) {
        if self.notifications.admit(&notification.key, Instant::now()) {
            self.desktop.notify(notification);
        }
    }

    fn set_view(&mut self, service: ServiceStatus, state: Option<ViewState>) {
        let view = AppView { service, state };
        if *self.view.borrow() == view {
            return;
        }
        self.desktop.show_view(&view);
        self.view.send_replace(view);
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

    /// A service that speaks the protocol over a real socket: hello, state, and settings
    /// changes applied and echoed as a new state. Serves one app, then stops as told.
    async fn scripted_service(endpoint: Endpoint, stop: oneshot::Receiver<()>) {
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
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => {
                    app.send(ServiceMessage::Stopping { reason: "test stop".into() }).await.unwrap();
                    return;
                }
                message = app.next() => {
                    let Some(Ok(ClientMessage::Request { id, request: Request::ApplySettings { settings } })) = message else {
                        return;
                    };
                    state.settings = settings;
                    app.send(ServiceMessage::State { state: state.clone() }).await.unwrap();
                    app.send(ServiceMessage::Response { id, result: Ok(Reply::Done) }).await.unwrap();
                }
            }
        }
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
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint(dir.path().join("tunnel.sock"));
        let desktop = FakeDesktop::default();
        let (controller, handle) = Controller::new(desktop.clone(), endpoint.clone());
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

        let (_stop, stop_rx) = oneshot::channel();
        tokio::spawn(scripted_service(endpoint, stop_rx));
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
        let (stop, stop_rx) = oneshot::channel();
        tokio::spawn(scripted_service(endpoint, stop_rx));
        until(&handle, "connected", |v| v.state.is_some()).await;
        stop.send(()).unwrap();
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
        let (handle, _desktop, endpoint, _dir) = start();
        let (_stop, stop_rx) = oneshot::channel();
        tokio::spawn(scripted_service(endpoint, stop_rx));
        until(&handle, "connected", |v| v.state.is_some()).await;

        let new = ServiceSettings {
            log_filter: "debug".into(),
            ..settings()
        };
        handle.apply_settings(new.clone()).await.unwrap();
        assert_eq!(handle.view().state.unwrap().settings, new);
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
    async fn sign_in_opens_the_portal_page_with_state_and_nonce() {
        let (handle, desktop, endpoint, _dir) = start();
        let (_stop, stop_rx) = oneshot::channel();
        tokio::spawn(scripted_service(endpoint, stop_rx));
        until(&handle, "connected", |v| v.state.is_some()).await;

        handle.sign_in().await.unwrap();
        let opened = desktop.opened.lock().unwrap().clone();
        assert_eq!(opened.len(), 1);
        assert!(
            opened[0].starts_with("http://127.0.0.1:8080/sign-in?as=client&state="),
            "{}",
            opened[0]
        );
        assert!(opened[0].contains("&nonce="));
    }
}
