//! The client and gateway WebSocket APIs (see `ember_protocol::portal` for the protocol).

mod access;
mod gateway;

use gateway::run_gateway;

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ember_protocol::portal::{
    self, ClientMessage, ErrorBody, ErrorCode, GatewayMessage, MAX_MESSAGE_BYTES,
    PORTAL_PROTOCOL_VERSION, PortalToClient, PortalToGateway,
};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::access::AccessRequest;
use crate::hub::{CLIENT_QUEUE, ClientEntry, GATEWAY_QUEUE, GatewayEntry, Inbox, Outbound, encode};
use crate::outbox::outbox;
use crate::server::Shared;
use crate::store::{DeviceHello, TokenKind, TokenRecord, now_unix};

/// Frames above this are refused by the WebSocket layer itself; up to it, the portal answers
/// with a `message_too_large` error before closing.
const TRANSPORT_MAX_FRAME: usize = 1024 * 1024;
const MAX_FIELD_CHARS: usize = 128;
const MAX_CANDIDATES: usize = 32;
const MAX_CANDIDATE_CHARS: usize = 512;

/// WebSocket close code for a policy violation (RFC 6455 §7.4.1).
const CLOSE_POLICY: u16 = 1008;

pub async fn client(
    State(state): State<Shared>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let token = match authenticate(&state, &headers, TokenKind::Client).await {
        Ok(token) => token,
        Err(refusal) => return refusal,
    };
    let Some(user_id) = token.user_id.clone() else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "token has no user",
        );
    };
    let snapshot = state
        .snapshot_knowing(|snapshot| snapshot.users.contains_key(&user_id))
        .await;
    if snapshot.users.get(&user_id).is_none_or(|u| u.disabled) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::TokenExpired,
            "this user is disabled",
        );
    }
    limits(upgrade).on_upgrade(move |socket| async move {
        ClientConnection::run(state, socket, token, user_id).await;
    })
}

pub async fn gateway(
    State(state): State<Shared>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let token = match authenticate(&state, &headers, TokenKind::Gateway).await {
        Ok(token) => token,
        Err(refusal) => return refusal,
    };
    let Some(gateway_id) = token.gateway_id.clone() else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "token has no gateway",
        );
    };
    let snapshot = state
        .snapshot_knowing(|snapshot| snapshot.gateways.contains_key(&gateway_id))
        .await;
    let Some(record) = snapshot.gateways.get(&gateway_id).cloned() else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "this gateway was deleted",
        );
    };
    limits(upgrade).on_upgrade(move |socket| async move {
        run_gateway(state, socket, token, record).await;
    })
}

fn limits(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    // Small buffers: most connections are idle, and memory per device is a goal.
    upgrade
        .max_message_size(TRANSPORT_MAX_FRAME)
        .max_frame_size(TRANSPORT_MAX_FRAME)
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn authenticate(
    state: &Shared,
    headers: &HeaderMap,
    expected: TokenKind,
) -> Result<TokenRecord, Response> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing `Authorization: Bearer <token>`",
        ));
    };
    if token.len() != 64 {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "unknown token",
        ));
    }
    let record = match state.store.find_token(token).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "unknown token",
            ));
        }
        Err(e) => {
            warn!(error = %e, "token look-up failed");
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal,
                "the portal cannot read its database",
            ));
        }
    };
    if record.kind != expected {
        let message = match (expected, record.kind) {
            (_, TokenKind::Admin) => "this is an admin API token; it opens no tunnel",
            (TokenKind::Client, _) => "this is a gateway token; clients need a client token",
            _ => "this is a client token; gateways need a gateway token",
        };
        return Err(refuse(
            StatusCode::FORBIDDEN,
            ErrorCode::WrongTokenKind,
            message,
        ));
    }
    if record.revoked_at.is_some() {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::TokenExpired,
            "the token has been revoked",
        ));
    }
    if record.expires_at.is_some_and(|e| e <= now_unix()) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::TokenExpired,
            "the token has expired",
        ));
    }
    Ok(record)
}

fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            code,
            message: message.to_owned(),
        }),
    )
        .into_response()
}

/// What the receive side of a connection produced.
enum Incoming {
    Text(String),
    /// Closed, or a transport error; the connection ends.
    Gone,
    /// A frame the transport refused (e.g. above its own maximum).
    Broken(String),
    Other,
}

async fn receive(socket: &mut WebSocket) -> Incoming {
    match socket.recv().await {
        Some(Ok(Message::Text(text))) => Incoming::Text(text.to_string()),
        Some(Ok(Message::Binary(_))) => Incoming::Text(String::from("binary frame")),
        Some(Ok(Message::Close(_))) | None => Incoming::Gone,
        Some(Ok(_)) => Incoming::Other,
        Some(Err(e)) => Incoming::Broken(e.to_string()),
    }
}

async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn close_with(socket: &mut WebSocket, last: String) {
    let _ = socket.send(Message::Text(last.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CLOSE_POLICY,
            reason: "".into(),
        })))
        .await;
}

fn error_for_client(code: ErrorCode, message: impl Into<String>) -> String {
    encode(&PortalToClient::Error {
        code,
        message: message.into(),
    })
}

fn error_for_gateway(code: ErrorCode, message: impl Into<String>) -> String {
    encode(&PortalToGateway::Error {
        code,
        message: message.into(),
    })
}

/// Validates hello fields shared by both APIs.
fn check_hello(
    protocol_version: u32,
    public_key: &str,
    fields: &[(&str, &str)],
) -> Result<(), (ErrorCode, String)> {
    if protocol_version != PORTAL_PROTOCOL_VERSION {
        return Err((
            ErrorCode::IncompatibleVersion,
            format!(
                "this portal speaks protocol version {PORTAL_PROTOCOL_VERSION}, not {protocol_version}: update Ember"
            ),
        ));
    }
    let key_ok = public_key.parse::<ember_protocol::WireGuardKey>().is_ok();
    if !key_ok {
        return Err((
            ErrorCode::InvalidField,
            "`public_key` must be standard base64 of 32 bytes".into(),
        ));
    }
    for (name, value) in fields {
        if value.is_empty()
            || value.chars().count() > MAX_FIELD_CHARS
            || value.chars().any(char::is_control)
        {
            return Err((
                ErrorCode::InvalidField,
                format!("`{name}` must be 1 to {MAX_FIELD_CHARS} printable characters"),
            ));
        }
    }
    Ok(())
}

fn check_candidates(candidates: &[String]) -> Result<(), String> {
    if candidates.len() > MAX_CANDIDATES
        || candidates
            .iter()
            .any(|c| c.len() > MAX_CANDIDATE_CHARS || c.chars().any(char::is_control))
    {
        return Err(format!(
            "at most {MAX_CANDIDATES} candidates of at most {MAX_CANDIDATE_CHARS} printable characters"
        ));
    }
    Ok(())
}

/// Waits for the first text frame within `limit`.
async fn first_message(socket: &mut WebSocket, limit: Duration) -> Option<Incoming> {
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, receive(socket)).await {
            Err(_) => return None,
            Ok(Incoming::Other) => continue,
            Ok(incoming) => return Some(incoming),
        }
    }
}

// -------------------------------------------------------------------------------------------
// Clients

struct ClientConnection {
    state: Shared,
    device_id: String,
    session: u64,
    user_id: String,
    account_id: String,
    token: TokenRecord,
}

impl ClientConnection {
    async fn run(state: Shared, mut socket: WebSocket, token: TokenRecord, user_id: String) {
        let heartbeat = state.heartbeat_interval();
        let hello = match first_message(&mut socket, heartbeat * 3).await {
            None => {
                return close_with(
                    &mut socket,
                    error_for_client(ErrorCode::Timeout, "no hello"),
                )
                .await;
            }
            Some(Incoming::Text(text)) => {
                portal::decode::<ClientMessage>(&text, ClientMessage::TYPES)
            }
            Some(_) => return,
        };
        let (device_key, public_key, name, os, version) = match hello {
            Ok(ClientMessage::Hello {
                protocol_version,
                device_id,
                public_key,
                name,
                os,
                version,
            }) => {
                if let Err((code, message)) = check_hello(
                    protocol_version,
                    &public_key,
                    &[
                        ("device_id", &device_id),
                        ("name", &name),
                        ("os", &os),
                        ("version", &version),
                    ],
                ) {
                    return close_with(&mut socket, error_for_client(code, message)).await;
                }
                // A token from a sign-in works only for the device key it was redeemed with: a
                // token copied off one machine is worth nothing on another.
                if let Some(bound) = &token.device_public_key
                    && *bound != public_key
                {
                    warn!(token = %token.id, "refused a token presented with another device key");
                    return close_with(
                        &mut socket,
                        error_for_client(
                            ErrorCode::Unauthorized,
                            "this token was issued to another device: sign in again",
                        ),
                    )
                    .await;
                }
                (device_id, public_key, name, os, version)
            }
            Ok(_) => {
                return close_with(
                    &mut socket,
                    error_for_client(
                        ErrorCode::HelloExpected,
                        "the first message must be `hello`",
                    ),
                )
                .await;
            }
            Err(e) => {
                return close_with(&mut socket, error_for_client(e.code(), e.to_string())).await;
            }
        };
        let account_id = token.account_id.clone();
        let device = state
            .store
            .upsert_device(&DeviceHello {
                account_id: &account_id,
                user_id: &user_id,
                device_key: &device_key,
                name: &name,
                os: &os,
                version: &version,
                public_key: &public_key,
            })
            .await;
        let (device_id, interface) = match device {
            Ok(device) => device,
            Err(e) => {
                warn!(error = %e, "cannot record a device");
                return close_with(
                    &mut socket,
                    error_for_client(ErrorCode::Internal, "the portal cannot store this device"),
                )
                .await;
            }
        };
        let snapshot = state.snapshot();
        let (Some(account), Some(user)) = (
            snapshot.accounts.get(&account_id),
            snapshot.users.get(&user_id),
        ) else {
            return close_with(
                &mut socket,
                error_for_client(ErrorCode::Unauthorized, "unknown account or user"),
            )
            .await;
        };
        let resources = snapshot.visible_resources(&user_id);
        let init = encode(&PortalToClient::Init {
            account: account.clone(),
            actor: user.actor(),
            interface,
            resources: resources.clone(),
            relays: state.relays_for(&device_id),
            heartbeat_interval_ms: heartbeat.as_millis() as u64,
        });
        let (tx, rx) = outbox(
            CLIENT_QUEUE,
            error_for_client(
                ErrorCode::Internal,
                "this device fell behind the portal's messages; reconnect",
            ),
        );
        let session = state.with_hub(|hub| {
            let session = hub.next_session();
            hub.add_client(ClientEntry {
                session,
                device_id: device_id.clone(),
                user_id: user_id.clone(),
                account_id: account_id.clone(),
                token_id: token.id.clone(),
                expires_at: token.expires_at,
                public_key,
                interface,
                tx,
                resources,
            });
            session
        });
        info!(device = %device_id, "client connected");
        let connection = ClientConnection {
            state: state.clone(),
            device_id,
            session,
            user_id,
            account_id,
            token,
        };
        if send_text(&mut socket, init).await {
            connection.serve(&mut socket, rx).await;
        }
        state.with_hub(|hub| {
            hub.remove_client(&connection.device_id, connection.session, now_unix())
        });
        info!(device = %connection.device_id, "client disconnected");
    }

    async fn serve(&self, socket: &mut WebSocket, mut rx: Inbox) {
        let heartbeat = self.state.heartbeat_interval();
        let mut ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        let refresh = self
            .state
            .relay_refresh_interval()
            .unwrap_or(Duration::from_secs(86_400 * 365));
        let mut relay_refresh = tokio::time::interval_at(Instant::now() + refresh, refresh);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                incoming = receive(socket) => {
                    last_heard = Instant::now();
                    match incoming {
                        Incoming::Text(text) => {
                            if !self.handle(socket, &text).await {
                                return;
                            }
                        }
                        Incoming::Other => {}
                        Incoming::Gone => return,
                        Incoming::Broken(e) => {
                            debug!(error = %e, "client connection broke");
                            return close_with(socket, error_for_client(ErrorCode::MessageTooLarge, e)).await;
                        }
                    }
                }
                outbound = rx.recv() => match outbound {
                    Some(Outbound::Message(text)) => if !send_text(socket, text).await { return },
                    Some(Outbound::Close(text)) => return close_with(socket, text).await,
                    // The hub dropped this connection (replaced).
                    None => return,
                },
                _ = ticks.tick() => {
                    if last_heard.elapsed() > heartbeat * 3 {
                        return close_with(socket, error_for_client(ErrorCode::Timeout, "no message for three heartbeat intervals")).await;
                    }
                    if !send_text(socket, encode(&PortalToClient::Heartbeat)).await { return }
                }
                _ = relay_refresh.tick() => {
                    let relays = self.state.relays_for(&self.device_id);
                    if !send_text(socket, encode(&PortalToClient::RelaysUpdated { relays })).await { return }
                }
            }
        }
    }

    /// Handles one frame; false ends the connection.
    async fn handle(&self, socket: &mut WebSocket, text: &str) -> bool {
        let message = match portal::decode::<ClientMessage>(text, ClientMessage::TYPES) {
            Ok(message) => message,
            Err(e @ portal::DecodeError::UnknownType(_)) => {
                return send_text(socket, error_for_client(e.code(), e.to_string())).await;
            }
            Err(e) => {
                close_with(socket, error_for_client(e.code(), e.to_string())).await;
                return false;
            }
        };
        let reply = match message {
            ClientMessage::Heartbeat => return true,
            ClientMessage::Hello { .. } => {
                close_with(
                    socket,
                    error_for_client(ErrorCode::HelloExpected, "`hello` was already sent"),
                )
                .await;
                return false;
            }
            ClientMessage::RequestAccess {
                request_id,
                resource_id,
                domain,
                proxy_ips,
                new_connection,
            } => self.request_access(AccessRequest {
                request_id,
                resource_id,
                domain,
                proxy_ips,
                new_connection,
            }),
            ClientMessage::IceCandidates {
                gateway_id,
                candidates,
            } => {
                if let Err(message) = check_candidates(&candidates) {
                    error_for_client(ErrorCode::InvalidField, message)
                } else {
                    let forwarded = self.state.with_hub(|hub| {
                        if !hub.has_grant(&self.device_id, &gateway_id) {
                            return false;
                        }
                        hub.gateway(&gateway_id).is_some_and(|g| {
                            g.tx.send(Outbound::Message(encode(&PortalToGateway::IceCandidates {
                                client_id: self.device_id.clone(),
                                candidates,
                            })))
                        })
                    });
                    if forwarded {
                        return true;
                    }
                    error_for_client(
                        ErrorCode::NoSuchPeer,
                        format!("no grant with gateway `{gateway_id}`"),
                    )
                }
            }
        };
        send_text(socket, reply).await
    }
}

#[allow(dead_code)]
const _: () = assert!(MAX_MESSAGE_BYTES < TRANSPORT_MAX_FRAME);
