//! The admin page's server side: the built files served with their types and a strict CSP, a
//! configured folder without a build refusing the start, and the read-only `online` route the
//! page shows (devices, gateways and grants this replica holds). The page itself is tested in
//! headless Chromium by `admin-ui/tests/admin.mjs`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ember_portal::Config;
use ember_portal::admin::{self, Admin};
use ember_portal::server::Portal;
use serde_json::Value;
use support::*;

async fn admin_token(portal: &TestPortal) -> String {
    let store = portal.store();
    let account_id = store.account_id("acme").await.unwrap();
    let acting = Admin::new(store, account_id.clone(), "test");
    let user_id = store
        .user_id(&account_id, "ada@acme.example")
        .await
        .unwrap();
    admin::users::set_admin(&acting, &user_id, true)
        .await
        .unwrap();
    admin::users::issue_admin_token(&acting, &user_id)
        .await
        .unwrap()
        .token
}

async fn online(portal: &TestPortal, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(portal.url("/api/admin/v1/accounts/acme/online"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn built_page() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        r#"<!doctype html><script type="module" src="/admin/assets/index-abc123.js"></script>"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("assets/index-abc123.js"), "console.log(1)").unwrap();
    std::fs::write(dir.path().join("assets/index-abc123.css"), "body{}").unwrap();
    dir
}

fn with_page(dir: &std::path::Path) -> Options {
    Options {
        server_extra: format!("admin_page_dir = {:?}", dir.display().to_string()),
        ..Options::default()
    }
}

#[tokio::test]
async fn the_page_is_served_with_its_content_types_and_a_csp_that_forbids_inline_scripts() {
    let page = built_page();
    let portal = TestPortal::sqlite_with(with_page(page.path())).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let bare = http.get(portal.url("/admin")).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 308);
    assert_eq!(bare.headers()["location"], "/admin/");

    for (path, status, content_type) in [
        ("/admin/", 200, "text/html; charset=utf-8"),
        ("/admin/index.html", 200, "text/html; charset=utf-8"),
        (
            "/admin/assets/index-abc123.js",
            200,
            "text/javascript; charset=utf-8",
        ),
        (
            "/admin/assets/index-abc123.css",
            200,
            "text/css; charset=utf-8",
        ),
        ("/admin/assets/missing.js", 404, "text/plain; charset=utf-8"),
    ] {
        let response = http.get(portal.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let asset = http
        .get(portal.url("/admin/assets/index-abc123.js"))
        .send()
        .await
        .unwrap();
    assert!(
        asset.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(asset.text().await.unwrap(), "console.log(1)");
    portal.shutdown().await;
}

#[tokio::test]
async fn a_path_climbing_out_of_the_page_folder_reaches_no_file() {
    let page = built_page();
    std::fs::write(page.path().join("secret.toml"), "password").unwrap();
    let portal = TestPortal::sqlite_with(with_page(page.path())).await;
    for path in [
        "/admin/secret.toml",
        "/admin/assets/../secret.toml",
        "/admin/assets/..%2fsecret.toml",
        "/admin/assets/..%2f..%2fportal.db",
    ] {
        let response = reqwest::get(portal.url(path)).await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(!body.contains("password"), "{path}: {body}");
        assert!(
            status == 404 || body.contains("<!doctype html>"),
            "{path}: {status}"
        );
    }
    portal.shutdown().await;
}

#[tokio::test]
async fn a_configured_page_folder_without_a_build_stops_the_start_with_the_way_to_build_it() {
    let empty = tempfile::tempdir().unwrap();
    let db = empty.path().join("portal.db");
    let config = Config::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nadmin_page_dir = {:?}\n",
        db.display(),
        empty.path().display().to_string()
    ))
    .unwrap();
    let error = Portal::start(config).await.unwrap_err().to_string();
    assert!(error.contains("npm run build:admin"), "{error}");
    assert!(error.contains("index.html"), "{error}");
}

#[tokio::test]
async fn without_a_page_folder_the_portal_starts_and_admin_says_what_is_missing() {
    // No `admin_page_dir`: the default folder, which this test machine does not have.
    if std::path::Path::new(ember_portal::admin_page::DEFAULT_DIR).exists() {
        println!("SKIPPED: the admin page is installed at the default folder on this machine");
        return;
    }
    let portal = TestPortal::sqlite().await;
    let response = reqwest::get(portal.url("/admin/")).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("npm run build:admin")
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn online_lists_connected_devices_and_gateways_and_the_grants_devices_hold() {
    let portal = TestPortal::sqlite().await;
    let token = admin_token(&portal).await;
    let (status, empty) = online(&portal, Some(&token)).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["devices"], serde_json::json!([]));
    assert_eq!(empty["gateways"], serde_json::json!([]));

    let (mut gateway, _) = portal.berlin_gateway().await;
    let (mut client, init) = portal.ada("device-1").await;
    let lan = init["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Office LAN")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    client.request_access(1, &lan).await;
    gateway
        .next_of("grant", Duration::from_secs(3))
        .await
        .expect("grant");

    let (_, now) = online(&portal, Some(&token)).await;
    let devices = now["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{now}");
    let account = portal.account_id().await;
    let ada = portal
        .store()
        .user_id(&account, "ada@acme.example")
        .await
        .unwrap();
    assert_eq!(devices[0]["user_id"], ada.as_str(), "{now}");
    assert!(devices[0]["device_id"].is_string(), "{now}");
    let grants = devices[0]["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{now}");
    assert_eq!(grants[0]["resource_ids"], serde_json::json!([lan]));
    let gateways = now["gateways"].as_array().unwrap();
    assert_eq!(gateways.len(), 1, "{now}");
    assert_eq!(gateways[0]["gateway_id"], grants[0]["gateway_id"]);

    drop(client);
    drop(gateway);
    portal.shutdown().await;
}

#[tokio::test]
async fn online_is_refused_without_an_admin_token_and_to_other_accounts() {
    let portal = TestPortal::sqlite().await;
    assert_eq!(online(&portal, None).await.0, 401);
    let (bob, _) = portal.client_token("bob@acme.example").await;
    assert_eq!(online(&portal, Some(&bob)).await.0, 403);
    let token = admin_token(&portal).await;
    let response = reqwest::Client::new()
        .get(portal.url("/api/admin/v1/accounts/other/online"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(response.status().as_u16(), 403 | 404),
        "{}",
        response.status()
    );
    portal.shutdown().await;
}
