//! Test support: a real portal on loopback with a real database (an SQLite file in a temporary
//! folder, or a throwaway PostgreSQL cluster), a browser-like HTTP client, and WebSocket peers.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ember_portal::store::TokenKind;
use ember_portal::{Config, Portal, Store, admin, crypto};
pub use ember_protocol::portal::PORTAL_PROTOCOL_VERSION;
use ember_protocol::sign_in::Verifier;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const PASSWORD: &str = "correct horse battery staple";
pub const KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

/// The model most tests use: Ada (eng) sees the database wildcard and the LAN; Bob (sales) the
/// CRM; two gateways in Berlin, none in Paris.
pub fn model_toml(password_hash: &str) -> String {
    format!(
        r#"
[[accounts]]
slug = "acme"
name = "Acme"
sites = ["Berlin", "Paris"]
users = [
  {{ email = "ada@acme.example", name = "Ada Lovelace", password_hash = "{password_hash}" }},
  {{ email = "bob@acme.example", name = "Bob", password_hash = "{password_hash}" }},
]
groups = [
  {{ name = "eng", members = ["ada@acme.example"] }},
  {{ name = "sales", members = ["bob@acme.example"] }},
]
resources = [
  {{ name = "Databases", site = "Berlin", address = "*.db.corp.example", filters = ["tcp/5432"] }},
  {{ name = "Office LAN", site = "Berlin", address = "10.20.0.0/16" }},
  {{ name = "CRM", site = "Berlin", address = "crm.corp.example" }},
  {{ name = "Paris wiki", site = "Paris", address = "wiki.paris.corp.example" }},
]
policies = [
  {{ group = "eng", resource = "Databases" }},
  {{ group = "eng", resource = "Office LAN" }},
  {{ group = "eng", resource = "Paris wiki" }},
  {{ group = "sales", resource = "CRM" }},
]
gateways = [
  {{ site = "Berlin", name = "berlin-1" }},
  {{ site = "Berlin", name = "berlin-2" }},
]
"#
    )
}

#[derive(Debug)]
pub struct TestPortal {
    pub portal: Option<Portal>,
    pub addr: SocketAddr,
    pub database: String,
    pub config_text: String,
    _dir: Option<tempfile::TempDir>,
}

pub struct Options {
    pub heartbeat_ms: u64,
    pub relay_lifetime_secs: u64,
    /// More keys of the `[server]` table.
    pub server_extra: String,
    pub extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            heartbeat_ms: 1000,
            relay_lifetime_secs: 3600,
            server_extra: String::new(),
            extra: String::new(),
        }
    }
}

impl TestPortal {
    pub async fn sqlite() -> Self {
        Self::sqlite_with(Options::default()).await
    }

    pub async fn sqlite_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", dir.path().join("portal.db").display());
        Self::start(database, options, Some(dir)).await
    }

    pub async fn start(database: String, options: Options, dir: Option<tempfile::TempDir>) -> Self {
        let hash = crypto::hash_password(PASSWORD).unwrap();
        let config_text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
database = "{database}"
heartbeat_interval_ms = {heartbeat}
gateway_heartbeat_interval_ms = {heartbeat}
change_poll_interval_ms = 100
{server_extra}

[[relays]]
id = "relay-1"
urls = ["turn:127.0.0.1:3478"]
secret = "relay-secret"
credential_lifetime_secs = {relay_lifetime}
{extra}
{model}"#,
            heartbeat = options.heartbeat_ms,
            relay_lifetime = options.relay_lifetime_secs,
            server_extra = options.server_extra,
            extra = options.extra,
            model = model_toml(&hash),
        );
        let portal = Portal::start(Config::parse(&config_text).unwrap())
            .await
            .unwrap();
        Self {
            addr: portal.addr,
            portal: Some(portal),
            database,
            config_text,
            _dir: dir,
        }
    }

    /// Stops and starts the portal on the same database and configuration (a new port).
    pub async fn restart(&mut self) {
        if let Some(portal) = self.portal.take() {
            portal.shutdown().await;
        }
        let portal = Portal::start(Config::parse(&self.config_text).unwrap())
            .await
            .unwrap();
        self.addr = portal.addr;
        self.portal = Some(portal);
    }

    pub fn store(&self) -> &Store {
        &self.portal.as_ref().unwrap().state.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn account_id(&self) -> String {
        self.store().account_id("acme").await.unwrap()
    }

    /// A client token issued directly (the sign-in flow has its own tests).
    pub async fn client_token(&self, email: &str) -> (String, String) {
        let account = self.account_id().await;
        let user = self.store().user_id(&account, email).await.unwrap();
        let token = crypto::random_hex32();
        let expires = ember_portal::store::now_unix() + 3600;
        let id = self
            .store()
            .insert_token(TokenKind::Client, &account, &user, &token, Some(expires))
            .await
            .unwrap();
        (token, id)
    }

    pub async fn gateway_token(&self, name: &str) -> String {
        let account = self.account_id().await;
        let site = self.store().site_id(&account, "Berlin").await.unwrap();
        admin::create_gateway_token(self.store(), &account, &site, name)
            .await
            .unwrap()
    }

    /// Berlin's gateway `berlin-1`, connected; returns it and its `init`.
    pub async fn berlin_gateway(&self) -> (Peer, Value) {
        let token = self.gateway_token("berlin-1").await;
        Peer::gateway(self.addr, &token, "berlin-1").await
    }

    /// Ada (group eng, every Berlin resource) connected from `device_id`; returns the peer and
    /// its `init`.
    pub async fn ada(&self, device_id: &str) -> (Peer, Value) {
        let (token, _) = self.client_token("ada@acme.example").await;
        Peer::client(self.addr, &token, device_id).await
    }

    pub async fn shutdown(mut self) {
        if let Some(portal) = self.portal.take() {
            portal.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket peers

pub struct Peer {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Connects to `path` with a bearer token; `Err` carries the HTTP status and JSON body.
pub async fn connect(addr: SocketAddr, path: &str, token: &str) -> Result<Peer, (u16, Value)> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Peer { ws }),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(e) => panic!("connect failed: {e}"),
    }
}

pub fn client_hello(device_id: &str) -> Value {
    json!({"type": "hello", "protocol_version": PORTAL_PROTOCOL_VERSION, "device_id": device_id, "public_key": KEY,
           "name": "laptop", "os": "linux", "version": "0.1.0"})
}

pub fn gateway_hello(name: &str) -> Value {
    json!({"type": "hello", "protocol_version": PORTAL_PROTOCOL_VERSION, "public_key": KEY, "name": name, "version": "0.1.0"})
}

impl Peer {
    /// Connects as a client and says hello; returns the peer and its `init`.
    pub async fn client(addr: SocketAddr, token: &str, device_id: &str) -> (Peer, Value) {
        let mut peer = connect(addr, "/api/client", token).await.unwrap();
        peer.send(client_hello(device_id)).await;
        let init = peer.recv().await;
        assert_eq!(init["type"], "init", "{init}");
        (peer, init)
    }

    pub async fn gateway(addr: SocketAddr, token: &str, name: &str) -> (Peer, Value) {
        let mut peer = connect(addr, "/api/gateway", token).await.unwrap();
        peer.send(gateway_hello(name)).await;
        let init = peer.recv().await;
        assert_eq!(init["type"], "init", "{init}");
        (peer, init)
    }

    /// Asks for access to a resource, as a client.
    pub async fn request_access(&mut self, request_id: u64, resource_id: &str) {
        self.send(
            json!({"type": "request_access", "request_id": request_id, "resource_id": resource_id}),
        )
        .await;
    }

    /// The next message of `kind`, skipping others, within `within`.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.try_recv(left).await?;
            if message["type"] == kind {
                return Some(message);
            }
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next message other than a heartbeat (answered), within 5 s.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no message within 5 s"))
    }

    /// `None` on timeout or close.
    pub async fn try_recv(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == "heartbeat" {
                        let _ = self
                            .ws
                            .send(Message::Text(r#"{"type":"heartbeat"}"#.into()))
                            .await;
                        continue;
                    }
                    return Some(value);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the connection to close (answering heartbeats); true if it closed in time.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Browser-like sign-in

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of a hidden input in an HTML page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

pub struct SignInPage {
    pub attempt: String,
    pub csrf: String,
}

/// A fresh PKCE verifier, as the app makes it.
pub fn new_verifier() -> Verifier {
    Verifier::from_random_bytes(&crypto::random_bytes::<32>())
}

pub async fn open_sign_in(
    browser: &reqwest::Client,
    portal: &TestPortal,
    state: &str,
    challenge: &str,
) -> SignInPage {
    let page = browser
        .get(portal.url(&format!(
            "/sign-in?as=client&state={state}&challenge={challenge}&account=acme"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    SignInPage {
        attempt: hidden(&html, "attempt"),
        csrf: hidden(&html, "csrf"),
    }
}

pub async fn post_sign_in(
    browser: &reqwest::Client,
    portal: &TestPortal,
    page: &SignInPage,
    email: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post(portal.url("/sign-in"))
        .form(&[
            ("attempt", page.attempt.as_str()),
            ("csrf", page.csrf.as_str()),
            ("account", "acme"),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// The `code` of the `ember://` link a sign-in redirected to.
pub fn code_of(location: &str) -> String {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap_or_else(|| panic!("no code in {location}"))
        .1
        .into_owned()
}

/// What the tunnel service posts to redeem a code.
pub async fn redeem(
    portal: &TestPortal,
    code: &str,
    verifier: &str,
    public_key: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(portal.url(ember_protocol::sign_in::REDEEM_PATH))
        .json(&json!({"code": code, "verifier": verifier, "public_key": public_key}))
        .send()
        .await
        .unwrap()
}

/// The whole browser flow and the service's redeem with the device key [`KEY`]; returns the
/// token.
pub async fn sign_in(portal: &TestPortal, email: &str) -> String {
    let browser = browser();
    let state = crypto::random_hex32();
    let verifier = new_verifier();
    let page = open_sign_in(&browser, portal, &state, &verifier.challenge()).await;
    let response = post_sign_in(&browser, portal, &page, email, PASSWORD).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let code = code_of(&location);
    let redeemed = redeem(portal, &code, verifier.secret().expose(), KEY).await;
    assert_eq!(redeemed.status(), 200);
    let body: Value = redeemed.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A throwaway PostgreSQL cluster in a temporary folder on a free port, stopped on drop.
pub struct PgCluster {
    pub url: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PgCluster {
    /// `None` (with a message) only when the PostgreSQL server binaries are not installed.
    pub fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists());
        let Some(bin) = bin else {
            ember_testbed::skip(
                "PostgreSQL server binaries not found under /usr/lib/postgresql (install the `postgresql` package)",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let as_root = nix_is_root();
        if as_root {
            // initdb refuses to run as root: hand the folder to the `postgres` user.
            Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let run = |program: &str, args: &[&str]| {
            let mut command = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            let out = command.args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data_s = data.to_str().unwrap().to_owned();
        run(
            "initdb",
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("pg.log");
        run(
            "pg_ctl",
            &[
                "-D",
                &data_s,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        Some(Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
        })
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut command = if nix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
