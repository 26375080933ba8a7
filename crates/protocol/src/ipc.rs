//! The tray app ⇄ tunnel service protocol (ARCHITECTURE §5).
//!
//! A connection is a sequence of frames (see [`crate::codec`]), each one JSON message:
//!
//! 1. The app sends [`ClientMessage::Hello`] with its [`PROTOCOL_VERSION`].
//! 2. The service answers [`ServiceMessage::Hello`] followed by the whole [`ViewState`], or
//!    [`ServiceMessage::Incompatible`] and closes — the app shows "update Ember", it never hangs.
//!    A peer the service does not admit gets [`ServiceMessage::Refused`] and is closed.
//! 3. From then on the app sends [`ClientMessage::Request`]s, each with an id it chooses; the
//!    service answers each with exactly one [`ServiceMessage::Response`] carrying the same id
//!    (an export of logs first sends its files as [`ServiceMessage::LogChunk`]s).
//!    Independently, the service sends [`ServiceMessage::State`] whenever the view state
//!    changes (coalesced: the app only ever needs the latest one).
//! 4. When the service stops, it sends [`ServiceMessage::Stopping`] before closing.
//!
//! A frame that does not decode ends that connection with [`ServiceMessage::ProtocolError`];
//! other connections are not affected.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::SecretToken;

/// Bumped on every change that an older peer would misread. Adding an optional field is not
/// such a change; removing or renaming one, or adding a request or event kind, is.
pub const PROTOCOL_VERSION: u32 = 2;

/// The tunnel service's runtime folder on Linux and macOS (macOS has no `/run`). The service
/// creates it and the app looks in it: one constant, so the two cannot drift apart.
#[cfg(target_os = "macos")]
pub const RUNTIME_DIR: &str = "/var/run/ember";
#[cfg(not(target_os = "macos"))]
pub const RUNTIME_DIR: &str = "/run/ember";

/// The socket's name inside the runtime folder.
pub const SOCKET_FILE_NAME: &str = "tunnel.sock";

/// Where the tunnel service listens on Linux and macOS: [`SOCKET_FILE_NAME`] in [`RUNTIME_DIR`].
#[cfg(target_os = "macos")]
pub const SOCKET_PATH: &str = "/var/run/ember/tunnel.sock";
#[cfg(not(target_os = "macos"))]
pub const SOCKET_PATH: &str = "/run/ember/tunnel.sock";

/// Where the tunnel service listens on Windows.
pub const PIPE_NAME: &str = r"\\.\pipe\ember-tunnel";

/// The group whose members may talk to the tunnel service (root always may).
pub const SERVICE_GROUP: &str = "ember";

/// A message from the tray app (or `ember-tunnel status`) to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Hello {
        protocol_version: u32,
        /// For the service's log: which build of the app is talking.
        client_version: String,
    },
    Request {
        id: u64,
        request: Request,
    },
}

/// What the app can ask of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// Answered with [`Reply::State`].
    GetState,
    /// Completes a browser sign-in: the service redeems the one-time `code` from the deep link
    /// with the `verifier` only the app knew, at `portal_url` (the portal the user signed in
    /// to, which must be the one the service is set to), binding the token to this device's
    /// key. Answered with [`Reply::SignedIn`]; the session then starts as after
    /// [`Request::ResumeSession`].
    SignIn {
        portal_url: String,
        code: SecretToken,
        verifier: SecretToken,
    },
    /// Resumes the user's session with a token the app kept. `portal_url` is the portal that
    /// issued the token: the service sends the token there and nowhere else, and refuses with
    /// [`IpcError::WrongPortal`] when that is not the portal the service is set to.
    ResumeSession {
        portal_url: String,
        token: SecretToken,
    },
    SignOut,
    /// Validated by the service, persisted, then reflected in the next [`ViewState`]. Only root
    /// and the service's own user may: anyone else gets [`IpcError::Forbidden`].
    ApplySettings {
        settings: ServiceSettings,
    },
    /// The service sends its log files as [`ServiceMessage::LogChunk`]s, then [`Reply::LogsExported`].
    ExportLogs,
    /// Switches a resource the user may toggle (e.g. the internet resource) on or off.
    SetResourceEnabled {
        resource_id: String,
        enabled: bool,
    },
}

/// A message from the service to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServiceMessage {
    Hello {
        protocol_version: u32,
        service_version: String,
        /// Whether this peer may change the machine-wide [`ServiceSettings`] (root or the
        /// service's own user on Linux and macOS; SYSTEM and Administrators on Windows). The app
        /// shows the settings read-only otherwise.
        may_change_settings: bool,
    },
    /// The app speaks a protocol version this service does not; the connection closes.
    Incompatible {
        service_protocol_version: u32,
        service_version: String,
        message: String,
    },
    /// The peer is not allowed to use the service (not root and not in the `ember` group).
    Refused {
        reason: String,
    },
    /// The last frame could not be decoded; the connection closes.
    ProtocolError {
        message: String,
    },
    Response {
        id: u64,
        result: Result<Reply, IpcError>,
    },
    State {
        state: ViewState,
    },
    /// One piece of a service log file, sent in order while answering [`Request::ExportLogs`].
    LogChunk {
        id: u64,
        /// The file's name inside the service's log folder (no directories).
        file: String,
        /// Standard base64 of the bytes; a file may take several chunks.
        data_base64: String,
    },
    /// The service is shutting down (stop, upgrade, reboot); the connection closes next.
    Stopping {
        reason: String,
    },
}

/// The successful answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Done,
    /// The token a [`Request::SignIn`] yielded, for the app to keep with its portal URL.
    SignedIn {
        token: SecretToken,
    },
    State {
        state: ViewState,
    },
    LogsExported {
        files: u32,
        bytes: u64,
    },
}

/// Why the service did not do what was asked. The app shows `Display` to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum IpcError {
    #[error("{what} is not available in this version of the tunnel service yet")]
    NotAvailableYet { what: String },
    #[error("invalid setting `{field}`: {reason}")]
    InvalidSettings { field: String, reason: String },
    #[error("there is no resource with id `{resource_id}`")]
    UnknownResource { resource_id: String },
    /// The peer may not do this: the machine-wide settings belong to the administrator.
    #[error("only {who} may change {what}")]
    Forbidden { what: String, who: String },
    /// The session's portal is not the portal the service is set to; the token is not sent.
    #[error(
        "the token was issued by {token_portal}, but this computer now uses {portal_url}: sign in again"
    )]
    WrongPortal {
        token_portal: String,
        portal_url: String,
    },
    /// The portal did not accept the sign-in (code used, expired or not matching).
    #[error("the portal refused the sign-in: {message}")]
    SignInRefused { message: String },
    #[error("the tunnel service failed: {message}")]
    Internal { message: String },
}

/// Everything the app shows, sent whole on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ViewState {
    pub session: SessionState,
    /// The TUN interface, once the tunnel is up.
    pub interface: Option<TunnelInterface>,
    pub resources: Vec<ResourceView>,
    pub settings: ServiceSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum SessionState {
    /// `reason` says why, when the user did not ask for it (token revoked, expired, …).
    SignedOut {
        reason: Option<String>,
    },
    ConnectingToPortal,
    /// The portal accepted the token; the TUN device, routes and DNS are being set up.
    RaisingTunnel,
    SignedIn {
        account: String,
        actor: String,
    },
    /// Tunnels keep working; the portal connection is being re-established.
    PortalReconnecting {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct TunnelInterface {
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ResourceView {
    pub id: String,
    pub name: String,
    /// As the user would type it: `10.0.0.0/24`, `db.corp.example`, `*.corp.example`.
    pub address: String,
    pub address_description: Option<String>,
    pub site: String,
    pub state: ResourceState,
    /// A short reason for `broken` or `unreachable` ("all gateways of Berlin are offline").
    pub reason: Option<String>,
    pub path: Option<ConnectionPath>,
    pub rtt_ms: Option<u32>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Only resources the user may switch (the internet resource) carry `Some`.
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ResourceState {
    Unknown,
    Connecting,
    Active,
    Idle,
    Broken,
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ConnectionPath {
    Direct,
    Relayed,
}

/// What the service owns and persists. The app can propose changes; the service validates them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ServiceSettings {
    /// The portal the service trusts, e.g. `https://portal.example.com`.
    pub portal_url: String,
    /// A `tracing` filter directive, e.g. `info` or `info,ember_tunnel=debug`.
    pub log_filter: String,
}

impl ViewState {
    /// The state of a service that has no session.
    pub fn signed_out(settings: ServiceSettings) -> Self {
        Self {
            session: SessionState::SignedOut { reason: None },
            interface: None,
            resources: Vec::new(),
            settings,
        }
    }
}
