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
    let mut connection = Framed::new(stream, JsonCodec::new());
    let handshake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut connection, client_version),
    )
    .await
    .map_err(|_| ConnectError::Timeout)??;
    Ok((connection, handshake))
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
    let service_version = match first {
        ServiceMessage::Hello {
            service_version, ..
        } => service_version,
        other => return Err(refusal(other)),
    };
    match next(connection).await? {
        ServiceMessage::State { state } => Ok(Handshake {
            service_version,
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
