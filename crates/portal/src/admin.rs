//! Administrative operations shared by `ember-portal admin …` and `ember-portal demo`. They
//! write to the store and bump its generation; running portals pick the change up live.

use crate::Error;
use crate::crypto;
use crate::store::{Store, TokenKind};

/// What `demo` created; the password and gateway token are shown once and never stored.
#[derive(Debug)]
pub struct Demo {
    pub account: String,
    pub email: String,
    pub password: String,
    pub site: String,
    pub gateway_token: String,
    pub resource: String,
}

/// Creates (or refreshes) a ready-to-use account: a user with a new random password, a group
/// with a policy for a resource in a site, and a new gateway token for that site.
pub async fn demo(store: &Store) -> Result<Demo, Error> {
    let account_id = store.ensure_account("demo", "Ember demo").await?;
    let email = "demo@ember.invalid".to_owned();
    let password = crypto::random_password();
    let hash = crypto::hash_password(&password)?;
    let user_id = store
        .ensure_user(&account_id, &email, "Demo User", Some(&hash))
        .await?;
    let group_id = store.ensure_group(&account_id, "Everyone").await?;
    store.add_group_member(&group_id, &user_id).await?;
    let site_id = store.ensure_site(&account_id, "Home").await?;
    let resource_id = store
        .upsert_resource(
            &account_id,
            &site_id,
            "Demo web server",
            "192.0.2.10",
            Some("the testbed's web server"),
            &["tcp/80".to_owned(), "icmp".to_owned()],
        )
        .await?;
    store
        .ensure_policy(&account_id, &group_id, &resource_id)
        .await?;
    let gateway_token = create_gateway_token(store, &account_id, &site_id, "home-gateway").await?;
    Ok(Demo {
        account: "demo".into(),
        email,
        password,
        site: "Home".into(),
        gateway_token,
        resource: "Demo web server (192.0.2.10, tcp/80 and icmp)".into(),
    })
}

/// Creates the gateway if needed and issues a new token for it (no expiry; revocable).
pub async fn create_gateway_token(
    store: &Store,
    account_id: &str,
    site_id: &str,
    name: &str,
) -> Result<String, Error> {
    let gateway_id = store.ensure_gateway(account_id, site_id, name).await?;
    let token = crypto::random_hex32();
    store
        .insert_token(TokenKind::Gateway, account_id, &gateway_id, &token, None)
        .await?;
    Ok(token)
}
