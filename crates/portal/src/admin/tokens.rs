//! Tokens of an account: listed (never the secret, only its id and owner), revoked, issued.

use serde::Serialize;
use serde_json::json;

use super::{Admin, AdminError};
use crate::crypto;
use crate::store::{TokenKind, TokenRecord};

/// A token as listed: what it is and whose, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub kind: &'static str,
    pub user_id: Option<String>,
    pub gateway_id: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Whether a sign-in bound the token to one device's key.
    pub device_bound: bool,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id,
            kind: t.kind.as_str(),
            user_id: t.user_id,
            gateway_id: t.gateway_id,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            device_bound: t.device_public_key.is_some(),
        }
    }
}

/// A token just issued: the secret is shown this once; only its hash is stored.
#[derive(Clone, Serialize)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub async fn list(admin: &Admin<'_>) -> Result<Vec<TokenInfo>, AdminError> {
    Ok(admin
        .store
        .list_tokens(&admin.account_id)
        .await?
        .into_iter()
        .map(TokenInfo::from)
        .collect())
}

/// Revokes one token of the admin's account: a device or gateway using it is disconnected
/// live, an admin using it is refused from the next call.
pub async fn revoke(admin: &Admin<'_>, token_id: &str) -> Result<(), AdminError> {
    let token = admin
        .store
        .token_by_id(token_id)
        .await?
        .filter(|t| t.account_id == admin.account_id)
        .ok_or_else(|| AdminError::NotFound(format!("token `{token_id}`")))?;
    if token.revoked_at.is_some() {
        return Err(AdminError::Conflict(format!(
            "token `{token_id}` is already revoked"
        )));
    }
    admin.store.revoke_token(token_id).await?;
    admin
        .record(
            "token.revoke",
            token_id,
            json!({ "kind": token.kind.as_str() }),
        )
        .await;
    Ok(())
}

/// Issues a token of `kind` for a user (client, admin) or a gateway of the admin's account.
pub(crate) async fn issue(
    admin: &Admin<'_>,
    kind: TokenKind,
    owner_id: &str,
    expires_at: Option<i64>,
) -> Result<IssuedToken, AdminError> {
    let token = crypto::random_hex32();
    let id = admin
        .store
        .insert_token(kind, &admin.account_id, owner_id, &token, expires_at)
        .await?;
    admin
        .record(
            "token.create",
            &id,
            json!({ "kind": kind.as_str(), "owner": owner_id }),
        )
        .await;
    Ok(IssuedToken { id, token })
}
