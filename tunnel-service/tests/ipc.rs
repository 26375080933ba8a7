#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
//! The real `ember-tunnel run` binary on a real socket in a temporary folder, talked to by
//! well-behaved and badly-behaved clients.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ember_ipc::Endpoint;
use ember_ipc::client::{ConnectError, Connection, connect};
use ember_protocol::SecretToken;
use ember_protocol::ipc::{
    ClientMessage, IpcError, Reply, Request, ServiceMessage, ServiceSettings, SessionState,
};
use futures::{SinkExt as _, StreamExt as _};
use support::TestPortal;
use support::app::{ask, next};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_ember-tunnel");

struct TestService {
    child: Child,
    dir: tempfile::TempDir,
}

impl TestService {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--runtime-dir")
            .arg(dir.path().join("run"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--log-dir")
            .arg(dir.path().join("log"))
            .env("EMBER_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let service = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while StdStream::connect(service.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "the service did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        service
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/tunnel.sock")
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint(self.socket())
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn good_client(service: &TestService) -> Connection {
    let (connection, handshake) = connect(&service.endpoint(), "test").await.unwrap();
    assert_eq!(
        handshake.state.session,
        SessionState::SignedOut { reason: None }
    );
    connection
}

/// Writes raw bytes on a fresh connection and returns the service's answers until it closes.
fn raw_exchange(socket: &Path, bytes: &[u8]) -> Vec<ServiceMessage> {
    let mut stream = StdStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The service may close before reading everything we send; that is the point.
    let _ = stream.write_all(bytes);
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let mut messages = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        messages.push(serde_json::from_slice(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    messages
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(body);
    framed
}

fn hello_frame(version: u32) -> Vec<u8> {
    frame(
        format!(r#"{{"type":"hello","protocol_version":{version},"client_version":"raw"}}"#)
            .as_bytes(),
    )
}

#[tokio::test]
async fn status_prints_the_state_as_json() {
    let service = TestService::start();
    let output = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(service.socket())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(state["session"]["state"], "signed_out");
    assert_eq!(state["resources"], serde_json::json!([]));
    assert_eq!(state["settings"]["log_filter"], "info");
}

#[tokio::test]
async fn status_says_clearly_when_the_service_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not running"), "{stderr}");
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let service = TestService::start();
    let mut good = good_client(&service).await;

    let answers = raw_exchange(&service.socket(), &frame(b"\x00\xffnot json at all"));
    assert!(
        matches!(answers.as_slice(), [ServiceMessage::ProtocolError { .. }]),
        "{answers:?}"
    );
    // Garbage after a good hello is refused too.
    let mut bytes = hello_frame(ember_protocol::ipc::PROTOCOL_VERSION);
    bytes.extend(frame(
        b"{\"type\":\"request\",\"id\":1,\"request\":{\"kind\":\"reboot\"}}",
    ));
    let answers = raw_exchange(&service.socket(), &bytes);
    assert!(
        matches!(answers.last(), Some(ServiceMessage::ProtocolError { .. })),
        "{answers:?}"
    );

    assert!(matches!(
        ask(&mut good, 1, Request::GetState).await,
        Ok(Reply::State { .. })
    ));
}

#[tokio::test]
async fn oversized_frame_is_refused_without_reading_it() {
    let service = TestService::start();
    let mut good = good_client(&service).await;

    let mut bytes = (64u32 * 1024 * 1024).to_be_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 4096));
    let answers = raw_exchange(&service.socket(), &bytes);
    let [ServiceMessage::ProtocolError { message }] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert!(message.contains("exceeds the maximum"), "{message}");

    assert!(ask(&mut good, 1, Request::GetState).await.is_ok());
}

#[tokio::test]
async fn wrong_protocol_version_gets_an_explicit_incompatible_answer() {
    let service = TestService::start();
    let mut good = good_client(&service).await;

    let answers = raw_exchange(&service.socket(), &hello_frame(999));
    let [ServiceMessage::Incompatible { message, .. }] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert!(message.contains("999"), "{message}");

    assert!(ask(&mut good, 1, Request::GetState).await.is_ok());
}

#[tokio::test]
async fn a_request_before_the_hello_is_a_protocol_error() {
    let service = TestService::start();
    let answers = raw_exchange(
        &service.socket(),
        &frame(br#"{"type":"request","id":1,"request":{"kind":"get_state"}}"#),
    );
    assert!(
        matches!(answers.as_slice(), [ServiceMessage::ProtocolError { .. }]),
        "{answers:?}"
    );
}

#[tokio::test]
async fn unauthorised_user_is_refused_while_others_keep_working() {
    if !nix::unistd::geteuid().is_root() {
        ember_testbed::skip("needs root to run a client as another user");
        return;
    }
    let service = TestService::start();
    let mut good = good_client(&service).await;
    // The kernel already keeps other users out through the socket's mode; loosen it to prove
    // the service's own credential check refuses them too.
    std::fs::set_permissions(
        service.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        service.socket(),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();

    let output = std::process::Command::new(BIN)
        .args(["status", "--socket"])
        .arg(service.socket())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("refused") && stderr.contains("uid 65534"),
        "{stderr}"
    );

    assert!(ask(&mut good, 1, Request::GetState).await.is_ok());
}

use std::os::unix::process::CommandExt as _;

#[tokio::test]
async fn a_token_the_portal_refuses_signs_out_with_its_reason() {
    // The real portal on loopback. The token is refused before any `init`, so no tunnel is
    // built and nothing of this machine's network changes.
    let portal = TestPortal::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await;
    let service = TestService::start();
    let mut client = good_client(&service).await;
    // The most verbose log level: even then the token must stay out of the log.
    let settings = ServiceSettings {
        portal_url: portal.url(),
        log_filter: "trace".into(),
    };
    assert_eq!(
        ask(
            &mut client,
            1,
            Request::ApplySettings {
                settings: settings.clone()
            }
        )
        .await,
        Ok(Reply::Done)
    );
    let result = ask(
        &mut client,
        7,
        Request::ResumeSession {
            portal_url: settings.portal_url.clone(),
            token: SecretToken::new("0123456789abcdef-not-a-token-the-portal-issued"),
        },
    )
    .await;
    assert_eq!(result, Ok(Reply::Done));
    let reason = loop {
        match next(&mut client).await {
            ServiceMessage::State { state } => match state.session {
                SessionState::SignedOut {
                    reason: Some(reason),
                } => break reason,
                SessionState::SignedOut { reason: None } | SessionState::ConnectingToPortal => {}
                other => panic!("unexpected session state {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(reason.contains("refused"), "{reason}");
    assert_eq!(
        ask(&mut client, 8, Request::GetState).await,
        Ok(Reply::State {
            state: ember_protocol::ipc::ViewState {
                session: SessionState::SignedOut {
                    reason: Some(reason)
                },
                interface: None,
                resources: Vec::new(),
                settings,
            }
        })
    );
    let logs = std::fs::read_dir(service.dir.path().join("log"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        !logs.contains("0123456789abcdef-not-a-token"),
        "the token must never be logged"
    );
}

#[tokio::test]
async fn settings_change_reaches_every_client_and_survives_a_restart() {
    let mut service = TestService::start();
    let mut a = good_client(&service).await;
    let mut b = good_client(&service).await;
    let new = ServiceSettings {
        portal_url: "https://portal.example.com".into(),
        log_filter: "debug".into(),
    };
    let invalid = ServiceSettings {
        portal_url: "not a url".into(),
        ..new.clone()
    };
    assert!(matches!(
        ask(&mut a, 1, Request::ApplySettings { settings: invalid }).await,
        Err(IpcError::InvalidSettings { .. })
    ));
    assert_eq!(
        ask(
            &mut a,
            2,
            Request::ApplySettings {
                settings: new.clone()
            }
        )
        .await,
        Ok(Reply::Done)
    );
    let ServiceMessage::State { state } = next(&mut b).await else {
        panic!("expected a state update");
    };
    assert_eq!(state.settings, new);

    let saved = service.state_dir().join("settings.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // The service tells connected apps it is stopping, then exits cleanly.
    let status_of_a = tokio::spawn(async move {
        loop {
            match a.next().await {
                Some(Ok(ServiceMessage::Stopping { .. })) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    });
    assert!(service.terminate().success());
    assert!(
        status_of_a.await.unwrap(),
        "the app was not told the service is stopping"
    );
    assert!(
        !service.socket().exists(),
        "the socket file was left behind"
    );

    let restarted = TestService {
        child: Command::new(BIN)
            .arg("run")
            .arg("--runtime-dir")
            .arg(service.dir.path().join("run"))
            .arg("--state-dir")
            .arg(service.state_dir())
            .arg("--log-dir")
            .arg(service.dir.path().join("log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        dir: tempfile::tempdir().unwrap(),
    };
    let endpoint = service.endpoint();
    let deadline = Instant::now() + Duration::from_secs(10);
    let handshake = loop {
        match connect(&endpoint, "test").await {
            Ok((_, handshake)) => break handshake,
            Err(ConnectError::NotRunning { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(handshake.state.settings, new);
    drop(restarted);
}

#[tokio::test]
async fn exports_the_service_log_files() {
    let service = TestService::start();
    let mut client = good_client(&service).await;
    client
        .send(ClientMessage::Request {
            id: 9,
            request: Request::ExportLogs,
        })
        .await
        .unwrap();
    let mut text = Vec::new();
    let summary = loop {
        match next(&mut client).await {
            ServiceMessage::LogChunk {
                id: 9,
                file,
                data_base64,
            } => {
                assert!(file.starts_with("tunnel."), "{file}");
                text.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(data_base64)
                        .unwrap(),
                );
            }
            ServiceMessage::Response { id: 9, result } => break result,
            ServiceMessage::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let Ok(Reply::LogsExported { files, bytes }) = summary else {
        panic!("{summary:?}");
    };
    assert!(files >= 1);
    assert_eq!(bytes as usize, text.len());
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Tunnel service starting"), "{text}");
}

#[tokio::test]
async fn serves_many_clients_at_once() {
    let service = TestService::start();
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(good_client(&service).await);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert!(ask(client, i as u64, Request::GetState).await.is_ok());
    }
}

/// A member of the group `ember` asks the service to send everyone's sign-in to a portal of
/// their choosing. The hello tells them they may not; the request is refused as forbidden; the
/// settings stay as root set them.
#[tokio::test]
async fn a_group_member_cannot_redirect_the_portal() {
    if !nix::unistd::geteuid().is_root() {
        ember_testbed::skip("needs root to run a client as another user");
        return;
    }
    let Ok(Some(group)) = nix::unistd::Group::from_name(ember_protocol::ipc::SERVICE_GROUP) else {
        ember_testbed::skip("the group `ember` does not exist here");
        return;
    };
    let service = TestService::start();
    let mut root = good_client(&service).await;
    std::fs::set_permissions(
        service.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // The group member's client, speaking the protocol by hand.
    let script = r#"
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
def send(m):
    b = json.dumps(m).encode()
    s.sendall(struct.pack(">I", len(b)) + b)
def recv():
    n = b""
    while len(n) < 4: n += s.recv(4 - len(n))
    want = struct.unpack(">I", n)[0]; b = b""
    while len(b) < want: b += s.recv(want - len(b))
    return json.loads(b)
send({"type": "hello", "protocol_version": 2, "client_version": "attacker"})
hello = recv()
send({"type": "request", "id": 1, "request": {"kind": "apply_settings",
      "settings": {"portal_url": "https://evil.example.com", "log_filter": "trace"}}})
while True:
    m = recv()
    if m["type"] == "response":
        print(json.dumps({"hello": hello, "response": m}))
        break
"#;
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534"])
        .arg(format!("--groups={}", group.gid))
        .args(["/usr/bin/python3", "-c", script])
        .arg(service.socket())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["hello"]["may_change_settings"], false, "{answer}");
    assert_eq!(
        answer["response"]["result"]["Err"]["code"], "forbidden",
        "{answer}"
    );

    let Ok(Reply::State { state }) = ask(&mut root, 1, Request::GetState).await else {
        panic!("no state");
    };
    assert_eq!(state.settings.portal_url, "http://127.0.0.1:8080");
    assert!(!service.state_dir().join("settings.json").exists());
}

/// A connection that never says hello must not hold a slot for ever.
#[tokio::test]
async fn a_connection_that_never_says_hello_is_dropped() {
    let service = TestService::start();
    let mut silent = StdStream::connect(service.socket()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let _ = silent.read_to_end(&mut received);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "still open after {waited:?}"
    );
    let messages = raw_exchange_parse(&received);
    assert!(
        matches!(messages.as_slice(), [ServiceMessage::ProtocolError { message }] if message.contains("hello")),
        "{messages:?}"
    );
}

fn raw_exchange_parse(mut rest: &[u8]) -> Vec<ServiceMessage> {
    let mut messages = Vec::new();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        messages.push(serde_json::from_slice(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    messages
}
