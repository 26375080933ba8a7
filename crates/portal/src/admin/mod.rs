//! Administration: the one implementation behind `ember-portal admin …` and the admin HTTP API
//! (`crate::admin_api`), plus `ember-portal demo`.
//!
//! Every operation acts for an [`Admin`] (an account and an actor: `cli:<login>` or an admin's
//! user id), takes values already parsed ([`input`]), writes through the store (which bumps
//! the generation, so running portals apply the change live) and records an `admin` event in
//! the audit log.
//!
//! - [`users`]: users, the admin role, service accounts; [`groups`]: groups and members;
//!   [`sites`]: sites and gateways; [`resources`]: resources and policies; [`tokens`]:
//!   listing, revoking and issuing tokens.

pub mod groups;
pub mod input;
pub mod resources;
pub mod sites;
pub mod tokens;
pub mod users;

use serde_json::Value;
use tracing::warn;

use crate::Error;
use crate::audit::{AuditEvent, AuditKind};
use crate::crypto::{self, CryptoError};
use crate::store::{Store, StoreError, TokenKind};

/// Why an administrative operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Invalid(why) => Self::Invalid(why),
            StoreError::Model(why) => Self::Invalid(why.to_string()),
            e if e.is_conflict() => Self::Conflict("that name is already taken".into()),
            e => Self::Store(e),
        }
    }
}

/// Turns a unique-key refusal into a conflict that says what was taken.
pub(crate) fn taken(what: impl Into<String>) -> impl FnOnce(StoreError) -> AdminError {
    let what = what.into();
    move |e| {
        if e.is_conflict() {
            AdminError::Conflict(what)
        } else {
            AdminError::from(e)
        }
    }
}

/// Who acts on which account.
#[derive(Debug, Clone)]
pub struct Admin<'a> {
    pub store: &'a Store,
    pub account_id: String,
    /// `cli:<login>` or the acting admin's user id.
    pub actor: String,
}

impl<'a> Admin<'a> {
    pub fn new(store: &'a Store, account_id: impl Into<String>, actor: impl Into<String>) -> Self {
        Self {
            store,
            account_id: account_id.into(),
            actor: actor.into(),
        }
    }

    /// Records a change that was made. The change stands even if the record cannot be
    /// written; that is said in the log.
    pub(crate) async fn record(&self, action: &str, subject: &str, mut detail: Value) {
        if let Value::Object(map) = &mut detail {
            map.insert("action".into(), Value::String(action.to_owned()));
        }
        let event = AuditEvent::now(AuditKind::Admin, "success", &self.actor, subject)
            .account(&self.account_id)
            .detail(detail);
        if let Err(e) = self.store.insert_audit_events(&[event]).await {
            warn!(error = %e, action, "The audit log could not record this change");
        }
    }
}

/// Creates an account or renames it (CLI only: the API works inside one account).
pub async fn create_account(
    store: &Store,
    actor: &str,
    slug: &str,
    name: &str,
) -> Result<String, AdminError> {
    let id = store.ensure_account(slug, name).await?;
    Admin::new(store, id.clone(), actor)
        .record(
            "account.create",
            &id,
            serde_json::json!({ "slug": slug, "name": name }),
        )
        .await;
    Ok(id)
}

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
