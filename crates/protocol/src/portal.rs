//! The portal ⇄ client and portal ⇄ gateway protocol (ARCHITECTURE §4, §7).
//!
//! Both are WebSockets carrying one JSON object per text frame, tagged by `type`:
//!
//! - client: `GET /api/client` with `Authorization: Bearer <client token>`;
//! - gateway: `GET /api/gateway` with `Authorization: Bearer <gateway token>`.
//!
//! A token the portal does not accept is refused before the upgrade with an HTTP status and a
//! JSON [`ErrorBody`]. After the upgrade:
//!
//! 1. The peer sends its hello ([`ClientMessage::Hello`], [`GatewayMessage::Hello`]) with
//!    [`PORTAL_PROTOCOL_VERSION`]. The portal answers with `init` (interface addresses,
//!    resources or site, relays with fresh credentials) or with an `error` and closes.
//! 2. Then, in any order: access requests and grants, ICE candidates relayed through the portal,
//!    live updates (`resources_updated`, `relays_updated` before the credentials expire,
//!    `gateway_offline`), and `heartbeat`s both ways every `heartbeat_interval_ms`. A side that
//!    hears nothing for three intervals considers the other one gone.
//! 3. A revoked or expired token gets [`PortalToClient::SignedOut`], then the close.
//!
//! A frame larger than [`MAX_MESSAGE_BYTES`], one that is not JSON or does not decode, gets an
//! `error` and the connection closes. An unknown `type` gets an `error` with
//! [`ErrorCode::UnknownMessageType`] and the connection stays open, so a newer peer can probe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{IcePassword, PresharedKey, RelayPassword};

/// Bumped on every change that an older peer would misread (see `ipc::PROTOCOL_VERSION`).
pub const PORTAL_PROTOCOL_VERSION: u32 = 2;

/// The largest frame either side accepts; an `init` with 1,000 resources is about 200 KiB.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// WebSocket paths served by the portal.
pub const CLIENT_API_PATH: &str = "/api/client";
pub const GATEWAY_API_PATH: &str = "/api/gateway";

// ---------------------------------------------------------------------------------------------
// Client ⇄ portal

/// From a client (the tunnel service) to the portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Hello {
        protocol_version: u32,
        /// The service's stable random device id (or a hash of it); the key for stable
        /// tunnel addresses.
        device_id: String,
        /// The device's WireGuard public key, standard base64 of 32 bytes.
        public_key: String,
        name: String,
        os: String,
        version: String,
    },
    /// Answered with [`PortalToClient::AccessGranted`] or [`PortalToClient::AccessDenied`]
    /// carrying the same `request_id`.
    RequestAccess {
        request_id: u64,
        resource_id: String,
        /// For DNS resources: the name the application asked for (must match the pattern).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
        /// For DNS resources: the proxy IPs the client's stub resolver gave `domain`; the
        /// gateway translates them to the addresses it resolves.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proxy_ips: Vec<IpAddr>,
        /// The client's connection to the site's gateway failed: the portal issues fresh ICE
        /// credentials and preshared key for the pair, so both ends start over.
        #[serde(default, skip_serializing_if = "is_false")]
        new_connection: bool,
    },
    /// Trickled ICE candidates (SDP `candidate:` attribute values) for the gateway of a grant.
    IceCandidates {
        gateway_id: String,
        candidates: Vec<String>,
    },
    Heartbeat,
}

impl ClientMessage {
    pub const TYPES: &'static [&'static str] =
        &["hello", "request_access", "ice_candidates", "heartbeat"];
}

/// From the portal to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PortalToClient {
    Init {
        account: AccountInfo,
        actor: ActorInfo,
        interface: Interface,
        resources: Vec<Resource>,
        relays: Vec<Relay>,
        heartbeat_interval_ms: u64,
    },
    /// The whole list, whenever the set of visible resources or one of them changes.
    ResourcesUpdated {
        resources: Vec<Resource>,
    },
    /// Fresh relay credentials, sent before the previous ones expire.
    RelaysUpdated {
        relays: Vec<Relay>,
    },
    AccessGranted {
        request_id: u64,
        resource_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
        gateway: PeerInfo,
        /// Standard base64 of 32 random bytes, the same on both sides.
        preshared_key: PresharedKey,
        /// The client's own ICE credentials for this connection.
        local_ice: IceCredentials,
        /// The gateway's.
        remote_ice: IceCredentials,
    },
    AccessDenied {
        request_id: u64,
        resource_id: String,
        reason: DenialReason,
        message: String,
    },
    IceCandidates {
        gateway_id: String,
        candidates: Vec<String>,
    },
    /// A gateway this client has grants with went away; request access again to get another.
    GatewayOffline {
        gateway_id: String,
        resource_ids: Vec<String>,
    },
    Heartbeat,
    /// The token was revoked or expired; the connection closes next.
    SignedOut {
        reason: SignOutReason,
        message: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl PortalToClient {
    pub const TYPES: &'static [&'static str] = &[
        "init",
        "resources_updated",
        "relays_updated",
        "access_granted",
        "access_denied",
        "ice_candidates",
        "gateway_offline",
        "heartbeat",
        "signed_out",
        "error",
    ];
}

// ---------------------------------------------------------------------------------------------
// Gateway ⇄ portal

/// From a gateway to the portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayMessage {
    Hello {
        protocol_version: u32,
        public_key: String,
        name: String,
        version: String,
    },
    /// Reported periodically; the portal spreads new grants by it.
    Health {
        /// Connections (clients) the gateway currently serves.
        connections: u32,
        /// 0–100, when the gateway measures it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_percent: Option<u8>,
    },
    IceCandidates {
        client_id: String,
        candidates: Vec<String>,
    },
    Heartbeat,
}

impl GatewayMessage {
    pub const TYPES: &'static [&'static str] = &["hello", "health", "ice_candidates", "heartbeat"];
}

/// From the portal to a gateway.
#[allow(clippy::large_enum_variant)] // built once per send and serialised at once
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PortalToGateway {
    Init {
        gateway_id: String,
        account: AccountInfo,
        site: SiteInfo,
        interface: Interface,
        relays: Vec<Relay>,
        heartbeat_interval_ms: u64,
    },
    RelaysUpdated {
        relays: Vec<Relay>,
    },
    /// Allow `client` to reach `resource` (and nothing else) until `expires_at`.
    Grant {
        client: ClientPeer,
        resource: Resource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
        /// The client's proxy IPs for `domain` (see [`ClientMessage::RequestAccess`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proxy_ips: Vec<IpAddr>,
        /// The same for every grant of one client on this gateway while the pair has grants,
        /// so a second resource does not disturb the connection.
        preshared_key: PresharedKey,
        local_ice: IceCredentials,
        remote_ice: IceCredentials,
        /// Unix seconds: the client's token expiry.
        expires_at: u64,
    },
    /// Withdraw grants: the client signed out, its token was revoked, or a policy changed.
    /// An empty `resource_ids` withdraws every grant of that client.
    Revoke {
        client_id: String,
        resource_ids: Vec<String>,
    },
    IceCandidates {
        client_id: String,
        candidates: Vec<String>,
    },
    Heartbeat,
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl PortalToGateway {
    pub const TYPES: &'static [&'static str] = &[
        "init",
        "relays_updated",
        "grant",
        "revoke",
        "ice_candidates",
        "heartbeat",
        "error",
    ];
}

// ---------------------------------------------------------------------------------------------
// Shared parts

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub id: String,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorInfo {
    pub id: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    pub id: String,
    pub name: String,
}

/// Tunnel addresses, from 100.64.0.0/11 and fd00:2021:1111::/107, stable per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    pub name: String,
    pub address: ResourceAddress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_description: Option<String>,
    pub site: SiteInfo,
    /// Empty: every protocol and port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResourceAddress {
    /// `10.0.0.0/24`, `fd00::/64`.
    Cidr {
        cidr: String,
    },
    Ip {
        ip: IpAddr,
    },
    /// `db.corp.example`, `*.corp.example` (any name below), `?.corp.example` (one label).
    Dns {
        pattern: String,
    },
    /// All of 0.0.0.0/0 and ::/0.
    Internet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub protocol: FilterProtocol,
    /// Inclusive; absent means every port (always absent for ICMP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterProtocol {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

/// A TURN relay (coturn with `use-auth-secret`) and REST credentials for it: `username` is
/// `"<unix expiry>:<id>"`, `password` is `base64(HMAC-SHA1(secret, username))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    pub id: String,
    /// `turn:host:port` URLs (RFC 7065), also used as STUN servers.
    pub urls: Vec<String>,
    pub username: String,
    pub password: RelayPassword,
    /// Unix seconds.
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: IcePassword,
}

/// The other end of a grant, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: String,
    pub public_key: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

/// The other end of a grant, as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientPeer {
    pub id: String,
    pub public_key: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// For the gateway's log: who is behind this device.
    pub actor: ActorInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    /// No such resource in this account.
    NotFound,
    /// No policy gives this user the resource.
    Forbidden,
    /// Every gateway of the resource's site is offline.
    Offline,
    /// The `domain` does not match the resource's pattern, or a DNS resource came without one.
    InvalidDomain,
    /// This device asked for access too often; ask again in a moment (new in version 2).
    RateLimited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignOutReason {
    Revoked,
    Expired,
    /// The same device connected again; this older connection is replaced.
    Replaced,
}

/// Machine-readable error codes, in WebSocket `error` messages and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No `Authorization: Bearer` header, or the token is unknown.
    Unauthorized,
    /// The token was revoked or has expired.
    TokenExpired,
    /// A gateway token on the client API or the other way round.
    WrongTokenKind,
    IncompatibleVersion,
    /// The first message was not a hello, or a second hello came.
    HelloExpected,
    MessageTooLarge,
    /// Not JSON, or JSON that does not decode to a message of a known type.
    Malformed,
    UnknownMessageType,
    /// A field is well-formed JSON but out of range (a bad key, an overlong name, …).
    InvalidField,
    /// ICE candidates for a peer without a grant.
    NoSuchPeer,
    /// The peer sent nothing for three heartbeat intervals.
    Timeout,
    Internal,
}

/// The JSON body of an HTTP error answer (e.g. a refused upgrade).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the maximum of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::MessageTooLarge,
            Self::UnknownType(_) => ErrorCode::UnknownMessageType,
            Self::Malformed(_) => ErrorCode::Malformed,
        }
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Decodes one text frame, telling an unknown `type` (of an otherwise sound message) apart from
/// a malformed one. `known_types` is the message enum's `TYPES`.
pub fn decode<T: DeserializeOwned>(text: &str, known_types: &[&str]) -> Result<T, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge { size: text.len() });
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(DecodeError::Malformed(
            "expected an object with a string field `type`".into(),
        ));
    };
    if !known_types.contains(&kind) {
        // By characters: cutting a string at a byte count can split a character.
        let shown: String = kind.chars().take(64).collect();
        return Err(DecodeError::UnknownType(shown));
    }
    serde_json::from_value(value).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// Host and port of a relay URL: `turn:` or `stun:` (RFC 7065), port 3478 when absent, IPv6
/// hosts in brackets. `None` for other schemes (`turns:`), a bad port, or TCP transport — the
/// engine speaks TURN over UDP only.
pub fn relay_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("turn:")
        .or_else(|| url.strip_prefix("stun:"))?;
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    if query.is_some_and(|q| {
        q.split('&')
            .any(|p| p.eq_ignore_ascii_case("transport=tcp"))
    }) {
        return None;
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 3478,
            None => return None,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, 3478),
        }
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Whether `name` is a host name: dot-separated labels of 1 to 63 letters, digits and hyphens,
/// not starting or ending with a hyphen, at most 253 characters (a trailing dot aside). A
/// name with anything else — an escaped dot (`a\.b`), a space, a NUL — names a different
/// thing to each program that reads it, so it is never granted nor resolved.
pub fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether `name` is matched by a DNS resource `pattern`, case-insensitively and ignoring a
/// trailing dot:
///
/// - `db.corp.example` matches only itself;
/// - `*.corp.example` matches any name one or more labels below `corp.example` (not the
///   suffix itself); `*` is allowed only as the first label;
/// - `?` stands for exactly one label, anywhere: `?.corp.example` matches `a.corp.example` but
///   not `a.b.corp.example`.
///
/// Only a host name ([`is_host_name`]) is ever matched.
pub fn dns_pattern_matches(pattern: &str, name: &str) -> bool {
    if !is_host_name(name) {
        return false;
    }
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || pattern.is_empty() {
        return false;
    }
    let pattern_labels: Vec<&str> = pattern.split('.').collect();
    let name_labels: Vec<&str> = name.split('.').collect();
    if name_labels.iter().any(|l| l.is_empty()) {
        return false;
    }
    let (wildcard, fixed) = match pattern_labels.split_first() {
        Some((&"*", rest)) => (true, rest),
        _ => (false, pattern_labels.as_slice()),
    };
    if wildcard {
        if name_labels.len() <= fixed.len() {
            return false;
        }
    } else if name_labels.len() != fixed.len() {
        return false;
    }
    let tail = &name_labels[name_labels.len() - fixed.len()..];
    fixed.iter().zip(tail).all(|(p, n)| *p == "?" || p == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_escaped_dots_or_odd_bytes_is_not_a_host_name_and_matches_nothing() {
        for name in ["web.corp.example", "WEB-1.corp.example.", "a.b-c.d9"] {
            assert!(is_host_name(name), "{name}");
        }
        let long_label = format!("{}.corp.example", "a".repeat(64));
        let long_name = format!("{}corp.example", "abcdefghi.".repeat(25));
        for name in [
            "a\\.b.corp.example",
            "a b.corp.example",
            "a\0.corp.example",
            "a_b.corp.example",
            "-a.corp.example",
            "a-.corp.example",
            "a..corp.example",
            ".",
            "",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_host_name(name), "{name:?}");
            assert!(!dns_pattern_matches("*.corp.example", name), "{name:?}");
        }
    }

    #[test]
    fn exact_dns_pattern_matches_only_the_name_itself() {
        assert!(dns_pattern_matches("db.corp.example", "db.corp.example"));
        assert!(dns_pattern_matches("db.corp.example", "DB.Corp.Example."));
        assert!(!dns_pattern_matches("db.corp.example", "x.db.corp.example"));
        assert!(!dns_pattern_matches("db.corp.example", "corp.example"));
    }

    #[test]
    fn star_matches_any_depth_below_the_suffix_but_not_the_suffix() {
        assert!(dns_pattern_matches("*.corp.example", "a.corp.example"));
        assert!(dns_pattern_matches("*.corp.example", "a.b.c.corp.example"));
        assert!(!dns_pattern_matches("*.corp.example", "corp.example"));
        assert!(!dns_pattern_matches(
            "*.corp.example",
            "a.corp.example.evil"
        ));
        assert!(!dns_pattern_matches("*.corp.example", "acorp.example"));
    }

    #[test]
    fn question_mark_matches_exactly_one_label() {
        assert!(dns_pattern_matches("?.corp.example", "a.corp.example"));
        assert!(!dns_pattern_matches("?.corp.example", "a.b.corp.example"));
        assert!(!dns_pattern_matches("?.corp.example", "corp.example"));
        assert!(dns_pattern_matches(
            "db.?.corp.example",
            "db.eu.corp.example"
        ));
        assert!(!dns_pattern_matches(
            "db.?.corp.example",
            "web.eu.corp.example"
        ));
    }

    #[test]
    fn relay_urls_give_host_and_port() {
        let cases = [
            ("turn:203.0.113.5:3478", Some(("203.0.113.5", 3478))),
            ("turn:relay.example", Some(("relay.example", 3478))),
            (
                "turn:relay.example?transport=udp",
                Some(("relay.example", 3478)),
            ),
            (
                "turn:[2001:db8::5]:5349?transport=udp",
                Some(("2001:db8::5", 5349)),
            ),
            ("stun:[2001:db8::1]:5349", Some(("2001:db8::1", 5349))),
            ("turn:relay.example:3478?transport=tcp", None),
            ("turns:relay.example:5349", None),
            ("http://x", None),
            ("turn::3478", None),
            ("turn:", None),
            ("turn:host:notaport", None),
        ];
        for (url, expected) in cases {
            assert_eq!(
                relay_host_port(url),
                expected.map(|(h, p)| (h.to_owned(), p)),
                "{url}"
            );
        }
    }

    #[test]
    fn empty_labels_never_match() {
        assert!(!dns_pattern_matches("*.corp.example", "a..corp.example"));
        assert!(!dns_pattern_matches("*.corp.example", ""));
    }

    #[test]
    fn decode_tells_unknown_types_from_malformed_messages() {
        let unknown = decode::<ClientMessage>(r#"{"type":"launch_rockets"}"#, ClientMessage::TYPES);
        assert_eq!(
            unknown,
            Err(DecodeError::UnknownType("launch_rockets".into()))
        );
        let malformed =
            decode::<ClientMessage>(r#"{"type":"request_access"}"#, ClientMessage::TYPES);
        assert!(
            matches!(malformed, Err(DecodeError::Malformed(_))),
            "{malformed:?}"
        );
        let long_multibyte = format!(r#"{{"type":"{}"}}"#, "é".repeat(100));
        assert_eq!(
            decode::<ClientMessage>(&long_multibyte, ClientMessage::TYPES),
            Err(DecodeError::UnknownType("é".repeat(64)))
        );
        let not_json = decode::<ClientMessage>("{{{", ClientMessage::TYPES);
        assert!(matches!(not_json, Err(DecodeError::Malformed(_))));
        let big = format!(
            r#"{{"type":"heartbeat","x":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(
            decode::<ClientMessage>(&big, ClientMessage::TYPES),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(
            decode::<ClientMessage>(r#"{"type":"heartbeat"}"#, ClientMessage::TYPES),
            Ok(ClientMessage::Heartbeat)
        );
    }
}
