//! The password sign-in's failure backoff: per account and per client address, where the
//! client address behind a trusted reverse proxy is the one the proxy forwards, IPv6 grouped
//! by /64, and a wait that grows instead of a lockout.

#![allow(clippy::unwrap_used)] // scenarios and helpers outside #[test] functions

mod support;

use std::time::Duration;

use ember_portal::crypto;
use support::*;

/// A sign-in page opened by a fresh browser.
async fn page(portal: &TestPortal) -> (reqwest::Client, SignInPage) {
    let browser = browser();
    let page = open_sign_in(
        &browser,
        portal,
        &crypto::random_hex32(),
        &new_verifier().challenge(),
    )
    .await;
    (browser, page)
}

/// Posts the form as a proxy would forward it: with `X-Forwarded-For: forwarded_for`.
async fn post_from(
    portal: &TestPortal,
    forwarded_for: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let (browser, page) = page(portal).await;
    browser
        .post(portal.url("/sign-in"))
        .header("x-forwarded-for", forwarded_for)
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

async fn portal(trusted_proxies: &str, sign_in: &str) -> TestPortal {
    TestPortal::sqlite_with(Options {
        server_extra: format!("trusted_proxies = {trusted_proxies}"),
        extra: format!("[sign_in]\nmax_failures = 3\n{sign_in}\n"),
        ..Options::default()
    })
    .await
}

const ADA: &str = "ada@acme.example";
const BOB: &str = "bob@acme.example";

/// Behind the documented TLS proxy every request came from the proxy's address: three wrong
/// passwords of one user locked every user out.
#[tokio::test]
async fn users_behind_a_trusted_proxy_do_not_share_one_bucket() {
    let portal = portal(r#"["127.0.0.1"]"#, "").await;
    for _ in 0..3 {
        let response = post_from(&portal, "198.51.100.1", ADA, "wrong").await;
        assert_eq!(response.status(), 401);
    }
    let response = post_from(&portal, "198.51.100.1", "carol@acme.example", PASSWORD).await;
    assert_eq!(response.status(), 429, "the guessing address waits");
    let response = post_from(&portal, "198.51.100.2", BOB, PASSWORD).await;
    assert_eq!(response.status(), 303, "another user elsewhere signs in");
}

/// `X-Forwarded-For` from a peer that is not a trusted proxy is the client's own words: a
/// fresh made-up address per attempt must not buy a fresh bucket.
#[tokio::test]
async fn an_untrusted_peer_cannot_spoof_forwarded_for() {
    let portal = portal(r#"["10.0.0.0/8"]"#, "").await;
    for i in 0..3 {
        let response = post_from(&portal, &format!("203.0.113.{i}"), ADA, "wrong").await;
        assert_eq!(response.status(), 401);
    }
    let response = post_from(&portal, "203.0.113.99", BOB, PASSWORD).await;
    assert_eq!(
        response.status(),
        429,
        "the peer's own address is the bucket"
    );
}

/// One IPv6 host has a whole /64 to pick addresses from.
#[tokio::test]
async fn ipv6_addresses_in_one_64_share_a_bucket() {
    let portal = portal(r#"["127.0.0.1/32"]"#, "").await;
    for i in 1..=3 {
        let response = post_from(&portal, &format!("2001:db8:1:2::{i}"), ADA, "wrong").await;
        assert_eq!(response.status(), 401);
    }
    let response = post_from(&portal, "2001:db8:1:2:ffff::beef", BOB, PASSWORD).await;
    assert_eq!(response.status(), 429, "the same /64 waits");
    let response = post_from(&portal, "2001:db8:1:3::1", BOB, PASSWORD).await;
    assert_eq!(response.status(), 303, "the next /64 is someone else");
}

/// Five wrong passwords used to lock the account out for the whole window, whoever typed
/// them: now a short wait follows, doubling with each further failure, and the right password
/// after the wait works.
#[tokio::test]
async fn wrong_passwords_back_off_instead_of_locking_out() {
    let portal = portal("[]", "first_backoff_ms = 1000\nmax_backoff_secs = 60").await;
    for _ in 0..3 {
        let response = post_from(&portal, "ignored", ADA, "wrong").await;
        assert_eq!(response.status(), 401);
    }
    // After the third: 1 s to wait.
    let response = post_from(&portal, "ignored", ADA, PASSWORD).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Another wrong one after the wait: twice as long.
    let response = post_from(&portal, "ignored", ADA, "wrong").await;
    assert_eq!(response.status(), 401);
    let response = post_from(&portal, "ignored", ADA, PASSWORD).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = post_from(&portal, "ignored", ADA, PASSWORD).await;
    assert_eq!(response.status(), 303, "not locked out");
}
