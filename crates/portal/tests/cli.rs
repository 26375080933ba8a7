#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

//! The `ember-portal` binary: `--demo` on a fresh folder, and admin commands changing a
//! running portal live.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember_portal::crypto;
use serde_json::json;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ember-portal");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn admin(database: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["--database", database, "admin"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn demo_starts_on_a_fresh_folder_and_its_printed_password_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--demo", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env("EMBER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut printed = std::collections::HashMap::new();
    for line in BufReader::new(stdout).lines().take(9) {
        let line = line.unwrap();
        if let Some((key, value)) = line.trim().split_once(':') {
            printed.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    assert!(
        dir.path().join("ember-portal.db").exists(),
        "SQLite file in the working folder"
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let base = format!("http://{addr}");
    // Wait for the listener.
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "demo portal did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let browser = browser();
    let verifier = new_verifier();
    let html = browser
        .get(format!(
            "{base}/sign-in?as=client&state={}&challenge={}",
            crypto::random_hex32(),
            verifier.challenge()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("value=\"demo\""),
        "the only account is preselected"
    );
    let response = browser
        .post(format!("{base}/sign-in"))
        .form(&[
            ("attempt", hidden(&html, "attempt").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("account", "demo"),
            ("email", printed["user"].as_str()),
            ("password", printed["password"].as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let code = code_of(response.headers()["location"].to_str().unwrap());
    let redeemed: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}{}", ember_protocol::sign_in::REDEEM_PATH))
        .json(&json!({"code": code, "verifier": verifier.secret().expose(), "public_key": KEY}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = redeemed["token"].as_str().unwrap().to_owned();

    let (_gateway, _) = Peer::gateway(addr, &printed["gateway token"], "home-gateway").await;
    let (mut client, init) = Peer::client(addr, &token, "device-1").await;
    assert_eq!(init["resources"][0]["name"], "Demo web server");
    let id = init["resources"][0]["id"].as_str().unwrap().to_owned();
    client.request_access(1, &id).await;
    assert_eq!(client.recv().await["type"], "access_granted");
}

#[tokio::test]
async fn admin_commands_change_a_running_portal_live() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("portal.db").display());
    let port = free_port();
    admin(
        &database,
        &["account", "create", "--slug", "acme", "--name", "Acme"],
    );
    let created = admin(
        &database,
        &[
            "user",
            "create",
            "--account",
            "acme",
            "--email",
            "ada@acme.example",
            "--name",
            "Ada",
        ],
    );
    assert!(created.contains("password: "), "{created}");
    admin(
        &database,
        &["group", "create", "--account", "acme", "--name", "eng"],
    );
    admin(
        &database,
        &[
            "group",
            "add-member",
            "--account",
            "acme",
            "--group",
            "eng",
            "--email",
            "ada@acme.example",
        ],
    );
    admin(
        &database,
        &["site", "create", "--account", "acme", "--name", "Berlin"],
    );
    let child = Command::new(BIN)
        .args([
            "--database",
            &database,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "serve",
        ])
        .env("EMBER_LOG", "warn")
        .spawn()
        .unwrap();
    let _running = Running(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "portal did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client token straight from the store (the sign-in page has its own tests).
    let store = ember_portal::Store::connect(&database).await.unwrap();
    let account = store.account_id("acme").await.unwrap();
    let user = store.user_id(&account, "ada@acme.example").await.unwrap();
    let token = crypto::random_hex32();
    let token_id = store
        .insert_token(
            ember_portal::store::TokenKind::Client,
            &account,
            &user,
            &token,
            None,
        )
        .await
        .unwrap();
    let (mut client, init) = Peer::client(addr, &token, "device-1").await;
    assert_eq!(init["resources"], json!([]));

    admin(
        &database,
        &[
            "resource",
            "create",
            "--account",
            "acme",
            "--site",
            "Berlin",
            "--name",
            "Wiki",
            "--address",
            "?.wiki.corp.example",
            "--filter",
            "tcp/443",
        ],
    );
    admin(
        &database,
        &[
            "policy",
            "create",
            "--account",
            "acme",
            "--group",
            "eng",
            "--resource",
            "Wiki",
        ],
    );
    let update = client.recv().await;
    assert_eq!(update["type"], "resources_updated");
    assert_eq!(
        update["resources"][0]["address"]["pattern"],
        "?.wiki.corp.example"
    );

    let bad = Command::new(BIN)
        .args([
            "--database",
            &database,
            "admin",
            "resource",
            "create",
            "--account",
            "acme",
            "--site",
            "Berlin",
            "--name",
            "Bad",
            "--address",
            "10.0.0.0/99",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid resource address"));

    let listed = admin(&database, &["token", "list", "--account", "acme"]);
    assert!(listed.contains(&token_id), "{listed}");
    let revoked_at = Instant::now();
    admin(&database, &["token", "revoke", "--id", &token_id]);
    let signed_out = client
        .try_recv(Duration::from_secs(1))
        .await
        .expect("signed out");
    assert_eq!(signed_out["reason"], "revoked");
    assert!(
        revoked_at.elapsed() < Duration::from_secs(2),
        "CLI start plus revocation took {:?}",
        revoked_at.elapsed()
    );
    store.close().await;
}
