//! The admin HTTP API (`/api/admin/v1`) on a real portal and database: who may call it, every
//! route, the cascades of deletions, typed errors for bad input, the audit log, and changes
//! reaching connected clients and gateways live.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use ember_portal::admin::{self, Admin};
use ember_portal::audit::{AuditFilter, AuditKind};
use ember_portal::store::TokenKind;
use ember_portal::{Store, crypto};
use serde_json::{Value, json};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ember-portal");
const LIVE: Duration = Duration::from_secs(3);

/// A caller of the API with one token.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(portal: &TestPortal, token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: portal.url("/api/admin/v1"),
            token: token.map(str::to_owned),
        }
    }

    /// `path` below `/api/admin/v1/accounts/acme` unless it starts with `!` (then below
    /// `/api/admin/v1`).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = match path.strip_prefix('!') {
            Some(path) => format!("{}{path}", self.base),
            None => format!("{}/accounts/acme{path}", self.base),
        };
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
    async fn put(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, None).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// The id of the object named `name` in the list at `path`.
    async fn id_of(&self, path: &str, name: &str) -> String {
        let (status, list) = self.get(path).await;
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name || o["email"] == name)
            .unwrap_or_else(|| panic!("{name} not in {list}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Makes `email` of `account` (a slug) an admin and returns a new admin token.
async fn admin_token(store: &Store, account: &str, email: &str) -> (String, String) {
    let account_id = store.account_id(account).await.unwrap();
    let acting = Admin::new(store, account_id.clone(), "test");
    let user_id = store.user_id(&account_id, email).await.unwrap();
    admin::users::set_admin(&acting, &user_id, true)
        .await
        .unwrap();
    let issued = admin::users::issue_admin_token(&acting, &user_id)
        .await
        .unwrap();
    (issued.token, issued.id)
}

async fn ada_admin(portal: &TestPortal) -> Api {
    let (token, _) = admin_token(portal.store(), "acme", "ada@acme.example").await;
    Api::new(portal, Some(&token))
}

fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    assert!(answer.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn callers_without_a_valid_admin_token_of_the_account_are_refused() {
    let portal = TestPortal::sqlite().await;
    let store = portal.store();

    assert_error(
        &Api::new(&portal, None).get("/users").await,
        401,
        "unauthorized",
    );
    let unknown = crypto::random_hex32();
    assert_error(
        &Api::new(&portal, Some(&unknown)).get("/users").await,
        401,
        "unauthorized",
    );
    assert_error(
        &Api::new(&portal, Some("short")).get("/users").await,
        401,
        "unauthorized",
    );

    // Bob signs in (a client token) but is no admin; a gateway token is no admin's either.
    let (bob, _) = portal.client_token("bob@acme.example").await;
    assert_error(
        &Api::new(&portal, Some(&bob)).get("/users").await,
        403,
        "forbidden",
    );
    let gateway = portal.gateway_token("berlin-1").await;
    assert_error(
        &Api::new(&portal, Some(&gateway)).get("/users").await,
        403,
        "forbidden",
    );

    // An admin of another account may not touch acme, and sees none of its ids from its own.
    let other = store.ensure_account("other", "Other").await.unwrap();
    store
        .ensure_user(&other, "eve@other.example", "Eve", None)
        .await
        .unwrap();
    let (eve, _) = admin_token(store, "other", "eve@other.example").await;
    let eve = Api::new(&portal, Some(&eve));
    assert_error(&eve.get("/users").await, 403, "forbidden");
    let ada_id = store
        .user_id(&portal.account_id().await, "ada@acme.example")
        .await
        .unwrap();
    assert_error(
        &eve.get(&format!("!/accounts/other/users/{ada_id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &eve.delete(&format!("!/accounts/other/users/{ada_id}"))
            .await,
        404,
        "not_found",
    );
    assert_eq!(eve.get("!/accounts/other/users").await.0, 200);

    // A revoked admin token, and an admin whose role was taken away.
    let (token, token_id) = admin_token(store, "acme", "ada@acme.example").await;
    let ada = Api::new(&portal, Some(&token));
    assert_eq!(ada.get("/users").await.0, 200);
    store.revoke_token(&token_id).await.unwrap();
    assert_error(&ada.get("/users").await, 401, "unauthorized");
    let (token, _) = admin_token(store, "acme", "ada@acme.example").await;
    let ada = Api::new(&portal, Some(&token));
    let account = portal.account_id().await;
    admin::users::set_admin(&Admin::new(store, account, "test"), &ada_id, false)
        .await
        .unwrap();
    assert_error(&ada.get("/users").await, 403, "forbidden");

    // An admin token opens no tunnel.
    let (token, _) = admin_token(store, "acme", "ada@acme.example").await;
    let refused = connect(portal.addr, "/api/client", &token)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, 403);
    assert_error(
        &Api::new(&portal, Some(&token)).get("!/no-such-route").await,
        404,
        "not_found",
    );
    assert_error(
        &Api::new(&portal, Some(&token)).put("/users").await,
        405,
        "method_not_allowed",
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn an_admin_who_signed_in_may_use_the_api_with_the_session_token() {
    let portal = TestPortal::sqlite().await;
    let session = sign_in(&portal, "ada@acme.example").await;
    let ada = Api::new(&portal, Some(&session));
    assert_error(&ada.get("!/me").await, 403, "forbidden");
    let account = portal.account_id().await;
    let ada_id = portal
        .store()
        .user_id(&account, "ada@acme.example")
        .await
        .unwrap();
    admin::users::set_admin(&Admin::new(portal.store(), account, "test"), &ada_id, true)
        .await
        .unwrap();
    let (status, me) = ada.get("!/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["account"], "acme");
    assert_eq!(me["user_id"], ada_id.as_str());
    portal.shutdown().await;
}

#[tokio::test]
async fn users_are_created_listed_updated_disabled_and_deleted() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;

    let (status, carol) = api
        .post(
            "/users",
            json!({"email": "Carol@Acme.Example", "name": "Carol", "password": "a long password"}),
        )
        .await;
    assert_eq!(status, 201, "{carol}");
    assert_eq!(carol["email"], "carol@acme.example");
    assert_eq!(carol["has_password"], true);
    assert_eq!(carol["kind"], "person");
    assert!(carol.get("password_hash").is_none());
    let carol_id = carol["id"].as_str().unwrap().to_owned();
    assert_error(
        &api.post(
            "/users",
            json!({"email": "carol@acme.example", "name": "Again"}),
        )
        .await,
        409,
        "conflict",
    );
    let (_, users) = api.get("/users").await;
    assert_eq!(users.as_array().unwrap().len(), 3);
    let (status, got) = api.get(&format!("/users/{carol_id}")).await;
    assert_eq!((status, &got["name"]), (200, &json!("Carol")));

    let (status, renamed) = api
        .patch(
            &format!("/users/{carol_id}"),
            json!({"name": "Carol C.", "admin": true}),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        (renamed["name"].clone(), renamed["admin"].clone()),
        (json!("Carol C."), json!(true))
    );
    assert_error(
        &api.patch(
            &format!("/users/{carol_id}"),
            json!({"email": "ada@acme.example"}),
        )
        .await,
        409,
        "conflict",
    );

    let (status, disabled) = api
        .post(&format!("/users/{carol_id}/disable"), json!({}))
        .await;
    assert_eq!((status, &disabled["disabled"]), (200, &json!(true)));
    let (status, enabled) = api
        .post(&format!("/users/{carol_id}/enable"), json!({}))
        .await;
    assert_eq!((status, &enabled["disabled"]), (200, &json!(false)));

    let account = portal.account_id().await;
    portal
        .store()
        .insert_token(
            TokenKind::Client,
            &account,
            &carol_id,
            &crypto::random_hex32(),
            None,
        )
        .await
        .unwrap();
    let (status, revoked) = api
        .post(&format!("/users/{carol_id}/revoke-tokens"), json!({}))
        .await;
    assert_eq!((status, &revoked["revoked"]), (200, &json!(1)));

    assert_eq!(api.delete(&format!("/users/{carol_id}")).await.0, 204);
    assert_error(
        &api.get(&format!("/users/{carol_id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &api.delete(&format!("/users/{carol_id}")).await,
        404,
        "not_found",
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_400_and_changes_nothing() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let (_, before) = api.get("/resources").await;
    let berlin = api.id_of("/sites", "Berlin").await;

    for body in [
        json!({"email": "not an email", "name": "X"}),
        json!({"email": "x@acme.example", "name": ""}),
        json!({"email": "x@acme.example", "name": "X", "role": "root"}),
        json!({"email": "x@acme.example"}),
        json!({"email": 7, "name": "X"}),
    ] {
        assert_error(&api.post("/users", body).await, 400, "bad_input");
    }
    for body in [
        json!({"site_id": berlin, "name": "Bad", "address": "10.0.0.0/99"}),
        json!({"site_id": berlin, "name": "Bad", "address": "10.0.0.1", "filters": ["icmp/8"]}),
        json!({"site_id": berlin, "name": "Bad", "address": "*.*.example"}),
    ] {
        assert_error(&api.post("/resources", body).await, 400, "bad_input");
    }
    let lan = api.id_of("/resources", "Office LAN").await;
    assert_error(
        &api.patch(
            &format!("/resources/{lan}"),
            json!({"address": "300.1.1.1/8"}),
        )
        .await,
        400,
        "bad_input",
    );
    let raw = reqwest::Client::new()
        .post(portal.url("/api/admin/v1/accounts/acme/groups"))
        .bearer_auth(api.token.as_deref().unwrap())
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"], "bad_input");
    let (_, after) = api.get("/resources").await;
    assert_eq!(before, after, "a refused request changed nothing");
    assert_eq!(api.get("/users").await.1.as_array().unwrap().len(), 2);
    portal.shutdown().await;
}

#[tokio::test]
async fn groups_and_memberships_are_managed_and_a_deleted_group_takes_its_policies() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let bob = api.id_of("/users", "bob@acme.example").await;

    let (status, ops) = api.post("/groups", json!({"name": "ops"})).await;
    assert_eq!(status, 201, "{ops}");
    let ops = ops["id"].as_str().unwrap().to_owned();
    assert_error(
        &api.post("/groups", json!({"name": "ops"})).await,
        409,
        "conflict",
    );
    let (status, renamed) = api
        .patch(&format!("/groups/{ops}"), json!({"name": "operations"}))
        .await;
    assert_eq!((status, &renamed["name"]), (200, &json!("operations")));

    assert_eq!(
        api.put(&format!("/groups/{ops}/members/{bob}")).await.0,
        204
    );
    assert_eq!(
        api.put(&format!("/groups/{ops}/members/{bob}")).await.0,
        204
    );
    let (_, members) = api.get(&format!("/groups/{ops}/members")).await;
    assert_eq!(members[0]["email"], "bob@acme.example");
    assert_error(
        &api.put(&format!("/groups/{ops}/members/usr_nobody")).await,
        404,
        "not_found",
    );
    assert_eq!(
        api.delete(&format!("/groups/{ops}/members/{bob}")).await.0,
        204
    );
    assert_error(
        &api.delete(&format!("/groups/{ops}/members/{bob}")).await,
        404,
        "not_found",
    );

    // eng's deletion removes Ada's membership and eng's three policies.
    let eng = api.id_of("/groups", "eng").await;
    assert_eq!(api.get(&format!("/groups/{eng}")).await.0, 200);
    let (_, policies) = api.get("/policies").await;
    assert_eq!(policies.as_array().unwrap().len(), 4);
    assert_eq!(api.delete(&format!("/groups/{eng}")).await.0, 204);
    let (_, policies) = api.get("/policies").await;
    assert_eq!(policies.as_array().unwrap().len(), 1, "{policies}");
    let ada = api.id_of("/users", "ada@acme.example").await;
    let (_, ada) = api.get(&format!("/users/{ada}")).await;
    assert_eq!(ada["groups"], json!([]));
    portal.shutdown().await;
}

#[tokio::test]
async fn sites_gateways_resources_and_policies_are_managed_and_a_deleted_site_takes_all_of_them() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;

    let (status, lyon) = api.post("/sites", json!({"name": "Lyon"})).await;
    assert_eq!(status, 201, "{lyon}");
    let lyon = lyon["id"].as_str().unwrap().to_owned();
    assert_error(
        &api.post("/sites", json!({"name": "Berlin"})).await,
        409,
        "conflict",
    );
    let (status, site) = api
        .patch(&format!("/sites/{lyon}"), json!({"name": "Lyon 2"}))
        .await;
    assert_eq!((status, &site["name"]), (200, &json!("Lyon 2")));
    assert_eq!(api.get(&format!("/sites/{lyon}")).await.0, 200);

    // A gateway's token is shown once, and it connects.
    let (status, created) = api
        .post("/gateways", json!({"site_id": lyon, "name": "lyon-1"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let gateway_id = created["gateway"]["id"].as_str().unwrap().to_owned();
    let token = created["token"]["token"].as_str().unwrap().to_owned();
    let (mut gateway, init) = Peer::gateway(portal.addr, &token, "lyon-1").await;
    assert_eq!(init["gateway_id"], gateway_id.as_str());
    let (_, listed) = api.get("/gateways").await;
    assert!(
        !listed.to_string().contains(&token),
        "listing shows no secret"
    );
    assert_error(
        &api.post("/gateways", json!({"site_id": lyon, "name": "lyon-1"}))
            .await,
        409,
        "conflict",
    );
    assert_error(
        &api.post("/gateways", json!({"site_id": "site_nope", "name": "x"}))
            .await,
        404,
        "not_found",
    );
    let (status, renamed) = api
        .patch(
            &format!("/gateways/{gateway_id}"),
            json!({"name": "lyon-a"}),
        )
        .await;
    assert_eq!((status, &renamed["name"]), (200, &json!("lyon-a")));
    assert_eq!(api.get(&format!("/gateways/{gateway_id}")).await.0, 200);
    let (status, second) = api
        .post(&format!("/gateways/{gateway_id}/tokens"), json!({}))
        .await;
    assert_eq!(status, 201, "{second}");

    let (status, resource) = api
        .post(
            "/resources",
            json!({"site_id": lyon, "name": "Lyon wiki", "address": "wiki.lyon.example",
                   "description": "the wiki", "filters": ["tcp/443", "icmp"]}),
        )
        .await;
    assert_eq!(status, 201, "{resource}");
    assert_eq!(resource["filters"][0]["protocol"], "tcp");
    let resource_id = resource["id"].as_str().unwrap().to_owned();
    let (status, changed) = api
        .patch(
            &format!("/resources/{resource_id}"),
            json!({"address": "10.9.0.0/16", "description": ""}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["address"].clone(), changed["description"].clone()),
        (json!("10.9.0.0/16"), Value::Null)
    );
    assert_eq!(
        changed["filters"].as_array().unwrap().len(),
        2,
        "filters kept"
    );
    assert_eq!(api.get(&format!("/resources/{resource_id}")).await.0, 200);

    let eng = api.id_of("/groups", "eng").await;
    let (status, policy) = api
        .post(
            "/policies",
            json!({"group_id": eng, "resource_id": resource_id}),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    let policy_id = policy["id"].as_str().unwrap().to_owned();
    assert_error(
        &api.post(
            "/policies",
            json!({"group_id": eng, "resource_id": resource_id}),
        )
        .await,
        409,
        "conflict",
    );
    assert_eq!(api.get(&format!("/policies/{policy_id}")).await.0, 200);

    // The site goes, and with it the resource, its policy, the gateway and its tokens: the
    // gateway is disconnected and its token refused.
    assert_eq!(api.delete(&format!("/sites/{lyon}")).await.0, 204);
    assert_error(
        &api.get(&format!("/resources/{resource_id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &api.get(&format!("/policies/{policy_id}")).await,
        404,
        "not_found",
    );
    assert_error(
        &api.get(&format!("/gateways/{gateway_id}")).await,
        404,
        "not_found",
    );
    assert!(
        gateway.closed_within(LIVE).await,
        "the deleted gateway is disconnected"
    );
    let refused = connect(portal.addr, "/api/gateway", &token)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, 401);
    let (_, tokens) = api.get("/tokens").await;
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["gateway_id"] != gateway_id.as_str()),
        "{tokens}"
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn a_deleted_gateway_is_disconnected_and_its_token_stops_working() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let token = portal.gateway_token("berlin-1").await;
    let (mut gateway, init) = Peer::gateway(portal.addr, &token, "berlin-1").await;
    let id = init["gateway_id"].as_str().unwrap().to_owned();
    assert_eq!(api.delete(&format!("/gateways/{id}")).await.0, 204);
    assert!(gateway.closed_within(LIVE).await);
    assert_eq!(
        connect(portal.addr, "/api/gateway", &token)
            .await
            .err()
            .unwrap()
            .0,
        401
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn a_resource_and_policy_created_through_the_api_reach_a_connected_client_live_and_their_deletion_withdraws_access()
 {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let (mut client, init) = portal.ada("device-1").await;
    let before = init["resources"].as_array().unwrap().len();

    let berlin = api.id_of("/sites", "Berlin").await;
    let (_, resource) = api
        .post(
            "/resources",
            json!({"site_id": berlin, "name": "Grafana", "address": "10.50.0.7"}),
        )
        .await;
    let resource_id = resource["id"].as_str().unwrap().to_owned();
    let eng = api.id_of("/groups", "eng").await;
    let (_, policy) = api
        .post(
            "/policies",
            json!({"group_id": eng, "resource_id": resource_id}),
        )
        .await;
    let update = client
        .next_of("resources_updated", LIVE)
        .await
        .expect("live update");
    assert_eq!(
        update["resources"].as_array().unwrap().len(),
        before + 1,
        "{update}"
    );

    assert_eq!(
        api.delete(&format!("/policies/{}", policy["id"].as_str().unwrap()))
            .await
            .0,
        204
    );
    let update = client
        .next_of("resources_updated", LIVE)
        .await
        .expect("live update");
    assert_eq!(update["resources"].as_array().unwrap().len(), before);

    // A granted resource that is deleted is withdrawn from the gateway too.
    let (mut gateway, _) = portal.berlin_gateway().await;
    let lan = api.id_of("/resources", "Office LAN").await;
    client.request_access(1, &lan).await;
    assert_eq!(
        gateway.next_of("grant", LIVE).await.expect("grant")["type"],
        "grant"
    );
    assert_eq!(api.delete(&format!("/resources/{lan}")).await.0, 204);
    let revoke = gateway.next_of("revoke", LIVE).await.expect("revoke");
    assert_eq!(revoke["resource_ids"], json!([lan]));
    let update = client
        .next_of("resources_updated", LIVE)
        .await
        .expect("live update");
    assert!(!update.to_string().contains(&lan));
    portal.shutdown().await;
}

#[tokio::test]
async fn deleting_or_disabling_a_user_signs_their_devices_out_live() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let bob_id = api.id_of("/users", "bob@acme.example").await;
    let (bob, _) = portal.client_token("bob@acme.example").await;
    let (mut client, _) = Peer::client(portal.addr, &bob, "bob-laptop").await;
    api.post(&format!("/users/{bob_id}/disable"), json!({}))
        .await;
    let signed_out = client
        .next_of("signed_out", LIVE)
        .await
        .expect("signed out");
    assert_eq!(signed_out["reason"], "revoked");

    api.post(&format!("/users/{bob_id}/enable"), json!({}))
        .await;
    let (mut client, _) = Peer::client(portal.addr, &bob, "bob-laptop").await;
    assert_eq!(api.delete(&format!("/users/{bob_id}")).await.0, 204);
    assert!(client.closed_within(LIVE).await);
    assert_eq!(
        connect(portal.addr, "/api/client", &bob)
            .await
            .err()
            .unwrap()
            .0,
        401
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_revoking_one_signs_its_device_out() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let (bob, bob_token_id) = portal.client_token("bob@acme.example").await;
    let (mut client, _) = Peer::client(portal.addr, &bob, "bob-laptop").await;
    let (status, tokens) = api.get("/tokens").await;
    assert_eq!(status, 200);
    assert!(tokens.to_string().contains(&bob_token_id));
    assert!(
        !tokens.to_string().contains(&bob),
        "no secret in the listing"
    );
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "admin")
    );

    assert_eq!(api.delete(&format!("/tokens/{bob_token_id}")).await.0, 204);
    assert_eq!(
        client
            .next_of("signed_out", LIVE)
            .await
            .expect("signed out")["reason"],
        "revoked"
    );
    assert_error(
        &api.delete(&format!("/tokens/{bob_token_id}")).await,
        409,
        "conflict",
    );
    assert_error(&api.delete("/tokens/tok_nope").await, 404, "not_found");

    // Another account's token is not found from acme.
    let store = portal.store();
    let other = store.ensure_account("other", "Other").await.unwrap();
    let eve = store
        .ensure_user(&other, "eve@other.example", "Eve", None)
        .await
        .unwrap();
    let eve_token = store
        .insert_token(
            TokenKind::Client,
            &other,
            &eve,
            &crypto::random_hex32(),
            None,
        )
        .await
        .unwrap();
    assert_error(
        &api.delete(&format!("/tokens/{eve_token}")).await,
        404,
        "not_found",
    );
    assert!(
        store
            .token_by_id(&eve_token)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn a_service_account_connects_with_its_long_lived_token_and_cannot_get_a_password() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let (status, created) = api
        .post("/service-accounts", json!({"name": "ci runner"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["service_account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created["service_account"]["kind"], "service");
    assert_eq!(created["service_account"]["has_password"], false);
    let token = created["token"]["token"].as_str().unwrap().to_owned();
    let (_, listed) = api.get("/service-accounts").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let eng = api.id_of("/groups", "eng").await;
    assert_eq!(api.put(&format!("/groups/{eng}/members/{id}")).await.0, 204);
    let (_, init) = Peer::client(portal.addr, &token, "ci-1").await;
    assert!(!init["resources"].as_array().unwrap().is_empty());
    let (_, tokens) = api.get("/tokens").await;
    let listed = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user_id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["expires_at"], Value::Null);

    assert_error(
        &api.patch(
            &format!("/users/{id}"),
            json!({"password": "hunter22hunter22"}),
        )
        .await,
        400,
        "bad_input",
    );
    let (status, second) = api
        .post(&format!("/service-accounts/{id}/tokens"), json!({}))
        .await;
    assert_eq!(status, 201, "{second}");
    let ada = api.id_of("/users", "ada@acme.example").await;
    assert_error(
        &api.post(&format!("/service-accounts/{ada}/tokens"), json!({}))
            .await,
        400,
        "bad_input",
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn every_change_through_the_api_is_in_the_audit_log_with_the_admin_as_actor() {
    let portal = TestPortal::sqlite().await;
    let api = ada_admin(&portal).await;
    let ada = api.id_of("/users", "ada@acme.example").await;
    let (_, site) = api.post("/sites", json!({"name": "Oslo"})).await;
    let site = site["id"].as_str().unwrap().to_owned();
    api.delete(&format!("/sites/{site}")).await;
    api.get("/sites").await;
    let events = portal
        .store()
        .audit_events(&AuditFilter {
            kind: Some(AuditKind::Admin),
            actor: Some(ada.clone()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e.detail["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["site.create", "site.delete"]);
    assert!(
        events
            .iter()
            .all(|e| e.subject == site && e.account_id.is_some())
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn the_cli_grants_the_admin_role_and_prints_an_admin_token_that_revocation_ends() {
    let portal = TestPortal::sqlite().await;
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["--database", &portal.database, "admin"])
            .args(args)
            .env("EMBER_LOG", "warn")
            .env("USER", "root")
            .env_remove("SUDO_USER")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let email = ["--account", "acme", "--email", "bob@acme.example"];
    let (ok, _) = cli(&[&["token", "create-admin"][..], &email].concat());
    assert!(!ok, "no admin token for a user without the role");
    assert!(cli(&[&["user", "grant-admin"][..], &email].concat()).0);
    let (ok, printed) = cli(&[&["token", "create-admin"][..], &email].concat());
    assert!(ok, "{printed}");
    let token = printed.trim().rsplit(' ').next().unwrap().to_owned();
    let api = Api::new(&portal, Some(&token));
    let (status, me) = api.get("!/me").await;
    assert_eq!((status, &me["account"]), (200, &json!("acme")), "{me}");

    assert!(cli(&[&["user", "revoke-admin"][..], &email].concat()).0);
    assert_error(&api.get("!/me").await, 403, "forbidden");
    assert!(cli(&[&["user", "grant-admin"][..], &email].concat()).0);
    assert_eq!(api.get("!/me").await.0, 200);
    let token_id = printed
        .split('(')
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    assert!(cli(&["token", "revoke", "--id", token_id]).0);
    assert_error(&api.get("!/me").await, 401, "unauthorized");

    let events = portal
        .store()
        .audit_events(&AuditFilter {
            actor: Some("cli:root".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = events
        .iter()
        .filter_map(|e| e.detail["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "user.grant_admin",
            "token.create",
            "user.revoke_admin",
            "user.grant_admin",
            "token.revoke"
        ]
    );
    assert_eq!(
        events[0].outcome, "failure",
        "the refused create-admin is recorded"
    );
    portal.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_works_end_to_end_on_postgresql() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let portal = TestPortal::start(cluster.url.clone(), Options::default(), None).await;
    let api = ada_admin(&portal).await;
    let (mut client, _) = portal.ada("device-1").await;

    let (status, site) = api.post("/sites", json!({"name": "Lyon"})).await;
    assert_eq!(status, 201, "{site}");
    let site = site["id"].as_str().unwrap().to_owned();
    assert_error(
        &api.post("/sites", json!({"name": "Lyon"})).await,
        409,
        "conflict",
    );
    let (_, created) = api
        .post("/gateways", json!({"site_id": site, "name": "lyon-1"}))
        .await;
    let token = created["token"]["token"].as_str().unwrap().to_owned();
    let (mut gateway, _) = Peer::gateway(portal.addr, &token, "lyon-1").await;
    let (_, resource) = api
        .post("/resources", json!({"site_id": site, "name": "Lyon wiki", "address": "10.9.0.0/16", "filters": ["tcp/443"]}))
        .await;
    let eng = api.id_of("/groups", "eng").await;
    let (status, _) = api
        .post(
            "/policies",
            json!({"group_id": eng, "resource_id": resource["id"]}),
        )
        .await;
    assert_eq!(status, 201);
    let update = client
        .next_of("resources_updated", LIVE)
        .await
        .expect("live update");
    assert!(update.to_string().contains("Lyon wiki"));
    let (_, users) = api.get("/users").await;
    assert_eq!(users.as_array().unwrap().len(), 2);

    assert_eq!(api.delete(&format!("/sites/{site}")).await.0, 204);
    let update = client
        .next_of("resources_updated", LIVE)
        .await
        .expect("live update");
    assert!(!update.to_string().contains("Lyon wiki"));
    assert!(gateway.closed_within(LIVE).await);
    assert_eq!(api.get("/policies").await.1.as_array().unwrap().len(), 4);
    let eng_members = api.get(&format!("/groups/{eng}/members")).await.1;
    assert_eq!(eng_members[0]["email"], "ada@acme.example");
    assert_eq!(api.delete(&format!("/groups/{eng}")).await.0, 204);
    assert_eq!(api.get("/policies").await.1.as_array().unwrap().len(), 1);
    portal.shutdown().await;
}
