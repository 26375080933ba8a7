//! The controller against a scripted service on a real socket and a fake desktop.

use std::sync::{Arc, Mutex};

use ember_ipc::transport::Listener;
use ember_protocol::codec::JsonCodec;
use ember_protocol::ipc::{PROTOCOL_VERSION, Reply};
use tokio_util::codec::Framed;

use super::*;
use crate::token_store::{StoreError, TokenStore};
use ember_protocol::SecretToken;

/// What the scripted service's portal issues for a redeemed sign-in.
const REDEEMED_TOKEN: &str = "token-the-portal-issued";

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
        may_change_settings: true,
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
                let reply = match &request {
                    Request::SignIn { .. } => Reply::SignedIn {
                        token: SecretToken::new(REDEEMED_TOKEN),
                    },
                    _ => Reply::Done,
                };
                let steps = match request {
                    Request::ApplySettings { settings } => {
                        state.settings = settings;
                        vec![state.session.clone()]
                    }
                    Request::SignIn { .. } | Request::ResumeSession { .. } => vec![
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
                app.send(ServiceMessage::Response { id, result: Ok(reply) }).await.unwrap();
            }
        }
    }
}

/// A keychain in memory, shared with the test so it can look inside.
#[derive(Debug, Clone, Default)]
struct MemoryKeychain(Arc<Mutex<Option<KeptToken>>>);

impl MemoryKeychain {
    /// A token the portal in [`settings`] issued.
    fn holding(token: &str) -> Self {
        Self::holding_for(&settings().portal_url, token)
    }

    fn holding_for(portal_url: &str, token: &str) -> Self {
        Self(Arc::new(Mutex::new(Some(KeptToken {
            portal_url: portal_url.into(),
            token: SecretToken::new(token),
        }))))
    }

    fn token(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .as_ref()
            .map(|kept| kept.token.expose().to_owned())
    }
}

impl TokenStore for MemoryKeychain {
    fn load(&self) -> Result<Option<KeptToken>, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn save(&self, token: &KeptToken) -> Result<(), StoreError> {
        *self.0.lock().unwrap() = Some(token.clone());
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
                Request::ResumeSession { token, .. } => Some(token.expose().to_owned()),
                _ => None,
            })
            .collect()
    }

    /// The (code, verifier) of every browser sign-in the app asked the service to redeem.
    fn redeems(&self) -> Vec<(String, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                Request::SignIn { code, verifier, .. } => {
                    Some((code.expose().to_owned(), verifier.expose().to_owned()))
                }
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

    /// Starts a sign-in and returns the `state` and `challenge` of the page it opened.
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
        (get("state"), get("challenge"))
    }
}

fn callback(state: &str, code: &str) -> url::Url {
    url::Url::parse(&ember_protocol::sign_in::callback_url(
        state, code, "Ada", "acme",
    ))
    .unwrap()
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
async fn sign_in_opens_the_portal_page_with_state_and_challenge_and_waits_for_the_browser() {
    let harness = Harness::connected(MemoryKeychain::default()).await;
    let (state, challenge) = harness.begin_sign_in().await;
    let opened = harness.desktop.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 1);
    assert!(
        opened[0].starts_with("http://127.0.0.1:8080/sign-in?as=client&state="),
        "{}",
        opened[0]
    );
    assert_eq!((state.len(), challenge.len()), (64, 43));
    assert!(harness.handle.view().waiting_for_browser);
    harness.handle.cancel_sign_in().await;
    until(&harness.handle, "no longer waiting", |v| {
        !v.waiting_for_browser
    })
    .await;
}

#[tokio::test]
async fn the_callback_link_is_redeemed_by_the_service_and_the_token_kept_for_its_portal() {
    let harness = Harness::connected(MemoryKeychain::default()).await;
    let (state, challenge) = harness.begin_sign_in().await;
    let code = "5a".repeat(32);
    harness.handle.deep_link(callback(&state, &code)).await;
    harness.until_signed_in().await;
    // The service got the code and the verifier behind the page's challenge.
    let redeems = harness.redeems();
    assert_eq!(redeems.len(), 1);
    assert_eq!(redeems[0].0, code);
    assert_eq!(ember_protocol::sign_in::challenge(&redeems[0].1), challenge);
    let opened = harness.desktop.opened.lock().unwrap().clone();
    assert!(
        !opened[0].contains(&redeems[0].1),
        "the verifier never went to the browser"
    );
    // The answer is kept in the keychain, with the portal it came from.
    // The answer comes after the state changes the test waited for.
    for _ in 0..500 {
        if harness.keychain.token().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *harness.keychain.0.lock().unwrap(),
        Some(KeptToken {
            portal_url: settings().portal_url,
            token: SecretToken::new(REDEEMED_TOKEN),
        })
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
    harness.handle.deep_link(callback(&state, &code)).await;
    harness.handle.sign_out().await.unwrap();
    assert_eq!(harness.redeems().len(), 1);
    assert_eq!(harness.keychain.token(), None, "sign-out forgets the token");
    assert!(harness.requests.lock().unwrap().contains(&Request::SignOut));
}

#[tokio::test]
async fn a_forged_or_unexpected_link_changes_nothing() {
    let harness = Harness::connected(MemoryKeychain::default()).await;
    let code = "5a".repeat(32);
    // No sign-in pending.
    harness
        .handle
        .deep_link(callback(&"1".repeat(64), &code))
        .await;
    let (state, _) = harness.begin_sign_in().await;
    // Pending, but the wrong state, and garbage.
    harness
        .handle
        .deep_link(callback(&"2".repeat(64), &code))
        .await;
    harness
        .handle
        .deep_link(url::Url::parse("ember://sign-in-callback?state=%00%ff").unwrap())
        .await;
    harness.handle.deep_link(callback(&state, "not-hex")).await;
    // A settings round trip proves the links above were all handled before it.
    harness.handle.apply_settings(settings()).await.unwrap();
    assert!(harness.sign_ins().is_empty() && harness.redeems().is_empty());
    assert_eq!(harness.keychain.token(), None);
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
async fn a_kept_token_is_never_sent_to_another_portal() {
    let harness = Harness::connected(MemoryKeychain::holding_for(
        "https://old-portal.example.com",
        "kept-token",
    ))
    .await;
    // A round trip proves the controller is past restoring the session.
    harness.handle.apply_settings(settings()).await.unwrap();
    assert!(harness.sign_ins().is_empty(), "the token stayed in the app");
    assert_eq!(harness.keychain.token(), None);
    let notified = harness.desktop.notified.lock().unwrap().clone();
    assert_eq!(notified[0].title, "Sign in again");
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
    assert_eq!(harness.keychain.token(), None);
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
