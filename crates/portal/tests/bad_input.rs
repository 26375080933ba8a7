#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

//! Hostile and broken peers get a clear error, lose only their own connection, and store
//! nothing; everyone else keeps being served.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// A healthy client that must keep working while others misbehave.
async fn bystander(portal: &TestPortal) -> Peer {
    let (token, _) = portal.client_token("bob@acme.example").await;
    Peer::client(portal.addr, &token, "bystander").await.0
}

async fn still_served(peer: &mut Peer) {
    peer.send(json!({"type": "request_access", "request_id": 42, "resource_id": "res_nope"}))
        .await;
    let answer = peer.recv().await;
    assert_eq!(
        (answer["type"].as_str(), answer["request_id"].as_u64()),
        (Some("access_denied"), Some(42))
    );
}

#[tokio::test]
async fn malformed_and_oversized_messages_get_an_error_and_close_only_that_connection() {
    let portal = TestPortal::sqlite().await;
    let mut other = bystander(&portal).await;
    let (token, _) = portal.client_token("ada@acme.example").await;
    let big = format!(r#"{{"type":"heartbeat","pad":"{}"}}"#, "x".repeat(600_000));
    let huge = "y".repeat(2 * 1024 * 1024);
    let cases = [
        ("{not json".to_owned(), Some("malformed")),
        (
            r#"{"type":"request_access","request_id":"one"}"#.to_owned(),
            Some("malformed"),
        ),
        (r#"[1,2,3]"#.to_owned(), Some("malformed")),
        (big, Some("message_too_large")),
        (huge, None),
    ];
    for (text, code) in cases {
        let (mut client, _) = Peer::client(portal.addr, &token, "device-1").await;
        client.send_text(text).await;
        if let Some(code) = code {
            let error = client.recv().await;
            assert_eq!(error["type"], "error");
            assert_eq!(error["code"], code, "{error}");
        }
        assert!(
            client.closed_within(Duration::from_secs(2)).await,
            "connection stays open after {code:?}"
        );
    }
    still_served(&mut other).await;
}

#[tokio::test]
async fn an_unknown_message_type_gets_an_error_and_the_connection_stays_usable() {
    let portal = TestPortal::sqlite().await;
    let (mut client, _) = portal.ada("device-1").await;
    client
        .send(json!({"type": "launch_rockets", "count": 3}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["code"], "unknown_message_type");
    still_served(&mut client).await;
}

#[tokio::test]
async fn a_bad_hello_is_refused_and_no_device_is_stored() {
    let portal = TestPortal::sqlite().await;
    let (token, _) = portal.client_token("ada@acme.example").await;
    let cases = [
        (json!({"type": "heartbeat"}), "hello_expected"),
        (
            json!({"type": "hello", "protocol_version": 99, "device_id": "d", "public_key": KEY, "name": "n", "os": "linux", "version": "1"}),
            "incompatible_version",
        ),
        (
            json!({"type": "hello", "protocol_version": PORTAL_PROTOCOL_VERSION, "device_id": "d", "public_key": "c2hvcnQ=", "name": "n", "os": "linux", "version": "1"}),
            "invalid_field",
        ),
        (
            json!({"type": "hello", "protocol_version": PORTAL_PROTOCOL_VERSION, "device_id": "d".repeat(500), "public_key": KEY, "name": "n", "os": "linux", "version": "1"}),
            "invalid_field",
        ),
        (
            json!({"type": "hello", "protocol_version": PORTAL_PROTOCOL_VERSION, "device_id": "d", "public_key": KEY, "name": "", "os": "linux", "version": "1"}),
            "invalid_field",
        ),
    ];
    for (hello, code) in cases {
        let mut client = connect(portal.addr, "/api/client", &token).await.unwrap();
        client.send(hello).await;
        let error = client.recv().await;
        assert_eq!(error["code"], code, "{error}");
        assert!(client.closed_within(Duration::from_secs(2)).await);
    }
    // The first real device still gets the first tunnel address: nothing was allocated.
    let (_client, init) = Peer::client(portal.addr, &token, "device-1").await;
    assert_eq!(init["interface"]["ipv4"], "100.64.0.2");
}

#[tokio::test]
async fn a_second_hello_closes_the_connection() {
    let portal = TestPortal::sqlite().await;
    let (mut client, _) = portal.ada("device-1").await;
    client.send(client_hello("device-1")).await;
    assert_eq!(client.recv().await["code"], "hello_expected");
    assert!(client.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn tokens_are_checked_before_the_upgrade_with_a_typed_json_error() {
    let portal = TestPortal::sqlite().await;
    let gateway_token = portal.gateway_token("berlin-1").await;
    let (client_token, _) = portal.client_token("ada@acme.example").await;
    let cases = [
        (
            "/api/client",
            gateway_token.as_str(),
            403,
            "wrong_token_kind",
        ),
        (
            "/api/gateway",
            client_token.as_str(),
            403,
            "wrong_token_kind",
        ),
        ("/api/client", "", 401, "unauthorized"),
        ("/api/client", &"0".repeat(64), 401, "unauthorized"),
        ("/api/gateway", "not-a-token", 401, "unauthorized"),
    ];
    for (path, token, status, code) in cases {
        let (got_status, body) = connect(portal.addr, path, token)
            .await
            .err()
            .expect("refused");
        assert_eq!(
            (got_status, body["code"].as_str()),
            (status, Some(code)),
            "{path} {body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn ice_candidates_for_a_peer_without_a_grant_are_refused_and_not_forwarded() {
    let portal = TestPortal::sqlite().await;
    let (mut gateway, init) = portal.berlin_gateway().await;
    let gateway_id = init["gateway_id"].as_str().unwrap().to_owned();
    let (mut client, _) = portal.ada("device-1").await;
    client.send(json!({"type": "ice_candidates", "gateway_id": gateway_id, "candidates": ["candidate:1"]})).await;
    assert_eq!(client.recv().await["code"], "no_such_peer");
    client.send(json!({"type": "ice_candidates", "gateway_id": gateway_id, "candidates": vec!["c"; 100]})).await;
    assert_eq!(client.recv().await["code"], "invalid_field");
    gateway.send(json!({"type": "ice_candidates", "client_id": "dev_someone", "candidates": ["candidate:1"]})).await;
    assert_eq!(gateway.recv().await["code"], "no_such_peer");
    assert!(
        gateway.try_recv(Duration::from_millis(300)).await.is_none(),
        "nothing was forwarded"
    );
}
