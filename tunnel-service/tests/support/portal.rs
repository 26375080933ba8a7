//! The real portal (`ember_portal::Portal`, SQLite in a temporary folder) for the service's
//! integration tests, serving on a listener the test binds — on loopback, or inside a test
//! network namespace.

use ember_portal::store::{TokenKind, now_unix};
use ember_portal::{Config, Portal, Store, admin, crypto};

/// Ada (group eng) may use every resource of Berlin; its gateway never connects, so access
/// requests are answered with "offline".
const MODEL: &str = r#"
[[accounts]]
slug = "acme"
name = "Acme"
sites = ["Berlin"]
users = [{ email = "ada@acme.example", name = "Ada Lovelace" }]
groups = [{ name = "eng", members = ["ada@acme.example"] }]
resources = [
  { name = "Office LAN", site = "Berlin", address = "10.77.0.0/16" },
  { name = "Printer", site = "Berlin", address = "10.88.0.5" },
  { name = "Corp", site = "Berlin", address = "*.corp.example" },
  { name = "Wiki", site = "Berlin", address = "wiki.internal.example" },
]
policies = [
  { group = "eng", resource = "Office LAN" },
  { group = "eng", resource = "Printer" },
  { group = "eng", resource = "Corp" },
  { group = "eng", resource = "Wiki" },
]
gateways = [{ site = "Berlin", name = "berlin-1" }]
"#;

#[derive(Debug)]
pub struct TestPortal {
    portal: Option<Portal>,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    /// More configuration after the model (e.g. `[[relays]]`), kept for restarts.
    extra: String,
}

impl TestPortal {
    pub async fn start(listener: std::net::TcpListener) -> Self {
        Self::start_with(listener, "").await
    }

    /// With more configuration appended to the model, e.g. `[[relays]]` tables.
    pub async fn start_with(listener: std::net::TcpListener, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = listener.local_addr().unwrap();
        let portal = serve(&dir, listener, extra).await;
        Self {
            portal: Some(portal),
            addr,
            dir,
            extra: extra.to_owned(),
        }
    }

    /// Stops the portal: every client is told and disconnected.
    pub async fn shutdown(&mut self) {
        if let Some(portal) = self.portal.take() {
            portal.shutdown().await;
        }
    }

    /// Serves the same database again, on `listener` (bound to the same address).
    pub async fn restart(&mut self, listener: std::net::TcpListener) {
        self.shutdown().await;
        assert_eq!(listener.local_addr().unwrap(), self.addr);
        self.portal = Some(serve(&self.dir, listener, &self.extra).await);
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn store(&self) -> &Store {
        &self.portal.as_ref().unwrap().state.store
    }

    async fn account(&self) -> String {
        self.store().account_id("acme").await.unwrap()
    }

    /// A client token for Ada as the sign-in page would issue it, and its id.
    pub async fn client_token(&self) -> (String, String) {
        let account = self.account().await;
        let user = self
            .store()
            .user_id(&account, "ada@acme.example")
            .await
            .unwrap();
        let token = crypto::random_hex32();
        let id = self
            .store()
            .insert_token(
                TokenKind::Client,
                &account,
                &user,
                &token,
                Some(now_unix() + 3600),
            )
            .await
            .unwrap();
        (token, id)
    }

    /// A token for Berlin's gateway `berlin-1`.
    pub async fn gateway_token(&self) -> String {
        let account = self.account().await;
        let site = self.store().site_id(&account, "Berlin").await.unwrap();
        admin::create_gateway_token(self.store(), &account, &site, "berlin-1")
            .await
            .unwrap()
    }

    pub async fn revoke(&self, token_id: &str) {
        self.store().revoke_token(token_id).await.unwrap();
    }

    /// Adds a resource in Berlin that group eng may use.
    pub async fn add_resource(&self, name: &str, address: &str) {
        let account = self.account().await;
        let site = self.store().site_id(&account, "Berlin").await.unwrap();
        let resource = self
            .store()
            .upsert_resource(&account, &site, name, address, None, &[])
            .await
            .unwrap();
        let group = self.store().group_id(&account, "eng").await.unwrap();
        self.store()
            .ensure_policy(&account, &group, &resource)
            .await
            .unwrap();
    }
}

async fn serve(dir: &tempfile::TempDir, listener: std::net::TcpListener, extra: &str) -> Portal {
    let database = format!("sqlite://{}", dir.path().join("portal.db").display());
    let config = Config::parse(&format!(
        r#"
[server]
listen = "{listen}"
database = "{database}"
heartbeat_interval_ms = 1000
change_poll_interval_ms = 100
{MODEL}
{extra}"#,
        listen = listener.local_addr().unwrap(),
    ))
    .unwrap();
    let store = Store::connect(&config.server.database).await.unwrap();
    config.apply(&store).await.unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    Portal::serve(store, config, listener).await.unwrap()
}
