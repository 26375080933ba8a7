//! Users: people who sign in (password or OIDC), the admin role, and service accounts (users
//! that never sign in interactively and use a long-lived client token, e.g. the headless client).

use serde_json::json;

use super::input::{Email, Name, Password};
use super::tokens::{self, IssuedToken};
use super::{Admin, AdminError, taken};
use crate::crypto;
use crate::store::{TokenKind, UserChange, UserKind, UserRow};

/// A person to create. Without a password the user signs in through OIDC only.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub name: Name,
    pub password: Option<Password>,
    pub admin: bool,
}

/// What an update changes; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub email: Option<Email>,
    pub name: Option<Name>,
    pub password: Option<Password>,
    pub disabled: Option<bool>,
    pub admin: Option<bool>,
}

pub async fn list(admin: &Admin<'_>) -> Result<Vec<UserRow>, AdminError> {
    Ok(admin.store.list_users(&admin.account_id).await?)
}

pub async fn get(admin: &Admin<'_>, user_id: &str) -> Result<UserRow, AdminError> {
    Ok(admin.store.user(&admin.account_id, user_id).await?)
}

/// The user with this email in the admin's account, if any.
pub async fn find(admin: &Admin<'_>, email: &Email) -> Result<Option<UserRow>, AdminError> {
    match admin.store.user_id(&admin.account_id, email.as_str()).await {
        Ok(id) => Ok(Some(get(admin, &id).await?)),
        Err(crate::store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(admin: &Admin<'_>, user: NewUser) -> Result<UserRow, AdminError> {
    let hash = user
        .password
        .as_ref()
        .map(|p| crypto::hash_password(p.expose()))
        .transpose()?;
    let id = admin
        .store
        .insert_user(
            &admin.account_id,
            user.email.as_str(),
            user.name.as_str(),
            hash.as_deref(),
            UserKind::Person,
        )
        .await
        .map_err(taken(format!(
            "a user {} already exists",
            user.email.as_str()
        )))?;
    if user.admin {
        let grant = UserChange {
            admin: Some(true),
            ..UserChange::default()
        };
        admin
            .store
            .update_user(&admin.account_id, &id, &grant)
            .await?;
    }
    admin
        .record(
            "user.create",
            &id,
            json!({ "email": user.email.as_str(), "admin": user.admin }),
        )
        .await;
    get(admin, &id).await
}

pub async fn update(
    admin: &Admin<'_>,
    user_id: &str,
    update: UserUpdate,
) -> Result<UserRow, AdminError> {
    let current = get(admin, user_id).await?;
    if update.password.is_some() && current.kind == UserKind::Service {
        return Err(AdminError::Invalid(
            "a service account has no password; it uses its token".into(),
        ));
    }
    let change = UserChange {
        email: update.email.as_ref().map(|e| e.as_str().to_owned()),
        name: update.name.as_ref().map(|n| n.as_str().to_owned()),
        password_hash: update
            .password
            .as_ref()
            .map(|p| crypto::hash_password(p.expose()))
            .transpose()?,
        disabled: update.disabled,
        admin: update.admin,
    };
    let email = change.email.clone();
    admin
        .store
        .update_user(&admin.account_id, user_id, &change)
        .await
        .map_err(taken(format!(
            "a user {} already exists",
            email.as_deref().unwrap_or_default()
        )))?;
    admin
        .record(
            "user.update",
            user_id,
            json!({
                "email": change.email,
                "name": change.name,
                "password_changed": change.password_hash.is_some(),
                "disabled": change.disabled,
                "admin": change.admin,
            }),
        )
        .await;
    get(admin, user_id).await
}

/// Disables or enables a user; a disabled user's devices are signed out live.
pub async fn set_disabled(
    admin: &Admin<'_>,
    user_id: &str,
    disabled: bool,
) -> Result<UserRow, AdminError> {
    let update = UserUpdate {
        disabled: Some(disabled),
        ..UserUpdate::default()
    };
    update_user_field(
        admin,
        user_id,
        update,
        if disabled {
            "user.disable"
        } else {
            "user.enable"
        },
    )
    .await
}

/// Grants or revokes the admin role. The role is checked on every API call, so a revoked
/// admin's tokens stop working at once.
pub async fn set_admin(
    admin: &Admin<'_>,
    user_id: &str,
    is_admin: bool,
) -> Result<UserRow, AdminError> {
    let update = UserUpdate {
        admin: Some(is_admin),
        ..UserUpdate::default()
    };
    let action = if is_admin {
        "user.grant_admin"
    } else {
        "user.revoke_admin"
    };
    update_user_field(admin, user_id, update, action).await
}

/// Deletes a user with their tokens, devices and memberships; their devices are signed out
/// live.
pub async fn delete(admin: &Admin<'_>, user_id: &str) -> Result<(), AdminError> {
    let user = get(admin, user_id).await?;
    admin.store.delete_user(&admin.account_id, user_id).await?;
    admin
        .record("user.delete", user_id, json!({ "email": user.email }))
        .await;
    Ok(())
}

/// Revokes every token of a user; returns how many.
pub async fn revoke_tokens(admin: &Admin<'_>, user_id: &str) -> Result<u64, AdminError> {
    get(admin, user_id).await?;
    let revoked = admin.store.revoke_tokens_of(user_id).await?;
    admin
        .record("user.revoke_tokens", user_id, json!({ "revoked": revoked }))
        .await;
    Ok(revoked)
}

/// Creates a service account and its first token (no expiry; revocable). The token is shown
/// once.
pub async fn create_service_account(
    admin: &Admin<'_>,
    name: Name,
) -> Result<(UserRow, IssuedToken), AdminError> {
    // Service accounts have no mailbox; the address only keeps `users (account_id, email)`
    // unique and can never match an OIDC identity's verified email.
    let email = format!("{}@service.invalid", crypto::new_id("svc"));
    let id = admin
        .store
        .insert_user(
            &admin.account_id,
            &email,
            name.as_str(),
            None,
            UserKind::Service,
        )
        .await?;
    admin
        .record(
            "service_account.create",
            &id,
            json!({ "name": name.as_str() }),
        )
        .await;
    let token = tokens::issue(admin, TokenKind::Client, &id, None).await?;
    Ok((get(admin, &id).await?, token))
}

/// A new token for a service account (its old tokens stay valid until revoked).
pub async fn issue_service_token(
    admin: &Admin<'_>,
    user_id: &str,
) -> Result<IssuedToken, AdminError> {
    let user = get(admin, user_id).await?;
    if user.kind != UserKind::Service {
        return Err(AdminError::Invalid(
            "only service accounts get tokens here; people sign in".into(),
        ));
    }
    tokens::issue(admin, TokenKind::Client, user_id, None).await
}

/// A new admin API token for a user who has the admin role.
pub async fn issue_admin_token(
    admin: &Admin<'_>,
    user_id: &str,
) -> Result<IssuedToken, AdminError> {
    let user = get(admin, user_id).await?;
    if !user.admin {
        return Err(AdminError::Invalid(format!(
            "{} is not an admin; grant the role first",
            user.email
        )));
    }
    tokens::issue(admin, TokenKind::Admin, user_id, None).await
}

async fn update_user_field(
    admin: &Admin<'_>,
    user_id: &str,
    update: UserUpdate,
    action: &str,
) -> Result<UserRow, AdminError> {
    get(admin, user_id).await?;
    let change = UserChange {
        disabled: update.disabled,
        admin: update.admin,
        ..UserChange::default()
    };
    admin
        .store
        .update_user(&admin.account_id, user_id, &change)
        .await?;
    admin.record(action, user_id, json!({})).await;
    get(admin, user_id).await
}
