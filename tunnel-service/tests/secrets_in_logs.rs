//! No secret in the service's logs, at the most verbose level, as `ExportLogs` hands them to
//! whoever asks: the real `ember-tunnel` (log filter `trace` for everything) signs in to the
//! real portal, gets relay credentials, a grant for a resource (preshared key, ICE passwords
//! of both ends) and reconnects after a portal restart; then its exported logs must not hold
//! the portal token, the preshared key, an ICE password, a TURN password or the relay's
//! secret, in plain text or hex.
//!
//! The secrets come from the portal's side, not from the service: the test's own gateway
//! (a portal link that only listens) receives the grant with the same key and passwords, and
//! the TURN passwords are recomputed from the relay secret in the portal's configuration for
//! every second the test ran. Root only (the service needs a TUN device); everything happens
//! in namespaces the test creates, with the system's DNS left alone (`--dns-mode off`).
//!
//! `EMBER_TEST_SHOW_LOGS=1` prints the exported log.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ember_ipc::Endpoint;
use ember_ipc::client::{Connection, connect};
use ember_portal::crypto::relay_credentials;
use ember_portal::store::now_unix;
use ember_portal_client::GatewaySide;
use ember_protocol::SecretToken;
use ember_protocol::ipc::{
    ClientMessage, Reply, Request, ServiceMessage, ServiceSettings, SessionState,
};
use ember_protocol::portal::{GatewayMessage, PORTAL_PROTOCOL_VERSION, PortalToGateway};
use ember_testbed::{Error, Testbed};
use futures::SinkExt as _;
use support::TestPortal;
use support::app::{next, request, wait_for};
use support::service::NsService;

const RELAY_ID: &str = "relay-1";
const RELAY_SECRET: &str = "relay-secret-7f3a9c1e5b";
const RELAY_LIFETIME: i64 = 3600;
/// A WireGuard public key for the test's gateway (never used for a handshake).
const GATEWAY_KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_after_sign_in_grant_and_reconnect_hold_no_token_key_or_password() {
    let mut testbed = match Testbed::new() {
        Ok(testbed) => testbed,
        Err(Error::NotRoot) => {
            ember_testbed::skip("the secrets-in-logs test needs root (namespaces, TUN devices)");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let started = now_unix();
    let client = testbed.add_public_host("client").unwrap();
    let server = testbed.add_public_host("server").unwrap();
    let listen = |addr| {
        testbed
            .in_ns(&server.ns, || std::net::TcpListener::bind(addr).unwrap())
            .unwrap()
    };
    let listener = listen((server.addr, 0).into());
    // Nothing answers on the relay's port: the credentials reach the service all the same.
    let relay_config = format!(
        "[[relays]]\nid = \"{RELAY_ID}\"\nurls = [\"turn:{}:3478\"]\nsecret = \"{RELAY_SECRET}\"\ncredential_lifetime_secs = {RELAY_LIFETIME}\n",
        server.addr
    );
    let mut portal = TestPortal::start_with(listener, &relay_config).await;
    let secrets = Secrets::default();

    // The site's gateway: a portal link in the server's namespace that records what it gets.
    let gateway_token = portal.gateway_token().await;
    secrets.add(&gateway_token);
    let gateway = {
        let (url, secrets) = (portal.url(), secrets.clone());
        testbed
            .in_ns(&server.ns, move || {
                std::thread::spawn(move || listening_gateway(&url, &gateway_token, &secrets))
            })
            .unwrap()
    };

    let dir = tempfile::tempdir().unwrap();
    let service = NsService::start(&client.ns, dir.path(), "off", "trace");
    let mut app = connect(&Endpoint(service.socket()), "secrets test")
        .await
        .unwrap()
        .0;
    let (token, _) = portal.client_token().await;
    secrets.add(&token);
    let settings = ServiceSettings {
        portal_url: portal.url(),
        log_filter: "trace".into(),
    };
    assert_eq!(
        request(&mut app, 1, Request::ApplySettings { settings }).await,
        Reply::Done
    );
    assert_eq!(
        request(
            &mut app,
            2,
            Request::ResumeSession {
                portal_url: portal.url(),
                token: SecretToken::new(&token)
            }
        )
        .await,
        Reply::Done
    );
    wait_for(&mut app, "signed in", |s| {
        matches!(s.session, SessionState::SignedIn { .. })
    })
    .await;

    // Traffic to a resource of Berlin: the portal grants it, with a preshared key and ICE
    // credentials for both ends (the gateway records them).
    let socket = testbed
        .in_ns(&client.ns, || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            socket.connect(("10.77.1.1", 9)).unwrap();
            socket
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while secrets.grants() == 0 {
        assert!(Instant::now() < deadline, "the gateway got no grant");
        let _ = socket.send(b"hello");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A reconnect: the portal restarts, the service signs in again with its token and gets
    // fresh relay credentials.
    portal.shutdown().await;
    wait_for(&mut app, "reconnecting", |s| {
        matches!(s.session, SessionState::PortalReconnecting { .. })
    })
    .await;
    portal.restart(listen(portal.addr())).await;
    wait_for(&mut app, "signed in again", |s| {
        matches!(s.session, SessionState::SignedIn { .. })
    })
    .await;

    // Every TURN password the portal can have issued to the device or the gateway meanwhile.
    let owners = secrets.owners();
    assert!(!owners.is_empty(), "the grant named no client");
    secrets.add(RELAY_SECRET);
    for expires_at in started + RELAY_LIFETIME..=now_unix() + RELAY_LIFETIME + 1 {
        for owner in &owners {
            let (_, password) = relay_credentials(RELAY_SECRET, owner, expires_at as u64);
            secrets.add(&password);
        }
    }

    let logs = export_logs(&mut app).await;
    if std::env::var_os("EMBER_TEST_SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    // The log is the one `trace` writes: it shows the sign-in, the grant and the reconnect.
    assert!(logs.contains("Access granted"), "no grant in the log");
    assert!(logs.contains(" TRACE "), "the log is not at trace level");
    for (what, secret) in secrets.forms() {
        assert!(
            !logs.contains(&secret),
            "the exported log contains {what} `{secret}`"
        );
    }
    drop(socket);
    drop(service);
    portal.shutdown().await;
    gateway.join().unwrap();
}

/// Everything secret the portal handed out, and the client ids the grants named.
#[derive(Clone, Default)]
struct Secrets(Arc<Mutex<SecretsInner>>);

#[derive(Default)]
struct SecretsInner {
    plain: Vec<String>,
    grants: usize,
    owners: Vec<String>,
}

impl Secrets {
    fn add(&self, secret: &str) {
        self.0.lock().unwrap().plain.push(secret.to_owned());
    }

    fn grants(&self) -> usize {
        self.0.lock().unwrap().grants
    }

    fn owners(&self) -> Vec<String> {
        self.0.lock().unwrap().owners.clone()
    }

    fn record(&self, message: &PortalToGateway) {
        let mut inner = self.0.lock().unwrap();
        match message {
            PortalToGateway::Init { relays, .. } | PortalToGateway::RelaysUpdated { relays } => {
                for relay in relays {
                    inner.plain.push(relay.password.expose().to_owned());
                }
            }
            PortalToGateway::Grant {
                client,
                preshared_key,
                local_ice,
                remote_ice,
                ..
            } => {
                inner.grants += 1;
                inner.owners.push(client.id.clone());
                inner.plain.push(preshared_key.expose().to_owned());
                inner.plain.push(local_ice.pwd.expose().to_owned());
                inner.plain.push(remote_ice.pwd.expose().to_owned());
            }
            _ => {}
        }
    }

    /// Each secret as text and as the hex of its bytes; a base64 key also as the hex and the
    /// `Debug` array of the bytes it stands for.
    fn forms(&self) -> Vec<(&'static str, String)> {
        let mut forms = Vec::new();
        for secret in &self.0.lock().unwrap().plain {
            assert!(secret.len() >= 16, "too short to search for: {secret}");
            forms.push(("a secret", secret.clone()));
            forms.push(("the hex of a secret", hex::encode(secret)));
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(secret) {
                forms.push(("the hex of a key", hex::encode(&bytes)));
                forms.push(("the bytes of a key", format!("{bytes:?}")));
            }
        }
        forms
    }
}

/// Connects as Berlin's gateway and records every message until the portal goes away twice
/// (the restart, then the end of the test) or a minute passes.
fn listening_gateway(url: &str, token: &str, secrets: &Secrets) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let token = SecretToken::new(token);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for _ in 0..2 {
            let hello = GatewayMessage::Hello {
                protocol_version: PORTAL_PROTOCOL_VERSION,
                public_key: GATEWAY_KEY.into(),
                name: "berlin-1".into(),
                version: "0.0.0".into(),
            };
            let connected = loop {
                match ember_portal_client::connect::<GatewaySide>(url, &token, hello.clone()).await
                {
                    Ok(connected) => break Some(connected),
                    Err(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(_) => break None,
                }
            };
            let Some((mut link, init)) = connected else {
                return;
            };
            secrets.record(&init);
            while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, link.recv()).await {
                secrets.record(&message);
            }
        }
    });
}

/// `ExportLogs`, as the app asks for it: every chunk of every file, as one text.
async fn export_logs(app: &mut Connection) -> String {
    app.send(ClientMessage::Request {
        id: 99,
        request: Request::ExportLogs,
    })
    .await
    .unwrap();
    let mut bytes = Vec::new();
    loop {
        match next(app).await {
            ServiceMessage::LogChunk {
                id: 99,
                data_base64,
                ..
            } => bytes.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(data_base64)
                    .unwrap(),
            ),
            ServiceMessage::Response { id: 99, result } => {
                assert!(
                    matches!(result, Ok(Reply::LogsExported { .. })),
                    "{result:?}"
                );
                return String::from_utf8_lossy(&bytes).into_owned();
            }
            ServiceMessage::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
