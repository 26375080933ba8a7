//! The app side: connect to the service and complete the hello handshake.

use std::io;
use std::time::Duration;

use ember_protocol::codec::{FrameError, JsonCodec};
use ember_protocol::ipc::{ClientMessage, PROTOCOL_VERSION, ServiceMessage, ViewState};
use futures::{SinkExt as _, StreamExt as _};
use tokio_util::codec::Framed;

use crate::transport::{self, Endpoint, Stream};

/// A connection after a successful handshake: send [`ClientMessage`]s, receive [`ServiceMessage`]s.
pub type Connection = Framed<Stream, JsonCodec<ServiceMessage, ClientMessage>>;

/// How long the service may take to answer the hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the tunnel service is not running (nothing listens on {endpoint}: {source})")]
    NotRunning {
        endpoint: Endpoint,
        source: io::Error,
    },
    #[error(
        "no permission to reach the tunnel service at {endpoint}: add your user to the group \
         `ember` and log out and back in"
    )]
    PermissionDenied { endpoint: Endpoint },
    /// The socket answers, but the process behind it is neither root nor this user: a planted
    /// socket (e.g. through `EMBER_TUNNEL_SOCKET` or a swapped runtime folder) that would
    /// collect the token. Nothing is sent to it.
    #[error(
        "the process listening on {endpoint} runs as uid {uid}, not as root: it is not Ember's \
         tunnel service, so nothing was sent to it"
    )]
    NotTheService { endpoint: Endpoint, uid: u32 },
    #[error("the tunnel service refused this connection: {reason}")]
    Refused { reason: String },
    #[error("this app and the tunnel service ({service_version}) are incompatible: {message}")]
    Incompatible {
        service_protocol_version: u32,
        service_version: String,
        message: String,
    },
    #[error("the tunnel service closed the connection during the handshake")]
    Closed,
    #[error("the tunnel service did not answer within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("the tunnel service sent an unexpected message during the handshake: {0}")]
    Unexpected(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// What the service said when the connection opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub service_version: String,
    /// Whether this user may change the machine-wide settings (see [`ServiceMessage::Hello`]).
    pub may_change_settings: bool,
    pub state: ViewState,
}

/// Connects, sends the hello, and waits for the service's hello and first state.
pub async fn connect(
    endpoint: &Endpoint,
    client_version: &str,
) -> Result<(Connection, Handshake), ConnectError> {
    let stream = transport::connect(endpoint).await.map_err(|source| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            ConnectError::PermissionDenied {
                endpoint: endpoint.clone(),
            }
        } else {
            ConnectError::NotRunning {
                endpoint: endpoint.clone(),
                source,
            }
        }
    })?;
    check_the_service(endpoint, &stream)?;
    let mut connection = Framed::new(stream, JsonCodec::new());
    let handshake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut connection, client_version),
    )
    .await
    .map_err(|_| ConnectError::Timeout)??;
    Ok((connection, handshake))
}

/// The service runs as root (or, in development and tests, as this very user); any other
/// peer is an impostor. On Windows `transport::connect` checks the pipe's owner instead.
#[cfg(unix)]
fn check_the_service(endpoint: &Endpoint, stream: &Stream) -> Result<(), ConnectError> {
    let own_uid = nix::unistd::geteuid().as_raw();
    let uid = match transport::peer_identity(stream) {
        Ok(crate::PeerIdentity::Unix { uid, .. }) => uid,
        Ok(crate::PeerIdentity::Windows { .. }) => return Ok(()),
        Err(source) => {
            return Err(ConnectError::NotRunning {
                endpoint: endpoint.clone(),
                source,
            });
        }
    };
    if uid == 0 || uid == own_uid {
        return Ok(());
    }
    Err(ConnectError::NotTheService {
        endpoint: endpoint.clone(),
        uid,
    })
}

#[cfg(not(unix))]
fn check_the_service(_endpoint: &Endpoint, _stream: &Stream) -> Result<(), ConnectError> {
    Ok(())
}

async fn handshake(
    connection: &mut Connection,
    client_version: &str,
) -> Result<Handshake, ConnectError> {
    let sent = connection
        .send(ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: client_version.to_owned(),
        })
        .await;
    // A service that refuses a peer says why and closes without reading, so the hello may fail
    // to send while the reason is already waiting to be read.
    let first = match (next(connection).await, sent) {
        (Ok(message), _) => message,
        (Err(_), Err(send_error)) => return Err(send_error.into()),
        (Err(e), Ok(())) => return Err(e),
    };
    let (service_version, may_change_settings) = match first {
        ServiceMessage::Hello {
            service_version,
            may_change_settings,
            ..
        } => (service_version, may_change_settings),
        other => return Err(refusal(other)),
    };
    match next(connection).await? {
        ServiceMessage::State { state } => Ok(Handshake {
            service_version,
            may_change_settings,
            state,
        }),
        other => Err(refusal(other)),
    }
}

async fn next(connection: &mut Connection) -> Result<ServiceMessage, ConnectError> {
    match connection.next().await {
        Some(message) => Ok(message?),
        None => Err(ConnectError::Closed),
    }
}

fn refusal(message: ServiceMessage) -> ConnectError {
    match message {
        ServiceMessage::Refused { reason } => ConnectError::Refused { reason },
        ServiceMessage::Incompatible {
            service_protocol_version,
            service_version,
            message,
        } => ConnectError::Incompatible {
            service_protocol_version,
            service_version,
            message,
        },
        ServiceMessage::ProtocolError { message } => ConnectError::Unexpected(message),
        other => ConnectError::Unexpected(format!("{other:?}")),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;

    /// Another local user plants a socket where the app looks (`EMBER_TUNNEL_SOCKET`, a swapped
    /// runtime folder) to collect the token: the app must not even say hello to it.
    #[tokio::test]
    async fn a_socket_another_user_listens_on_is_not_the_service() {
        if !nix::unistd::geteuid().is_root() {
            ember_testbed::skip("needs root to listen as another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("tunnel.sock");
        let script = format!(
            "import socket,os,time\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\n\
             os.chmod({:?},0o777)\ns.listen(1)\nc,_=s.accept()\ntime.sleep(5)\n",
            path.display().to_string(),
            path.display().to_string()
        );
        let mut impostor = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .uid(4242)
            .gid(4242)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let result = connect(&Endpoint(path), "test").await;
        let _ = impostor.kill();
        let _ = impostor.wait();
        match result {
            Err(ConnectError::NotTheService { uid, .. }) => assert_eq!(uid, 4242),
            other => panic!("expected NotTheService, got {other:?}"),
        }
    }
}
