#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

//! Sign-in with a real OpenID provider: the certified `oidc-provider` npm package, run by the
//! test with Node (installed by `npm ci` at the repository root). A browser-like client walks
//! the whole authorisation code + PKCE flow.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use ember_portal::crypto;
use support::*;

const CLIENT_ID: &str = "ember-portal";
const CLIENT_SECRET: &str = "oidc-test-secret";

struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn portal_with_provider() -> (TestPortal, Provider) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let portal = TestPortal::sqlite_with(Options {
        extra: format!(
            "[[oidc]]\naccount = \"acme\"\nname = \"Acme SSO\"\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n"
        ),
        ..Options::default()
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .args([
            &port.to_string(),
            CLIENT_ID,
            CLIENT_SECRET,
            &portal.url("/sign-in/oidc/callback"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Node.js is needed for the OIDC test (scripts/deps.sh installs it with `npm ci`)");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep reading: the provider logs to stdout and dies of EPIPE if nobody listens.
    std::thread::spawn(move || for _ in stdout.lines() {});
    assert_eq!(
        line.trim(),
        "ready",
        "oidc-provider did not start; run `npm ci` at the repository root"
    );
    (portal, Provider { child, issuer })
}

/// Clicks "Sign in with Acme SSO", logs in at the provider as `login`, and returns the final
/// answer of the portal's callback.
async fn sign_in_with_provider(
    portal: &TestPortal,
    provider: &Provider,
    challenge: &str,
    login: &str,
) -> reqwest::Response {
    let browser = browser();
    let page = browser
        .get(portal.url(&format!(
            "/sign-in?as=client&state={}&challenge={challenge}&account=acme",
            crypto::random_hex32()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with Acme SSO"), "{page}");
    let response = browser
        .post(portal.url("/sign-in/oidc"))
        .form(&[
            ("attempt", hidden(&page, "attempt")),
            ("csrf", hidden(&page, "csrf")),
            ("provider", "0".into()),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let mut location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        location.as_str().starts_with(&provider.issuer),
        "{location}"
    );
    let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["code_challenge_method"], "S256", "PKCE is used");
    assert!(pairs.contains_key("nonce") && pairs["scope"].contains("openid"));

    let callback = portal.url("/sign-in/oidc/callback");
    for _ in 0..10 {
        if location.as_str().starts_with(&callback) {
            return browser.get(location).send().await.unwrap();
        }
        let response = browser.get(location.clone()).send().await.unwrap();
        let next = if response.status().is_redirection() {
            response.headers()["location"].to_str().unwrap().to_owned()
        } else {
            // The provider's login page: post the login.
            let html = response.text().await.unwrap();
            let action = html
                .split("action=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned();
            let posted = browser
                .post(location.join(&action).unwrap())
                .form(&[("login", login)])
                .send()
                .await
                .unwrap();
            assert!(posted.status().is_redirection(), "{}", posted.status());
            posted.headers()["location"].to_str().unwrap().to_owned()
        };
        location = location.join(&next).unwrap();
    }
    panic!("the flow did not come back to the portal");
}

#[tokio::test]
async fn sign_in_with_a_real_openid_provider_links_the_verified_email_and_issues_a_token() {
    let (portal, provider) = portal_with_provider().await;
    for round in 0..2 {
        let verifier = new_verifier();
        let response = sign_in_with_provider(
            &portal,
            &provider,
            &verifier.challenge(),
            "ada@acme.example",
        )
        .await;
        let status = response.status();
        let headers = response.headers().clone();
        assert_eq!(
            status,
            303,
            "round {round}: {}",
            response.text().await.unwrap()
        );
        let response = headers;
        let location = url::Url::parse(response["location"].to_str().unwrap()).unwrap();
        assert_eq!(location.host_str(), Some("sign-in-callback"));
        let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(query["actor"], "Ada Lovelace");
        let redeemed = redeem(&portal, &query["code"], verifier.secret().expose(), KEY).await;
        assert_eq!(redeemed.status(), 200);
        let body: serde_json::Value = redeemed.json().await.unwrap();
        let token = body["token"].as_str().unwrap().to_owned();
        let (_client, init) = Peer::client(portal.addr, &token, &format!("device-{round}")).await;
        assert_eq!(init["actor"]["email"], "ada@acme.example");
    }
    // The second round found the linked identity.
    assert!(
        portal
            .store()
            .oidc_user(&provider.issuer, "ada@acme.example")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn an_openid_identity_without_an_ember_user_is_refused_and_nothing_is_stored() {
    let (portal, provider) = portal_with_provider().await;
    let response = sign_in_with_provider(
        &portal,
        &provider,
        &new_verifier().challenge(),
        "mallory@elsewhere.example",
    )
    .await;
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("There is no Ember user mallory@elsewhere.example")
    );
    assert!(
        portal
            .store()
            .list_tokens(&portal.account_id().await)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_callback_without_the_signed_cookie_or_with_a_foreign_state_is_refused() {
    let (portal, _provider) = portal_with_provider().await;
    let response = browser()
        .get(portal.url("/sign-in/oidc/callback?code=abc&state=def"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = browser()
        .get(portal.url("/sign-in/oidc/callback?error=access_denied&state=def"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("access_denied"));
    let long = "ü".repeat(300);
    let response = browser()
        .get(portal.url(&format!("/sign-in/oidc/callback?error={long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "a long multibyte error is shortened, not a crash"
    );
}
