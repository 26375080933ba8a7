//! Devices are keyed on user + device key: one user of an account cannot take over another
//! user's device by sending its device key.

#![allow(clippy::unwrap_used)] // scenarios and helpers outside #[test] functions

mod support;

use std::time::Duration;

use support::*;

async fn a_device_key_cannot_rebind_a_device_of_another_user(portal: TestPortal) {
    let (ada_token, _) = portal.client_token("ada@acme.example").await;
    let (mut ada, ada_init) = Peer::client(portal.addr, &ada_token, "ada-laptop").await;
    // Bob learned Ada's device key (it is not a secret: it is in logs and support bundles).
    let (bob_token, _) = portal.client_token("bob@acme.example").await;
    let (_bob, bob_init) = Peer::client(portal.addr, &bob_token, "ada-laptop").await;
    assert_ne!(
        bob_init["interface"], ada_init["interface"],
        "Bob gets his own device and addresses, not Ada's"
    );
    assert!(
        ada.try_recv(Duration::from_millis(500)).await.is_none(),
        "Ada's connection is not replaced"
    );
    // Ada's device is still hers: the same addresses when she comes back.
    drop(ada);
    let (_ada, again) = Peer::client(portal.addr, &ada_token, "ada-laptop").await;
    assert_eq!(again["interface"], ada_init["interface"]);
    portal.shutdown().await;
}

#[tokio::test]
async fn a_device_key_cannot_rebind_a_device_of_another_user_on_sqlite() {
    a_device_key_cannot_rebind_a_device_of_another_user(TestPortal::sqlite().await).await;
}

#[tokio::test]
async fn a_device_key_cannot_rebind_a_device_of_another_user_on_postgresql() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let portal = TestPortal::start(cluster.url.clone(), Options::default(), None).await;
    a_device_key_cannot_rebind_a_device_of_another_user(portal).await;
}
