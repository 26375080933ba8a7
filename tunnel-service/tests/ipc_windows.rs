//! The real `ember-tunnel.exe run` on a real named pipe, talked to by the app's own IPC client
//! and by badly-behaved peers. Windows only: on this Linux machine `scripts/test-windows.sh` runs
//! it under wine, where the service starts without a TUN device (Wintun is only created at
//! sign-in).
//!
//! What wine cannot show, and so is not asserted here: the pipe's DACL (wine runs every process
//! as one user who is an administrator, and does not enforce access checks on pipes), the
//! service running as LocalSystem, the Service Control Manager, and Wintun (a kernel driver).
#![cfg(windows)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ember_ipc::Endpoint;
use ember_ipc::client::{ConnectError, Connection, connect};
use ember_protocol::ipc::{
    ClientMessage, PROTOCOL_VERSION, Reply, Request, ServiceMessage, SessionState,
};
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeClient, ServerOptions};

const BIN: &str = env!("CARGO_BIN_EXE_ember-tunnel");

/// Wine starts a process in about a second when the machine is busy; leave room.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A pipe folder of its own per service, so tests running at once never meet.
fn unique_runtime_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    PathBuf::from(format!(
        r"\\.\pipe\ember-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

struct TestService {
    child: Child,
    endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

impl TestService {
    /// Starts `binary run` with its pipe under `runtime_dir`, without waiting for it.
    fn spawn(binary: &Path, runtime_dir: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .arg("run")
            .arg("--runtime-dir")
            .arg(runtime_dir)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--log-dir")
            .arg(dir.path().join("log"))
            .env("EMBER_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            child,
            endpoint: Endpoint(runtime_dir.join("ember-tunnel")),
            _dir: dir,
        }
    }

    async fn start() -> Self {
        Self::start_from(Path::new(BIN), &unique_runtime_dir()).await
    }

    async fn start_from(binary: &Path, runtime_dir: &Path) -> Self {
        let mut service = Self::spawn(binary, runtime_dir);
        let deadline = Instant::now() + START_TIMEOUT;
        // Opening an instance and closing it at once is an app that went away: harmless.
        while ClientOptions::new().open(&service.endpoint.0).is_err() {
            if let Some(status) = service.child.try_wait().unwrap() {
                panic!("the service exited before listening: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the service did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn next(connection: &mut Connection) -> ServiceMessage {
    tokio::time::timeout(Duration::from_secs(10), connection.next())
        .await
        .expect("the service did not answer within 10 s")
        .expect("the service closed the connection")
        .unwrap()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(body);
    framed
}

/// Opens a raw connection. Between accepting one client and creating the next instance the
/// service has no instance listening: "pipe busy" then means try again, as the app does.
async fn open_pipe(endpoint: &Endpoint) -> NamedPipeClient {
    const ERROR_PIPE_BUSY: i32 = 231;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ClientOptions::new().open(&endpoint.0) {
            Ok(pipe) => return pipe,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot open {endpoint}: {e}"),
        }
    }
}

/// Writes raw bytes on a fresh pipe connection and returns the service's answers until it
/// closes the connection.
async fn raw_exchange(endpoint: &Endpoint, bytes: &[u8]) -> Vec<ServiceMessage> {
    let mut pipe = open_pipe(endpoint).await;
    let _ = pipe.write_all(bytes).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), pipe.read_to_end(&mut received)).await;
    let mut messages = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        messages.push(serde_json::from_slice(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    messages
}

#[tokio::test]
async fn the_app_completes_the_hello_over_the_named_pipe_and_reads_the_state() {
    let service = TestService::start().await;
    let (mut connection, handshake) = connect(&service.endpoint, "wine test").await.unwrap();
    assert_eq!(
        handshake.state.session,
        SessionState::SignedOut { reason: None }
    );
    // Wine runs every program as an elevated administrator, whom Windows lets change the
    // machine's settings; the refusal of everyone else is unit-tested on Linux
    // (`on_windows_only_local_system_and_elevated_administrators_may_change_settings`).
    assert!(handshake.may_change_settings);

    connection
        .send(ClientMessage::Request {
            id: 1,
            request: Request::GetState,
        })
        .await
        .unwrap();
    loop {
        match next(&mut connection).await {
            ServiceMessage::Response { id: 1, result } => {
                let Ok(Reply::State { state }) = result else {
                    panic!("{result:?}");
                };
                assert_eq!(state.session, SessionState::SignedOut { reason: None });
                break;
            }
            ServiceMessage::State { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn status_prints_the_state_as_json_over_the_named_pipe() {
    let service = TestService::start().await;
    let output = tokio::process::Command::new(BIN)
        .args(["status", "--socket"])
        .arg(&service.endpoint.0)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(state["session"]["state"], "signed_out");
}

#[tokio::test]
async fn wrong_protocol_version_gets_an_explicit_incompatible_answer_over_the_pipe() {
    let service = TestService::start().await;
    let hello = format!(
        r#"{{"type":"hello","protocol_version":{},"client_version":"raw"}}"#,
        PROTOCOL_VERSION + 1
    );
    let answers = raw_exchange(&service.endpoint, &frame(hello.as_bytes())).await;
    let [ServiceMessage::Incompatible { message, .. }] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert!(
        message.contains(&(PROTOCOL_VERSION + 1).to_string()),
        "{message}"
    );
    // The refused peer took nothing from the others.
    assert!(connect(&service.endpoint, "wine test").await.is_ok());
}

#[tokio::test]
async fn a_request_before_the_hello_is_a_protocol_error_over_the_pipe() {
    let service = TestService::start().await;
    let answers = raw_exchange(
        &service.endpoint,
        &frame(br#"{"type":"request","id":1,"request":{"kind":"get_state"}}"#),
    )
    .await;
    assert!(
        matches!(answers.as_slice(), [ServiceMessage::ProtocolError { .. }]),
        "{answers:?}"
    );
}

/// A program that created the pipe before the service would receive the app's requests; the
/// service insists on creating the first instance and refuses to run otherwise.
#[tokio::test]
#[cfg_attr(
    windows,
    ignore = "wine 8 ignores FILE_FLAG_FIRST_PIPE_INSTANCE (a second \"first\" instance is \
              created); run with --ignored on Windows"
)]
async fn a_squatter_on_the_pipe_name_keeps_the_service_from_starting() {
    let runtime_dir = unique_runtime_dir();
    let name = runtime_dir.join("ember-tunnel");
    let _squatter = ServerOptions::new()
        .first_pipe_instance(true)
        .create(&name)
        .unwrap();
    // The system itself must refuse a second first instance, or the service cannot notice.
    assert!(
        ServerOptions::new()
            .first_pipe_instance(true)
            .create(&name)
            .is_err(),
        "this system does not enforce FILE_FLAG_FIRST_PIPE_INSTANCE"
    );

    let mut service = TestService::spawn(Path::new(BIN), &runtime_dir);
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the service kept running beside a squatter on its pipe"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(service.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

/// A pipe whose owner is not LocalSystem was created by some user's program posing as the
/// service: the app sends it nothing (not even the hello) and says why.
#[tokio::test]
async fn the_app_refuses_a_pipe_not_owned_by_local_system() {
    let name = unique_runtime_dir().join("ember-tunnel");
    let mut impostor = ServerOptions::new()
        .first_pipe_instance(true)
        .create(&name)
        .unwrap();

    let result = connect(&Endpoint(name), "wine test").await;
    let Err(error) = result else {
        panic!("the app talked to a pipe its test process owns");
    };
    assert!(matches!(error, ConnectError::Impostor { .. }), "{error:?}");
    assert!(error.to_string().contains("LocalSystem"), "{error}");
    // Nothing reached the impostor.
    impostor.connect().await.unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), impostor.read_to_end(&mut received)).await;
    assert!(received.is_empty(), "{received:?}");
}

/// The installed service's pipe name served by a program outside Program Files (anyone can
/// start `ember-tunnel.exe` from their Downloads folder): the app checks the serving process's
/// image through the pipe (GetNamedPipeServerProcessId, QueryFullProcessImageNameW) and
/// refuses it before saying hello.
#[tokio::test]
async fn the_app_refuses_the_installed_pipe_name_served_from_outside_program_files() {
    let _default_pipe = DEFAULT_PIPE.lock().await;
    let service = TestService::start_from(Path::new(BIN), Path::new(r"\\.\pipe")).await;
    assert_eq!(service.endpoint, Endpoint::system_default());

    let error = connect(&service.endpoint, "wine test").await.unwrap_err();
    assert!(matches!(error, ConnectError::Impostor { .. }), "{error:?}");
    assert!(error.to_string().contains("not installed under"), "{error}");
}

/// The installed binary itself, started by a user rather than by the Service Control Manager:
/// its image is under Program Files but it does not run as LocalSystem, so the app refuses it.
/// Under wine this shows the refusal path end to end; that a service which does run as
/// LocalSystem is admitted cannot be shown there (no SCM, no SYSTEM account).
#[tokio::test]
async fn the_app_refuses_the_installed_binary_started_by_a_user() {
    let program_files = PathBuf::from(std::env::var_os("ProgramFiles").unwrap());
    let folder = program_files.join(format!("Ember test {}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let installed = folder.join("ember-tunnel.exe");
    std::fs::copy(BIN, &installed).unwrap();

    let result = {
        let _default_pipe = DEFAULT_PIPE.lock().await;
        let service = TestService::start_from(&installed, Path::new(r"\\.\pipe")).await;
        connect(&service.endpoint, "wine test").await
    };
    let _ = std::fs::remove_dir_all(&folder);
    let error = result.unwrap_err();
    assert!(matches!(error, ConnectError::Impostor { .. }), "{error:?}");
    assert!(
        error.to_string().contains("does not run as LocalSystem"),
        "{error}"
    );
}

/// Tests that serve the installed service's pipe name take turns.
static DEFAULT_PIPE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
