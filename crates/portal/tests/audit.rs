//! The audit log: what users and administrators did, in the database, read back with filters
//! and as JSON lines; purged after its retention together with expired tokens and used
//! sign-in attempts.

#![allow(clippy::unwrap_used)] // scenarios and helpers outside #[test] functions

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use ember_portal::Store;
use ember_portal::audit::{AuditEvent, AuditFilter, AuditKind};
use ember_portal::crypto;
use ember_portal::store::{Purged, TokenKind, now_unix};
use serde_json::Value;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ember-portal");

/// The events of `kind` once at least `count` are written (the writer batches).
async fn events_of(portal: &TestPortal, kind: AuditKind, count: usize) -> Vec<AuditEvent> {
    let filter = AuditFilter {
        kind: Some(kind),
        ..AuditFilter::default()
    };
    let started = Instant::now();
    loop {
        let events = portal.store().audit_events(&filter).await.unwrap();
        if events.len() >= count || started.elapsed() > Duration::from_secs(5) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn everything_is_audited(portal: TestPortal) {
    // A wrong password, then the right one.
    let browser = browser();
    let page = open_sign_in(
        &browser,
        &portal,
        &crypto::random_hex32(),
        &new_verifier().challenge(),
    )
    .await;
    let refused = post_sign_in(&browser, &portal, &page, "ada@acme.example", "guess").await;
    assert_eq!(refused.status(), 401);
    let token = sign_in(&portal, "ada@acme.example").await;

    let (mut gateway, _) = portal.berlin_gateway().await;
    let (mut client, init) = Peer::client(portal.addr, &token, "laptop").await;
    let lan = init["resources"][1]["id"].as_str().unwrap().to_owned();
    client.request_access(1, &lan).await;
    assert_eq!(client.recv().await["type"], "access_granted");
    assert_eq!(gateway.recv().await["type"], "grant");
    client.request_access(2, "res_nope").await;
    assert_eq!(client.recv().await["reason"], "not_found");

    // The administrator narrows the LAN: the grant is withdrawn.
    let store = portal.store();
    let account = portal.account_id().await;
    let site = store.site_id(&account, "Berlin").await.unwrap();
    store
        .upsert_resource(&account, &site, "Office LAN", "10.77.1.0/24", None, &[])
        .await
        .unwrap();

    let sign_ins = events_of(&portal, AuditKind::SignIn, 2).await;
    let outcomes: Vec<&str> = sign_ins.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["failure", "success"], "{sign_ins:#?}");
    assert_eq!(sign_ins[0].actor, "ada@acme.example");
    assert_eq!(sign_ins[0].detail["method"], "password");
    assert_eq!(sign_ins[0].detail["client"], "127.0.0.1");
    assert_eq!(sign_ins[1].account_id.as_deref(), Some(account.as_str()));

    let grants = events_of(&portal, AuditKind::Grant, 1).await;
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert_eq!(grants[0].subject, lan);
    assert!(grants[0].detail["device_id"].is_string());

    let denials = events_of(&portal, AuditKind::Denial, 1).await;
    assert_eq!(denials.len(), 1, "{denials:#?}");
    assert_eq!(denials[0].outcome, "not_found");
    assert_eq!(denials[0].subject, "res_nope");

    let revocations = events_of(&portal, AuditKind::Revocation, 1).await;
    assert_eq!(revocations.len(), 1, "{revocations:#?}");
    assert_eq!(revocations[0].outcome, "policy_changed");
    assert_eq!(
        revocations[0].detail["resource_ids"],
        serde_json::json!([lan])
    );

    // Filters combine: Ada's grants only, and nothing before now.
    let filter = AuditFilter {
        actor: Some(grants[0].actor.clone()),
        kind: Some(AuditKind::Grant),
        ..AuditFilter::default()
    };
    assert_eq!(store.audit_events(&filter).await.unwrap().len(), 1);
    let later = AuditFilter {
        since_ms: Some(ember_portal::audit::now_ms() + 60_000),
        ..AuditFilter::default()
    };
    assert!(store.audit_events(&later).await.unwrap().is_empty());
    portal.shutdown().await;
}

#[tokio::test]
async fn sign_ins_grants_denials_and_revocations_are_audited_on_sqlite() {
    everything_is_audited(TestPortal::sqlite().await).await;
}

#[tokio::test]
async fn sign_ins_grants_denials_and_revocations_are_audited_on_postgresql() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    everything_is_audited(TestPortal::start(cluster.url.clone(), Options::default(), None).await)
        .await;
}

#[tokio::test]
async fn a_flooding_device_does_not_flood_the_audit_log() {
    let portal = TestPortal::sqlite().await;
    let (_gateway, _) = portal.berlin_gateway().await;
    let (mut client, _) = portal.ada("laptop").await;
    for id in 0..300 {
        client.request_access(id, "res_nope").await;
    }
    let mut rate_limited = 0;
    for _ in 0..300 {
        if client.recv().await["reason"] == "rate_limited" {
            rate_limited += 1;
        }
    }
    assert!(rate_limited > 0, "the flood was not rate limited");
    // Let the writer catch up, then count: every denial but the rate-limited ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let denials = events_of(&portal, AuditKind::Denial, 300 - rate_limited).await;
    assert_eq!(denials.len(), 300 - rate_limited);
    assert!(denials.iter().all(|e| e.outcome == "not_found"));
    portal.shutdown().await;
}

/// On a store of its own: a running portal purges at start, and would race the test.
#[tokio::test]
async fn old_events_expired_tokens_and_used_attempts_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .unwrap();
    let day_ms = 24 * 3600 * 1000;
    let mut old = AuditEvent::now(AuditKind::Admin, "success", "cli:root", "old change");
    old.at_ms -= 100 * day_ms;
    let recent = AuditEvent::now(AuditKind::Admin, "success", "cli:root", "recent change");
    store.insert_audit_events(&[old, recent]).await.unwrap();
    let account = store.ensure_account("acme", "Acme").await.unwrap();
    let user = store
        .ensure_user(&account, "ada@acme.example", "Ada", None)
        .await
        .unwrap();
    let expired = now_unix() - 3 * 24 * 3600;
    store
        .insert_token(TokenKind::Client, &account, &user, "stale", Some(expired))
        .await
        .unwrap();
    let fresh_expiry = now_unix() + 3600;
    store
        .insert_token(
            TokenKind::Client,
            &account,
            &user,
            "fresh",
            Some(fresh_expiry),
        )
        .await
        .unwrap();

    let purged = store.purge(90 * 24 * 3600, 600).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            audit_events: 1,
            tokens: 1,
            sign_in_attempts: 0,
            sign_in_codes: 0,
        }
    );
    let left = store.audit_events(&AuditFilter::default()).await.unwrap();
    let subjects: Vec<&str> = left.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, ["recent change"]);
    assert!(store.find_token("fresh").await.unwrap().is_some());
    assert!(store.find_token("stale").await.unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn the_cli_records_admin_changes_and_prints_the_log_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("portal.db").display());
    let admin = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["--database", &database, "admin"])
            .args(args)
            .env("EMBER_LOG", "warn")
            .env("USER", "alice")
            .env_remove("SUDO_USER")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    admin(&["account", "create", "--slug", "acme", "--name", "Acme"]);
    admin(&["site", "create", "--account", "acme", "--name", "Berlin"]);
    admin(&["token", "list", "--account", "acme"]);
    let lines = admin(&["audit", "--kind", "admin", "--last", "1h"]);
    let events: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "listing tokens changes nothing: {lines}");
    assert!(
        events
            .iter()
            .all(|e| e["actor"] == "cli:alice" && e["outcome"] == "success")
    );
    assert_eq!(events[1]["detail"]["action"], "site.create");
    assert_eq!(events[1]["detail"]["name"], "Berlin");
    let none = admin(&["audit", "--kind", "grant"]);
    assert_eq!(none, "");
}
