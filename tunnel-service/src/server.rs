//! The IPC server: admits peers, does the handshake, then serves each app on its own task.
//!
//! A bad frame, a wrong version or a peer that is not allowed ends that one connection with an
//! explicit message; the accept loop and every other connection carry on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ember_ipc::PeerIdentity;
use ember_ipc::transport::{AccessPolicy, Listener, ServerStream};
use ember_protocol::codec::{FrameError, JsonCodec};
use ember_protocol::ipc::{
    ClientMessage, IpcError, PROTOCOL_VERSION, Reply, Request, ServiceMessage,
};
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::codec::Framed;
use tracing::Instrument as _;

use crate::service::ServiceHandle;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connections get to say goodbye when the service stops.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// More simultaneous apps than this is a runaway client, not a desktop.
const MAX_CONNECTIONS: usize = 64;
/// Raw bytes per log chunk; base64 makes it 4/3 larger, well below the frame limit.
const LOG_CHUNK_LEN: usize = 192 * 1024;

pub const SERVICE_VERSION: &str = env!("CARGO_PKG_VERSION");

type Connection = Framed<ServerStream, JsonCodec<ClientMessage, ServiceMessage>>;

/// What every connection needs to serve its app.
#[derive(Debug)]
pub struct Context {
    pub service: ServiceHandle,
    pub policy: AccessPolicy,
    pub log_dir: PathBuf,
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts connections until `shutdown` turns true, then lets each connection send
/// [`ServiceMessage::Stopping`] before returning.
pub async fn serve(mut listener: Listener, context: Context) {
    let context = Arc::new(context);
    let mut shutdown = context.shutdown.clone();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!("Accepting an IPC connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                next_id += 1;
                let span = tracing::info_span!("ipc", conn = next_id);
                let context = Arc::clone(&context);
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(async move {
                            serve_connection(stream, peer, &context).await;
                            drop(slot);
                        }.instrument(span));
                    }
                    Err(_) => {
                        connections.spawn(async move {
                            refuse(Framed::new(stream, JsonCodec::new()),
                                format!("more than {MAX_CONNECTIONS} connections are open")).await;
                        }.instrument(span));
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
        while let Some(finished) = connections.try_join_next() {
            if let Err(e) = finished
                && e.is_panic()
            {
                tracing::error!("An IPC connection task panicked; the service carries on");
            }
        }
    }

    drop(listener);
    let goodbyes = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(GOODBYE_TIMEOUT, goodbyes)
        .await
        .is_err()
    {
        tracing::warn!("Some apps did not take the goodbye within {GOODBYE_TIMEOUT:?}");
    }
}

async fn serve_connection(
    stream: ServerStream,
    peer: std::io::Result<PeerIdentity>,
    context: &Context,
) {
    let mut connection: Connection = Framed::new(stream, JsonCodec::new());
    let peer = match peer {
        Ok(peer) => peer,
        Err(e) => return refuse(connection, format!("cannot identify the peer: {e}")).await,
    };
    if let Err(reason) = context.policy.check(&peer) {
        tracing::warn!(?peer, "Refused an IPC client: {reason}");
        return refuse(connection, reason).await;
    }
    tracing::debug!(?peer, "IPC client connected");

    let client_version = match tokio::time::timeout(HELLO_TIMEOUT, connection.next()).await {
        Err(_) => {
            return fail(connection, format!("no hello within {HELLO_TIMEOUT:?}")).await;
        }
        Ok(None) => return,
        Ok(Some(Err(e))) => return fail(connection, e.to_string()).await,
        Ok(Some(Ok(ClientMessage::Hello {
            protocol_version,
            client_version,
        }))) => {
            if protocol_version != PROTOCOL_VERSION {
                tracing::warn!(protocol_version, %client_version, "Incompatible IPC client");
                let message = format!(
                    "the app speaks protocol version {protocol_version}, this service speaks \
                     {PROTOCOL_VERSION}: install the same version of the Ember app and service"
                );
                let _ = connection
                    .send(ServiceMessage::Incompatible {
                        service_protocol_version: PROTOCOL_VERSION,
                        service_version: SERVICE_VERSION.into(),
                        message,
                    })
                    .await;
                return;
            }
            client_version
        }
        Ok(Some(Ok(other))) => {
            return fail(
                connection,
                format!("expected a hello, got {}", kind(&other)),
            )
            .await;
        }
    };
    tracing::info!(%client_version, "App connected");

    if let Err(e) = session(&mut connection, context).await {
        tracing::debug!("IPC connection ended: {e}");
    }
}

/// Serves one app after a successful hello, until it leaves, errs, or the service stops.
async fn session(connection: &mut Connection, context: &Context) -> Result<(), SessionEnd> {
    let mut state = context.service.watch_state();
    let mut shutdown = context.shutdown.clone();
    connection
        .send(ServiceMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            service_version: SERVICE_VERSION.into(),
        })
        .await?;
    let current = state.borrow_and_update().clone();
    connection
        .send(ServiceMessage::State { state: current })
        .await?;

    loop {
        tokio::select! {
            frame = connection.next() => match frame {
                None => return Ok(()),
                // An app that quits or crashes resets its connection: that is no bad frame.
                Some(Err(FrameError::Io(e))) => {
                    tracing::debug!("An app went away: {e}");
                    return Ok(());
                }
                Some(Err(e)) => {
                    tracing::warn!("Closing an IPC connection after a bad frame: {e}");
                    connection.send(ServiceMessage::ProtocolError { message: e.to_string() }).await?;
                    return Err(SessionEnd::BadFrame);
                }
                Some(Ok(ClientMessage::Hello { .. })) => {
                    connection.send(ServiceMessage::ProtocolError {
                        message: "hello sent twice".into(),
                    }).await?;
                    return Err(SessionEnd::BadFrame);
                }
                Some(Ok(ClientMessage::Request { id, request: Request::ExportLogs })) => {
                    let result = export_logs(connection, id, &context.log_dir).await?;
                    connection.send(ServiceMessage::Response { id, result }).await?;
                }
                Some(Ok(ClientMessage::Request { id, request })) => {
                    let result = context.service.request(request).await;
                    connection.send(ServiceMessage::Response { id, result }).await?;
                }
            },
            changed = state.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let current = state.borrow_and_update().clone();
                connection.send(ServiceMessage::State { state: current }).await?;
            }
            _ = shutdown.changed() => {
                connection.send(ServiceMessage::Stopping {
                    reason: "the tunnel service is stopping".into(),
                }).await?;
                return Ok(());
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("the app sent a bad frame")]
    BadFrame,
    #[error(transparent)]
    Send(#[from] ember_protocol::codec::FrameError),
}

/// Sends every regular file of the log folder as chunks, oldest name first.
async fn export_logs(
    connection: &mut Connection,
    id: u64,
    log_dir: &std::path::Path,
) -> Result<Result<Reply, IpcError>, SessionEnd> {
    let internal = |e: std::io::Error| IpcError::Internal {
        message: format!("cannot read the service logs in {}: {e}", log_dir.display()),
    };
    let mut names = Vec::new();
    let mut entries = match tokio::fs::read_dir(log_dir).await {
        Ok(entries) => entries,
        Err(e) => return Ok(Err(internal(e))),
    };
    loop {
        match entries.next_entry().await {
            Ok(Some(entry)) => {
                // Only plain files: a symlink planted in the folder must not leak other files.
                if entry.file_type().await.is_ok_and(|t| t.is_file()) {
                    names.push(entry.file_name());
                }
            }
            Ok(None) => break,
            Err(e) => return Ok(Err(internal(e))),
        }
    }
    names.sort();

    let (mut files, mut bytes) = (0u32, 0u64);
    let mut buf = vec![0; LOG_CHUNK_LEN];
    for name in names {
        let mut file = match tokio::fs::File::open(log_dir.join(&name)).await {
            Ok(file) => file,
            Err(e) => return Ok(Err(internal(e))),
        };
        let file_name = name.to_string_lossy().into_owned();
        loop {
            let read = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) => return Ok(Err(internal(e))),
            };
            bytes += read as u64;
            connection
                .send(ServiceMessage::LogChunk {
                    id,
                    file: file_name.clone(),
                    data_base64: base64::engine::general_purpose::STANDARD.encode(&buf[..read]),
                })
                .await?;
        }
        files += 1;
    }
    Ok(Ok(Reply::LogsExported { files, bytes }))
}

async fn refuse(mut connection: Connection, reason: String) {
    let _ = connection.send(ServiceMessage::Refused { reason }).await;
}

async fn fail(mut connection: Connection, message: String) {
    tracing::warn!("Closing an IPC connection: {message}");
    let _ = connection
        .send(ServiceMessage::ProtocolError { message })
        .await;
}

fn kind(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Hello { .. } => "hello",
        ClientMessage::Request { .. } => "request",
    }
}
