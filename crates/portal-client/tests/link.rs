//! The link against the real portal on loopback (and one portal that falls silent).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ember_portal::store::TokenKind;
use ember_portal::{Config, Portal, admin, crypto};
use ember_portal_client::{
    Backoff, ClientSide, ConnectError, GatewaySide, LinkError, PortalLink, connect,
};
use ember_protocol::SecretToken;
use ember_protocol::portal::{
    ClientMessage, DenialReason, ErrorCode, GatewayMessage, PORTAL_PROTOCOL_VERSION,
    PortalToClient, PortalToGateway,
};
use futures::{SinkExt as _, StreamExt as _};

const KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

struct TestPortal {
    portal: Option<Portal>,
    url: String,
    _dir: tempfile::TempDir,
}

impl TestPortal {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
database = "sqlite://{db}"
heartbeat_interval_ms = 200
change_poll_interval_ms = 100

[[accounts]]
slug = "acme"
name = "Acme"
sites = ["Berlin"]
users = [{{ email = "ada@acme.example", name = "Ada" }}]
groups = [{{ name = "all", members = ["ada@acme.example"] }}]
resources = [{{ name = "LAN", site = "Berlin", address = "10.20.0.0/16" }}]
policies = [{{ group = "all", resource = "LAN" }}]
gateways = [{{ site = "Berlin", name = "berlin-1" }}]
"#,
            db = dir.path().join("portal.db").display()
        );
        let portal = Portal::start(Config::parse(&config).unwrap())
            .await
            .unwrap();
        Self {
            url: format!("http://{}", portal.addr),
            portal: Some(portal),
            _dir: dir,
        }
    }

    fn store(&self) -> &ember_portal::Store {
        &self.portal.as_ref().unwrap().state.store
    }

    async fn client_token(&self) -> (SecretToken, String) {
        let account = self.store().account_id("acme").await.unwrap();
        let user = self
            .store()
            .user_id(&account, "ada@acme.example")
            .await
            .unwrap();
        let token = crypto::random_hex32();
        let expires = ember_portal::store::now_unix() + 3600;
        let id = self
            .store()
            .insert_token(TokenKind::Client, &account, &user, &token, Some(expires))
            .await
            .unwrap();
        (SecretToken::new(token), id)
    }

    async fn gateway_token(&self) -> SecretToken {
        let account = self.store().account_id("acme").await.unwrap();
        let site = self.store().site_id(&account, "Berlin").await.unwrap();
        SecretToken::new(
            admin::create_gateway_token(self.store(), &account, &site, "berlin-1")
                .await
                .unwrap(),
        )
    }
}

fn client_hello() -> ClientMessage {
    ClientMessage::Hello {
        protocol_version: PORTAL_PROTOCOL_VERSION,
        device_id: "device-1".into(),
        public_key: KEY.into(),
        name: "laptop".into(),
        os: "linux".into(),
        version: "0.1.0".into(),
    }
}

async fn request(link: &mut PortalLink<ClientSide>, resource_id: &str) -> PortalToClient {
    link.send(ClientMessage::RequestAccess {
        request_id: 1,
        resource_id: resource_id.into(),
        domain: None,
        proxy_ips: Vec::new(),
        new_connection: false,
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), link.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_link_outlives_many_heartbeat_intervals_and_carries_requests() {
    let portal = TestPortal::start().await;
    let (token, _) = portal.client_token().await;
    let (mut link, init) = connect::<ClientSide>(&portal.url, &token, client_hello())
        .await
        .unwrap();
    let PortalToClient::Init { resources, .. } = init else {
        panic!("{init:?}");
    };
    // Five intervals of 200 ms: without our heartbeats the portal would have dropped us.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answer = request(&mut link, &resources[0].id).await;
    assert!(
        matches!(
            answer,
            PortalToClient::AccessDenied {
                reason: DenialReason::Offline,
                ..
            }
        ),
        "no gateway is online: {answer:?}"
    );
}

#[tokio::test]
async fn a_gateway_gets_its_init_and_the_grants() {
    let portal = TestPortal::start().await;
    let gateway_token = portal.gateway_token().await;
    let (mut gateway, init) = connect::<GatewaySide>(
        &portal.url,
        &gateway_token,
        GatewayMessage::Hello {
            protocol_version: PORTAL_PROTOCOL_VERSION,
            public_key: KEY.into(),
            name: "berlin-1".into(),
            version: "0.1.0".into(),
        },
    )
    .await
    .unwrap();
    assert!(matches!(init, PortalToGateway::Init { .. }), "{init:?}");
    let (token, _) = portal.client_token().await;
    let (mut client, init) = connect::<ClientSide>(&portal.url, &token, client_hello())
        .await
        .unwrap();
    let PortalToClient::Init { resources, .. } = init else {
        panic!("{init:?}");
    };
    let answer = request(&mut client, &resources[0].id).await;
    assert!(
        matches!(answer, PortalToClient::AccessGranted { .. }),
        "{answer:?}"
    );
    let grant = tokio::time::timeout(Duration::from_secs(5), gateway.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(grant, PortalToGateway::Grant { .. }), "{grant:?}");
}

#[tokio::test]
async fn an_unknown_token_is_a_permanent_rejection() {
    let portal = TestPortal::start().await;
    let error = connect::<ClientSide>(
        &portal.url,
        &SecretToken::new("0".repeat(64)),
        client_hello(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Rejected {
                code: ErrorCode::Unauthorized,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_permanent());
}

#[tokio::test]
async fn a_portal_that_is_not_there_is_worth_retrying() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = connect::<ClientSide>(
        &format!("http://{addr}"),
        &SecretToken::new("token"),
        client_hello(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ConnectError::Unreachable(_)), "{error:?}");
    assert!(!error.is_permanent());
}

#[tokio::test]
async fn revoking_the_token_signs_the_link_out_then_ends_it() {
    let portal = TestPortal::start().await;
    let (token, id) = portal.client_token().await;
    let (mut link, _) = connect::<ClientSide>(&portal.url, &token, client_hello())
        .await
        .unwrap();
    portal.store().revoke_token(&id).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), link.recv())
        .await
        .unwrap();
    assert!(
        matches!(message, Ok(PortalToClient::SignedOut { .. })),
        "{message:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), link.recv())
        .await
        .unwrap();
    assert!(matches!(end, Err(LinkError::Closed(_))), "{end:?}");
    let again = connect::<ClientSide>(&portal.url, &token, client_hello())
        .await
        .unwrap_err();
    assert!(again.is_permanent(), "{again:?}");
}

#[tokio::test]
async fn a_portal_that_stops_is_noticed() {
    let mut portal = TestPortal::start().await;
    let (token, _) = portal.client_token().await;
    let (mut link, _) = connect::<ClientSide>(&portal.url, &token, client_hello())
        .await
        .unwrap();
    portal.portal.take().unwrap().shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match link.recv().await {
                // The portal says goodbye first.
                Ok(PortalToClient::Error { .. }) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(end.is_err(), "{end:?}");
}

/// A portal on loopback that answers the hello with an `init` naming `heartbeat_interval_ms`
/// and then says nothing at all, not even heartbeats.
async fn silent_portal(heartbeat_interval_ms: u64) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        let _hello = socket.next().await;
        let init = format!(
            r#"{{"type":"init","account":{{"id":"a","slug":"a","name":"A"}},
            "actor":{{"id":"u","name":"U","email":"u@example.com"}},
            "interface":{{"ipv4":"100.64.0.2","ipv6":"fd00:2021:1111::2"}},
            "resources":[],"relays":[],"heartbeat_interval_ms":{heartbeat_interval_ms}}}"#
        );
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(init))
            .await
            .unwrap();
        // Read (and ignore) whatever comes, without ever answering.
        while socket.next().await.is_some() {}
    });
    (format!("http://{addr}"), server)
}

/// A portal that answers the hello and then says nothing at all: the link gives up after
/// three intervals instead of waiting forever.
#[tokio::test]
async fn a_silent_portal_times_out_after_three_heartbeat_intervals() {
    let (url, server) = silent_portal(100).await;
    let (mut link, _) = connect::<ClientSide>(&url, &SecretToken::new("token"), client_hello())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), link.recv())
        .await
        .unwrap();
    assert!(matches!(end, Err(LinkError::Timeout(_))), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.abort();
}

/// A portal that names a 1 ms interval would make the link send a thousand heartbeats a
/// second (and give up on it after 3 ms of silence); it gets 100 ms.
#[tokio::test]
async fn a_tiny_heartbeat_interval_is_clamped() {
    let (url, server) = silent_portal(1).await;
    let (mut link, _) = connect::<ClientSide>(&url, &SecretToken::new("token"), client_hello())
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), link.recv()).await;
    assert!(
        matches!(end, Ok(Err(LinkError::Timeout(limit))) if limit == Duration::from_millis(300)),
        "{end:?}"
    );
    server.abort();
}

#[test]
fn backoff_never_goes_below_its_floor() {
    let mut backoff = Backoff::default();
    for _ in 0..100 {
        assert!(backoff.next_delay() >= Duration::from_millis(400));
    }
}
