//! The IPC server: admits peers, does the handshake, then serves each app on its own task.
//!
//! A bad frame, a wrong version or a peer that is not allowed ends that one connection with an
//! explicit message; the accept loop and every other connection carry on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
use tokio::sync::watch;
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
/// What one unprivileged user may hold, so one user cannot take every slot and lock the others
/// (and root) out. A desktop session needs one or two (the app, `ember-tunnel status`).
const MAX_CONNECTIONS_PER_USER: usize = 16;
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
    let slots = Slots::default();
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
                let owner = peer.as_ref().ok().and_then(|peer| limited_user(&context.policy, peer));
                match slots.take(owner) {
                    Ok(slot) => {
                        connections.spawn(async move {
                            serve_connection(stream, peer, &context).await;
                            drop(slot);
                        }.instrument(span));
                    }
                    Err(reason) => {
                        connections.spawn(async move {
                            refuse(Framed::new(stream, JsonCodec::new()), reason).await;
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
    let may_change_settings = context.policy.may_change_settings(&peer);

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

    if let Err(e) = session(&mut connection, context, may_change_settings).await {
        tracing::debug!("IPC connection ended: {e}");
    }
}

/// Serves one app after a successful hello, until it leaves, errs, or the service stops.
async fn session(
    connection: &mut Connection,
    context: &Context,
    may_change_settings: bool,
) -> Result<(), SessionEnd> {
    let mut state = context.service.watch_state();
    let mut shutdown = context.shutdown.clone();
    connection
        .send(ServiceMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            service_version: SERVICE_VERSION.into(),
            may_change_settings,
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
                Some(Ok(ClientMessage::Request { id, request: Request::ApplySettings { .. } }))
                    if !may_change_settings =>
                {
                    tracing::warn!("Refused a settings change from a user who may not make it");
                    let result = Err(IpcError::Forbidden {
                        what: "the portal URL and the log filter".into(),
                        who: context.policy.settings_admin(),
                    });
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

/// The uid whose connections count against [`MAX_CONNECTIONS_PER_USER`]: every Unix user but
/// root and the service's own. Windows peers count only against the total.
fn limited_user(policy: &AccessPolicy, peer: &PeerIdentity) -> Option<u32> {
    match peer {
        PeerIdentity::Unix { uid, .. } if !policy.may_change_settings(peer) => Some(*uid),
        _ => None,
    }
}

/// The open connections, in all and per limited user.
#[derive(Debug, Default, Clone)]
struct Slots(Arc<Mutex<SlotCounts>>);

#[derive(Debug, Default)]
struct SlotCounts {
    total: usize,
    per_user: HashMap<u32, usize>,
}

/// One taken slot; dropping it gives the slot back.
#[derive(Debug)]
struct Slot {
    slots: Slots,
    user: Option<u32>,
}

impl Slots {
    fn take(&self, user: Option<u32>) -> Result<Slot, String> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.total >= MAX_CONNECTIONS {
            return Err(format!("more than {MAX_CONNECTIONS} connections are open"));
        }
        if let Some(uid) = user {
            let held = counts.per_user.entry(uid).or_default();
            if *held >= MAX_CONNECTIONS_PER_USER {
                return Err(format!(
                    "uid {uid} already holds {MAX_CONNECTIONS_PER_USER} connections"
                ));
            }
            *held += 1;
        }
        counts.total += 1;
        Ok(Slot {
            slots: self.clone(),
            user,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .slots
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(uid) = self.user
            && let Some(held) = counts.per_user.get_mut(&uid)
        {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.per_user.remove(&uid);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: AccessPolicy = AccessPolicy {
        service_uid: 0,
        allowed_gid: Some(990),
    };

    fn member(uid: u32) -> PeerIdentity {
        PeerIdentity::Unix {
            uid,
            pid: Some(1),
            groups: vec![990],
        }
    }

    #[test]
    fn one_user_cannot_hold_every_connection_slot() {
        let slots = Slots::default();
        let attacker = limited_user(&POLICY, &member(1001));
        let held: Vec<Slot> = (0..MAX_CONNECTIONS_PER_USER)
            .map(|_| slots.take(attacker).unwrap())
            .collect();
        let refused = slots.take(attacker).unwrap_err();
        assert!(refused.contains("uid 1001"), "{refused}");

        // Another group member and root still get in.
        let _other = slots.take(limited_user(&POLICY, &member(1002))).unwrap();
        let root = limited_user(&POLICY, &member(0));
        assert_eq!(root, None);
        let _root = slots.take(root).unwrap();

        // A slot given back can be taken again.
        drop(held);
        let _again = slots.take(attacker).unwrap();
    }

    #[test]
    fn the_total_still_bounds_privileged_peers() {
        let slots = Slots::default();
        let held: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|_| slots.take(None).unwrap())
            .collect();
        assert!(slots.take(None).is_err());
        drop(held);
        assert!(slots.take(None).is_ok());
    }
}
