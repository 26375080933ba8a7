//! Access that outlives its policy: an edited resource, a gateway that falls behind, a device
//! that floods the portal with requests.

#![allow(clippy::unwrap_used)] // scenarios and helpers outside #[test] functions

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::*;

/// Editing a resource keeps its id: without a revocation, every device that held it kept the
/// old definition (a wider network, other ports) at its gateway until its token expired.
async fn an_edited_resource_is_revoked_for_every_holder_at_once(portal: TestPortal) {
    let (mut gateway, _) = portal.berlin_gateway().await;
    let (mut laptop, init) = portal.ada("laptop").await;
    let lan = init["resources"][1]["id"].as_str().unwrap().to_owned();
    let (mut desktop, _) = portal.ada("desktop").await;
    for device in [&mut laptop, &mut desktop] {
        device.request_access(1, &lan).await;
        assert_eq!(device.recv().await["type"], "access_granted");
        assert_eq!(gateway.recv().await["type"], "grant");
    }
    // The desktop's link to the portal drops; its grant stays for the reconnect grace.
    drop(desktop);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The administrator widens the LAN resource (same name, so the same id).
    let store = portal.store();
    let account = portal.account_id().await;
    let site = store.site_id(&account, "Berlin").await.unwrap();
    let edited = store
        .upsert_resource(&account, &site, "Office LAN", "10.0.0.0/8", None, &[])
        .await
        .unwrap();
    assert_eq!(edited, lan);

    // The gateway withdraws the LAN from both holders, the connected one and the one away.
    let mut revoked = BTreeSet::new();
    for _ in 0..2 {
        let revoke = gateway
            .next_of("revoke", Duration::from_secs(2))
            .await
            .expect("a revoke for each holder within the change poll");
        let ids = revoke["resource_ids"].as_array().unwrap();
        assert!(
            ids.is_empty() || ids == &vec![json!(lan)],
            "only the LAN (or all of the away device's grants): {revoke}"
        );
        revoked.insert(revoke["client_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(revoked.len(), 2, "both holders: {revoked:?}");

    // The connected client hears of the new definition and asks again; the gateway gets it.
    let update = laptop
        .next_of("resources_updated", Duration::from_secs(2))
        .await
        .expect("the client hears of the change");
    let lan_now = update["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == lan.as_str())
        .unwrap()
        .clone();
    assert_eq!(lan_now["address"]["cidr"], "10.0.0.0/8", "{update}");
    laptop.request_access(2, &lan).await;
    assert_eq!(laptop.recv().await["type"], "access_granted");
    let grant = gateway
        .next_of("grant", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(grant["resource"]["address"]["cidr"], "10.0.0.0/8");
    portal.shutdown().await;
}

#[tokio::test]
async fn an_edited_resource_is_revoked_for_every_holder_at_once_on_sqlite() {
    an_edited_resource_is_revoked_for_every_holder_at_once(TestPortal::sqlite().await).await;
}

#[tokio::test]
async fn an_edited_resource_is_revoked_for_every_holder_at_once_on_postgresql() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let portal = TestPortal::start(cluster.url.clone(), Options::default(), None).await;
    an_edited_resource_is_revoked_for_every_holder_at_once(portal).await;
}

/// Changing only the description changes no access: no revocation, no new handshake.
#[tokio::test]
async fn a_described_resource_keeps_its_grants() {
    let portal = TestPortal::sqlite().await;
    let (mut gateway, _) = portal.berlin_gateway().await;
    let (mut laptop, init) = portal.ada("laptop").await;
    let lan = init["resources"][1]["id"].as_str().unwrap().to_owned();
    laptop.request_access(1, &lan).await;
    assert_eq!(laptop.recv().await["type"], "access_granted");
    assert_eq!(gateway.recv().await["type"], "grant");
    let store = portal.store();
    let account = portal.account_id().await;
    let site = store.site_id(&account, "Berlin").await.unwrap();
    store
        .upsert_resource(
            &account,
            &site,
            "Office LAN",
            "10.20.0.0/16",
            Some("the office"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(laptop.recv().await["type"], "resources_updated");
    assert!(
        gateway
            .next_of("revoke", Duration::from_millis(500))
            .await
            .is_none()
    );
    portal.shutdown().await;
}

/// A device that sends access requests as fast as it can would keep the portal and its
/// gateways busy for everyone: after a burst it is answered `rate_limited`.
#[tokio::test]
async fn a_device_flooding_access_requests_is_rate_limited() {
    let portal = TestPortal::sqlite().await;
    let (_gateway, _) = portal.berlin_gateway().await;
    let (mut client, init) = portal.ada("laptop").await;
    let lan = init["resources"][1]["id"].as_str().unwrap().to_owned();
    const REQUESTS: u64 = 300;
    for request_id in 0..REQUESTS {
        client
            .send(json!({"type": "request_access", "request_id": request_id, "resource_id": lan}))
            .await;
    }
    let mut answers = Vec::new();
    for _ in 0..REQUESTS {
        answers.push(client.recv().await);
    }
    assert!(
        answers[..100].iter().all(|a| a["type"] == "access_granted"),
        "the burst is granted"
    );
    let limited = answers
        .iter()
        .filter(|a| a["type"] == "access_denied" && a["reason"] == "rate_limited")
        .count();
    assert!(limited >= 100, "{limited} of {REQUESTS} rate-limited");
    // A moment later the device may ask again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .send(json!({"type": "request_access", "request_id": REQUESTS, "resource_id": lan}))
        .await;
    assert_eq!(client.recv().await["type"], "access_granted");
    portal.shutdown().await;
}
