#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

//! One JSON file per message kind under `tests/golden/`. A test fails when the encoding of a
//! message changes or when a golden file no longer decodes to the same message, so every wire
//! change is visible in review. After a deliberate change, regenerate with
//! `EMBER_UPDATE_GOLDEN=1 cargo test -p ember-protocol --test golden` and bump
//! `PROTOCOL_VERSION` if older peers would misread the new form.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use ember_protocol::SecretToken;
use ember_protocol::ipc::*;

fn check<T>(name: &str, message: T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    common::check_golden("tests/golden", name, message);
}

fn settings() -> ServiceSettings {
    ServiceSettings {
        portal_url: "https://portal.example.com".into(),
        log_filter: "info".into(),
    }
}

fn signed_in_state() -> ViewState {
    ViewState {
        session: SessionState::SignedIn {
            account: "acme".into(),
            actor: "Ada Lovelace".into(),
        },
        interface: Some(TunnelInterface {
            name: "ember0".into(),
            ipv4: Some(Ipv4Addr::new(100, 64, 0, 7)),
            ipv6: Some(Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 7)),
        }),
        resources: vec![
            ResourceView {
                id: "res_db".into(),
                name: "Database".into(),
                address: "db.corp.example".into(),
                address_description: Some("PostgreSQL primary".into()),
                site: "Berlin".into(),
                state: ResourceState::Active,
                reason: None,
                path: Some(ConnectionPath::Direct),
                rtt_ms: Some(23),
                rx_bytes: 48_213,
                tx_bytes: 9_730,
                enabled: None,
            },
            ResourceView {
                id: "res_internet".into(),
                name: "Internet".into(),
                address: "0.0.0.0/0".into(),
                address_description: None,
                site: "Frankfurt".into(),
                state: ResourceState::Unreachable,
                reason: Some("all gateways of Frankfurt are offline".into()),
                path: None,
                rtt_ms: None,
                rx_bytes: 0,
                tx_bytes: 0,
                enabled: Some(false),
            },
        ],
        settings: settings(),
    }
}

#[test]
fn client_hello() {
    check(
        "client_hello",
        ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: "0.1.0".into(),
        },
    );
}

#[test]
fn request_get_state() {
    check(
        "request_get_state",
        ClientMessage::Request {
            id: 1,
            request: Request::GetState,
        },
    );
}

#[test]
fn request_sign_in() {
    check(
        "request_sign_in",
        ClientMessage::Request {
            id: 2,
            request: Request::SignIn {
                portal_url: "https://portal.example.com".into(),
                code: SecretToken::new("5a".repeat(32)),
                verifier: SecretToken::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            },
        },
    );
}

#[test]
fn response_signed_in() {
    check(
        "response_signed_in",
        ServiceMessage::Response {
            id: 2,
            result: Ok(Reply::SignedIn {
                token: SecretToken::new("c2VjcmV0LXRva2Vu"),
            }),
        },
    );
}

#[test]
fn response_sign_in_refused() {
    check(
        "response_sign_in_refused",
        ServiceMessage::Response {
            id: 2,
            result: Err(IpcError::SignInRefused {
                message: "this sign-in code was used already".into(),
            }),
        },
    );
}

#[test]
fn request_resume_session() {
    check(
        "request_resume_session",
        ClientMessage::Request {
            id: 2,
            request: Request::ResumeSession {
                portal_url: "https://portal.example.com".into(),
                token: SecretToken::new("c2VjcmV0LXRva2Vu"),
            },
        },
    );
}

#[test]
fn request_sign_out() {
    check(
        "request_sign_out",
        ClientMessage::Request {
            id: 3,
            request: Request::SignOut,
        },
    );
}

#[test]
fn request_apply_settings() {
    check(
        "request_apply_settings",
        ClientMessage::Request {
            id: 4,
            request: Request::ApplySettings {
                settings: settings(),
            },
        },
    );
}

#[test]
fn request_export_logs() {
    check(
        "request_export_logs",
        ClientMessage::Request {
            id: 5,
            request: Request::ExportLogs,
        },
    );
}

#[test]
fn request_set_resource_enabled() {
    check(
        "request_set_resource_enabled",
        ClientMessage::Request {
            id: 6,
            request: Request::SetResourceEnabled {
                resource_id: "res_internet".into(),
                enabled: true,
            },
        },
    );
}

#[test]
fn service_hello() {
    check(
        "service_hello",
        ServiceMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            service_version: "0.1.0".into(),
            may_change_settings: false,
        },
    );
}

#[test]
fn service_incompatible() {
    check(
        "service_incompatible",
        ServiceMessage::Incompatible {
            service_protocol_version: PROTOCOL_VERSION,
            service_version: "0.1.0".into(),
            message: "the app speaks protocol version 2, this service speaks 1: update Ember"
                .into(),
        },
    );
}

#[test]
fn service_refused() {
    check(
        "service_refused",
        ServiceMessage::Refused {
            reason: "uid 1001 is neither root nor a member of the group `ember`".into(),
        },
    );
}

#[test]
fn service_protocol_error() {
    check(
        "service_protocol_error",
        ServiceMessage::ProtocolError {
            message: "frame of 2097152 bytes exceeds the maximum of 1048576 bytes".into(),
        },
    );
}

#[test]
fn service_state_signed_out() {
    check(
        "service_state_signed_out",
        ServiceMessage::State {
            state: ViewState::signed_out(settings()),
        },
    );
}

#[test]
fn service_state_signed_in() {
    check(
        "service_state_signed_in",
        ServiceMessage::State {
            state: signed_in_state(),
        },
    );
}

#[test]
fn response_done() {
    check(
        "response_done",
        ServiceMessage::Response {
            id: 3,
            result: Ok(Reply::Done),
        },
    );
}

#[test]
fn response_state() {
    check(
        "response_state",
        ServiceMessage::Response {
            id: 1,
            result: Ok(Reply::State {
                state: ViewState {
                    session: SessionState::PortalReconnecting {
                        reason: "connection reset".into(),
                    },
                    ..signed_in_state()
                },
            }),
        },
    );
}

#[test]
fn response_logs_exported() {
    check(
        "response_logs_exported",
        ServiceMessage::Response {
            id: 5,
            result: Ok(Reply::LogsExported {
                files: 2,
                bytes: 18_342,
            }),
        },
    );
}

#[test]
fn response_error() {
    check(
        "response_error",
        ServiceMessage::Response {
            id: 4,
            result: Err(IpcError::InvalidSettings {
                field: "portal_url".into(),
                reason: "scheme must be https or http".into(),
            }),
        },
    );
}

#[test]
fn response_forbidden() {
    check(
        "response_forbidden",
        ServiceMessage::Response {
            id: 4,
            result: Err(IpcError::Forbidden {
                what: "the portal URL and the log filter".into(),
                who: "root (an administrator)".into(),
            }),
        },
    );
}

#[test]
fn response_wrong_portal() {
    check(
        "response_wrong_portal",
        ServiceMessage::Response {
            id: 2,
            result: Err(IpcError::WrongPortal {
                token_portal: "https://old.example.com".into(),
                portal_url: "https://portal.example.com".into(),
            }),
        },
    );
}

#[test]
fn log_chunk() {
    check(
        "log_chunk",
        ServiceMessage::LogChunk {
            id: 5,
            file: "tunnel.log.2026-11-25".into(),
            data_base64: "aGVsbG8K".into(),
        },
    );
}

#[test]
fn service_stopping() {
    check(
        "service_stopping",
        ServiceMessage::Stopping {
            reason: "the service is stopping".into(),
        },
    );
}
