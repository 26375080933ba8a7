//! Tokens: issued for clients and gateways, found by their hash, listed and revoked.

use super::*;

impl Store {
    /// Stores the hash of a new token and returns the token's id.
    pub async fn insert_token(
        &self,
        kind: TokenKind,
        account_id: &str,
        owner_id: &str,
        token: &str,
        expires_at: Option<i64>,
    ) -> Result<String> {
        let id = new_id("tok");
        let (user_id, gateway_id) = match kind {
            TokenKind::Client | TokenKind::Admin => (Some(owner_id), None),
            TokenKind::Gateway => (None, Some(owner_id)),
        };
        sqlx::query(
            "INSERT INTO tokens (id, token_hash, kind, account_id, user_id, gateway_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(crypto::hash_token(token))
        .bind(kind.as_str())
        .bind(account_id)
        .bind(user_id.map(str::to_owned))
        .bind(gateway_id.map(str::to_owned))
        .bind(now_unix())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn find_token(&self, token: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT id, kind, account_id, user_id, gateway_id, created_at, expires_at, revoked_at, device_public_key FROM tokens WHERE token_hash = $1",
        )
        .bind(crypto::hash_token(token))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    pub async fn token_by_id(&self, token_id: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT id, kind, account_id, user_id, gateway_id, created_at, expires_at, revoked_at, device_public_key FROM tokens WHERE id = $1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    pub async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT id, kind, account_id, user_id, gateway_id, created_at, expires_at, revoked_at, device_public_key FROM tokens WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn revoke_token(&self, token_id: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_unix())
                .bind(token_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "unrevoked token `{token_id}`"
            )));
        }
        self.bump_generation().await
    }

    /// Revokes every token of a user (client) or gateway; returns how many.
    pub async fn revoke_tokens_of(&self, owner_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE (user_id = $2 OR gateway_id = $2) AND revoked_at IS NULL",
        )
        .bind(now_unix())
        .bind(owner_id)
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        Ok(done.rows_affected())
    }

    // -- devices and addresses --------------------------------------------------------------
}
