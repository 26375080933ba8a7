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
pub const PROTOCOL_VERSION: u32 = 1;

/// Where the tunnel service listens on Linux and macOS.
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
    /// Hands the service the token the user got from the portal.
    SignIn {
        token: SecretToken,
    },
    SignOut,
    /// Validated by the service, persisted, then reflected in the next [`ViewState`].
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
    State { state: ViewState },
    LogsExported { files: u32, bytes: u64 },
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
