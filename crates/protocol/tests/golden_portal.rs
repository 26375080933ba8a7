#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

//! One JSON file per portal message kind under `tests/golden/portal/` (see `golden.rs`).
//! Regenerate with `EMBER_UPDATE_GOLDEN=1 cargo test -p ember-protocol --test golden_portal`
//! and bump `PORTAL_PROTOCOL_VERSION` if older peers would misread the new form.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ember_protocol::portal::*;

fn check<T>(name: &str, message: T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    common::check_golden("tests/golden/portal", name, message);
}

fn account() -> AccountInfo {
    AccountInfo {
        id: "acc_5f1c".into(),
        slug: "acme".into(),
        name: "Acme".into(),
    }
}

fn actor() -> ActorInfo {
    ActorInfo {
        id: "usr_91aa".into(),
        name: "Ada Lovelace".into(),
        email: "ada@acme.example".into(),
    }
}

fn site() -> SiteInfo {
    SiteInfo {
        id: "site_0b2e".into(),
        name: "Berlin".into(),
    }
}

fn interface(n: u16) -> Interface {
    Interface {
        ipv4: Ipv4Addr::new(100, 64, 0, n as u8),
        ipv6: Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, n),
    }
}

fn resources() -> Vec<Resource> {
    vec![
        Resource {
            id: "res_db".into(),
            name: "Database".into(),
            address: ResourceAddress::Dns {
                pattern: "*.db.corp.example".into(),
            },
            address_description: Some("PostgreSQL replicas".into()),
            site: site(),
            filters: vec![Filter {
                protocol: FilterProtocol::Tcp,
                ports: Some(PortRange {
                    start: 5432,
                    end: 5432,
                }),
            }],
        },
        Resource {
            id: "res_lan".into(),
            name: "Office LAN".into(),
            address: ResourceAddress::Cidr {
                cidr: "10.20.0.0/16".into(),
            },
            address_description: None,
            site: site(),
            filters: vec![],
        },
        Resource {
            id: "res_printer".into(),
            name: "Printer".into(),
            address: ResourceAddress::Ip {
                ip: IpAddr::V4(Ipv4Addr::new(10, 20, 0, 9)),
            },
            address_description: None,
            site: site(),
            filters: vec![Filter {
                protocol: FilterProtocol::Icmp,
                ports: None,
            }],
        },
        Resource {
            id: "res_internet".into(),
            name: "Internet".into(),
            address: ResourceAddress::Internet,
            address_description: None,
            site: site(),
            filters: vec![],
        },
    ]
}

fn relays() -> Vec<Relay> {
    vec![Relay {
        id: "relay-1".into(),
        urls: vec!["turn:203.0.113.5:3478".into()],
        username: "1764201600:dev_77c0".into(),
        password: "2jfF0V2m0Jk2u1cQ9gJ8nI3cU0A=".into(),
        expires_at: 1_764_201_600,
    }]
}

fn ice(ufrag: &str) -> IceCredentials {
    IceCredentials {
        ufrag: ufrag.into(),
        pwd: format!("{ufrag}-pwd-0123456789abcdef").into(),
    }
}

const KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

#[test]
fn client_hello() {
    check(
        "client_hello",
        ClientMessage::Hello {
            protocol_version: PORTAL_PROTOCOL_VERSION,
            device_id: "3f7a0c52d1e94b8aa1f0c6c2b7d9e410".into(),
            public_key: KEY.into(),
            name: "ada-laptop".into(),
            os: "linux".into(),
            version: "0.1.0".into(),
        },
    );
}

#[test]
fn client_request_access() {
    check(
        "client_request_access",
        ClientMessage::RequestAccess {
            request_id: 7,
            resource_id: "res_db".into(),
            domain: Some("eu.db.corp.example".into()),
            proxy_ips: proxy_ips(),
            new_connection: true,
        },
    );
}

#[test]
fn client_ice_candidates() {
    check(
        "client_ice_candidates",
        ClientMessage::IceCandidates {
            gateway_id: "gw_1".into(),
            candidates: vec!["candidate:1 1 udp 2130706431 192.0.2.10 51820 typ host".into()],
        },
    );
}

#[test]
fn client_heartbeat() {
    check("client_heartbeat", ClientMessage::Heartbeat);
}

#[test]
fn to_client_init() {
    check(
        "to_client_init",
        PortalToClient::Init {
            account: account(),
            actor: actor(),
            interface: interface(7),
            resources: resources(),
            relays: relays(),
            heartbeat_interval_ms: 10_000,
        },
    );
}

#[test]
fn to_client_resources_updated() {
    check(
        "to_client_resources_updated",
        PortalToClient::ResourcesUpdated {
            resources: resources()[..1].to_vec(),
        },
    );
}

#[test]
fn to_client_relays_updated() {
    check(
        "to_client_relays_updated",
        PortalToClient::RelaysUpdated { relays: relays() },
    );
}

#[test]
fn to_client_access_granted() {
    check(
        "to_client_access_granted",
        PortalToClient::AccessGranted {
            request_id: 7,
            resource_id: "res_db".into(),
            domain: Some("eu.db.corp.example".into()),
            gateway: PeerInfo {
                id: "gw_1".into(),
                public_key: KEY.into(),
                ipv4: Ipv4Addr::new(100, 64, 0, 2),
                ipv6: Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 2),
            },
            preshared_key: "q8Qe5n0bJ3QmYV3x9lq2S0n2bB0mO5f4Q0xw6Y1H2cA=".into(),
            local_ice: ice("cli1"),
            remote_ice: ice("gw1x"),
        },
    );
}

#[test]
fn to_client_access_denied() {
    check(
        "to_client_access_denied",
        PortalToClient::AccessDenied {
            request_id: 8,
            resource_id: "res_lan".into(),
            reason: DenialReason::Offline,
            message: "all gateways of Berlin are offline".into(),
        },
    );
}

#[test]
fn to_client_access_denied_rate_limited() {
    check(
        "to_client_access_denied_rate_limited",
        PortalToClient::AccessDenied {
            request_id: 9,
            resource_id: "res_lan".into(),
            reason: DenialReason::RateLimited,
            message: "too many access requests from this device; ask again in a moment".into(),
        },
    );
}

#[test]
fn to_client_ice_candidates() {
    check(
        "to_client_ice_candidates",
        PortalToClient::IceCandidates {
            gateway_id: "gw_1".into(),
            candidates: vec!["candidate:2 1 udp 1694498815 198.51.100.7 40000 typ srflx".into()],
        },
    );
}

#[test]
fn to_client_gateway_offline() {
    check(
        "to_client_gateway_offline",
        PortalToClient::GatewayOffline {
            gateway_id: "gw_1".into(),
            resource_ids: vec!["res_db".into()],
        },
    );
}

#[test]
fn to_client_heartbeat() {
    check("to_client_heartbeat", PortalToClient::Heartbeat);
}

#[test]
fn to_client_signed_out() {
    check(
        "to_client_signed_out",
        PortalToClient::SignedOut {
            reason: SignOutReason::Revoked,
            message: "this device's token was revoked".into(),
        },
    );
}

#[test]
fn to_client_error() {
    check(
        "to_client_error",
        PortalToClient::Error {
            code: ErrorCode::UnknownMessageType,
            message: "unknown message type `launch_rockets`".into(),
        },
    );
}

#[test]
fn gateway_hello() {
    check(
        "gateway_hello",
        GatewayMessage::Hello {
            protocol_version: PORTAL_PROTOCOL_VERSION,
            public_key: KEY.into(),
            name: "berlin-1".into(),
            version: "0.1.0".into(),
        },
    );
}

#[test]
fn gateway_health() {
    check(
        "gateway_health",
        GatewayMessage::Health {
            connections: 12,
            cpu_percent: Some(35),
        },
    );
}

#[test]
fn gateway_ice_candidates() {
    check(
        "gateway_ice_candidates",
        GatewayMessage::IceCandidates {
            client_id: "dev_77c0".into(),
            candidates: vec!["candidate:1 1 udp 2130706431 203.0.113.9 51820 typ host".into()],
        },
    );
}

#[test]
fn gateway_heartbeat() {
    check("gateway_heartbeat", GatewayMessage::Heartbeat);
}

#[test]
fn to_gateway_init() {
    check(
        "to_gateway_init",
        PortalToGateway::Init {
            gateway_id: "gw_1".into(),
            account: account(),
            site: site(),
            interface: interface(2),
            relays: relays(),
            heartbeat_interval_ms: 10_000,
        },
    );
}

#[test]
fn to_gateway_relays_updated() {
    check(
        "to_gateway_relays_updated",
        PortalToGateway::RelaysUpdated { relays: relays() },
    );
}

#[test]
fn to_gateway_grant() {
    check(
        "to_gateway_grant",
        PortalToGateway::Grant {
            client: ClientPeer {
                id: "dev_77c0".into(),
                public_key: KEY.into(),
                ipv4: Ipv4Addr::new(100, 64, 0, 7),
                ipv6: Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 7),
                actor: actor(),
            },
            resource: resources()[0].clone(),
            domain: Some("eu.db.corp.example".into()),
            proxy_ips: proxy_ips(),
            preshared_key: "q8Qe5n0bJ3QmYV3x9lq2S0n2bB0mO5f4Q0xw6Y1H2cA=".into(),
            local_ice: ice("gw1x"),
            remote_ice: ice("cli1"),
            expires_at: 1_764_806_400,
        },
    );
}

#[test]
fn to_gateway_revoke() {
    check(
        "to_gateway_revoke",
        PortalToGateway::Revoke {
            client_id: "dev_77c0".into(),
            resource_ids: vec![],
        },
    );
}

#[test]
fn to_gateway_ice_candidates() {
    check(
        "to_gateway_ice_candidates",
        PortalToGateway::IceCandidates {
            client_id: "dev_77c0".into(),
            candidates: vec!["candidate:3 1 udp 16777215 203.0.113.5 49200 typ relay".into()],
        },
    );
}

#[test]
fn to_gateway_heartbeat() {
    check("to_gateway_heartbeat", PortalToGateway::Heartbeat);
}

#[test]
fn to_gateway_error() {
    check(
        "to_gateway_error",
        PortalToGateway::Error {
            code: ErrorCode::WrongTokenKind,
            message: "this is a client token; gateways need a gateway token".into(),
        },
    );
}

#[test]
fn error_body() {
    check(
        "error_body",
        ErrorBody {
            code: ErrorCode::TokenExpired,
            message: "the token has been revoked".into(),
        },
    );
}

fn proxy_ips() -> Vec<std::net::IpAddr> {
    vec![
        Ipv4Addr::new(100, 96, 0, 1).into(),
        Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0x8000, 0, 0, 0, 1).into(),
    ]
}

#[test]
fn request_access_from_a_client_without_proxy_ips_still_decodes() {
    let message: ClientMessage =
        serde_json::from_str(r#"{"type":"request_access","request_id":1,"resource_id":"res_web"}"#)
            .unwrap();
    assert_eq!(
        message,
        ClientMessage::RequestAccess {
            request_id: 1,
            resource_id: "res_web".into(),
            domain: None,
            proxy_ips: Vec::new(),
            new_connection: false,
        }
    );
}

/// `decode` refuses types missing from `TYPES`: every message kind must be listed.
#[test]
fn every_golden_message_decodes_with_its_side_type_list() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/portal");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let decoded = if name.starts_with("to_client_") {
            decode::<PortalToClient>(&text, PortalToClient::TYPES).map(|_| ())
        } else if name.starts_with("to_gateway_") {
            decode::<PortalToGateway>(&text, PortalToGateway::TYPES).map(|_| ())
        } else if name.starts_with("client_") {
            decode::<ClientMessage>(&text, ClientMessage::TYPES).map(|_| ())
        } else if name.starts_with("gateway_") {
            decode::<GatewayMessage>(&text, GatewayMessage::TYPES).map(|_| ())
        } else {
            continue;
        };
        assert_eq!(decoded, Ok(()), "{name}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} golden messages found");
}

#[test]
fn sign_in_redeem_request() {
    check(
        "sign_in_redeem_request",
        ember_protocol::sign_in::RedeemRequest {
            code: ember_protocol::SecretToken::new("5a".repeat(32)),
            verifier: ember_protocol::SecretToken::new(
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            ),
            public_key: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".into(),
        },
    );
}

#[test]
fn sign_in_redeem_response() {
    check(
        "sign_in_redeem_response",
        ember_protocol::sign_in::RedeemResponse {
            token: ember_protocol::SecretToken::new("c2VjcmV0LXRva2Vu"),
            expires_at: 1_796_000_000,
        },
    );
}
