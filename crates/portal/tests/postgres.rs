//! The same portal on PostgreSQL: a throwaway cluster started by the test (skipped, with a
//! message, only when the PostgreSQL server binaries are not installed).

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test]
async fn the_portal_works_end_to_end_on_postgresql_and_survives_a_restart() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let mut portal = TestPortal::start(cluster.url.clone(), Options::default(), None).await;

    // Sign-in through the page, a grant through a gateway, live revocation.
    let token = sign_in(&portal, "ada@acme.example").await;
    let (mut gateway, gateway_init) = portal.berlin_gateway().await;
    let (mut client, init) = Peer::client(portal.addr, &token, "device-1").await;
    let lan = init["resources"][1]["id"].as_str().unwrap().to_owned();
    client.request_access(1, &lan).await;
    let granted = client.recv().await;
    assert_eq!(
        granted["gateway"]["id"], gateway_init["gateway_id"],
        "{granted}"
    );
    assert_eq!(gateway.recv().await["type"], "grant");
    drop((client, gateway));

    // A restart on the same database keeps configuration, tokens and addresses; applying the
    // declared model again changes nothing.
    portal.restart().await;
    let (mut client, again) = Peer::client(portal.addr, &token, "device-1").await;
    assert_eq!(again["interface"], init["interface"]);
    assert_eq!(again["resources"], init["resources"]);

    let account = portal.account_id().await;
    let user = portal
        .store()
        .user_id(&account, "ada@acme.example")
        .await
        .unwrap();
    let started = Instant::now();
    portal.store().revoke_tokens_of(&user).await.unwrap();
    let signed_out = client
        .try_recv(Duration::from_secs(1))
        .await
        .expect("signed out within 1 s");
    assert_eq!(signed_out["reason"], "revoked");
    assert!(started.elapsed() <= Duration::from_secs(1));
    portal.shutdown().await;
}

#[tokio::test]
async fn two_portal_replicas_on_one_postgresql_database_share_the_model() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let first = TestPortal::start(cluster.url.clone(), Options::default(), None).await;
    let second = TestPortal::start(cluster.url.clone(), Options::default(), None).await;
    let token = sign_in(&first, "ada@acme.example").await;
    // A token issued by one replica is accepted by the other; a change made through one
    // reaches clients of the other.
    let (mut client, _) = Peer::client(second.addr, &token, "device-1").await;
    let account = first.account_id().await;
    let site = first.store().site_id(&account, "Berlin").await.unwrap();
    let group = first.store().group_id(&account, "eng").await.unwrap();
    let id = first
        .store()
        .upsert_resource(&account, &site, "New", "10.40.0.0/16", None, &[])
        .await
        .unwrap();
    first
        .store()
        .ensure_policy(&account, &group, &id)
        .await
        .unwrap();
    let update = client.recv().await;
    assert_eq!(update["type"], "resources_updated");
    first.shutdown().await;
    second.shutdown().await;
}
