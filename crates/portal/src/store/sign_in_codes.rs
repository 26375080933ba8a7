//! The one-time codes of the browser sign-in and the device-bound tokens they turn into
//! (ARCHITECTURE §4, `migrations/0003_sign_in_codes.sql`).

use sqlx::Row as _;

use super::{Result, Store, now_unix};
use crate::crypto::{self, new_id};

/// A code waiting to be redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInCode {
    /// base64url SHA-256 of the app's verifier.
    pub challenge: String,
    pub account_id: String,
    pub user_id: String,
    pub expires_at: i64,
}

impl Store {
    /// Completes a password or OIDC sign-in: records the attempt as used and stores the hash of
    /// a one-time `code` for it, atomically. `Ok(false)` means the attempt was used before (a
    /// replay).
    pub async fn complete_sign_in(
        &self,
        attempt_id: &str,
        code: &str,
        issued: &SignInCode,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO used_sign_in_attempts (id, used_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(attempt_id)
        .bind(now_unix())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO sign_in_codes (code_hash, challenge, account_id, user_id, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(crypto::hash_token(code))
        .bind(&issued.challenge)
        .bind(&issued.account_id)
        .bind(&issued.user_id)
        .bind(issued.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Takes `code` out of the store: whatever happens next, it cannot be redeemed again. `None`
    /// when it is unknown, used or expired.
    pub async fn take_sign_in_code(&self, code: &str) -> Result<Option<SignInCode>> {
        let row = sqlx::query(
            "DELETE FROM sign_in_codes WHERE code_hash = $1
             RETURNING challenge, account_id, user_id, expires_at",
        )
        .bind(crypto::hash_token(code))
        .fetch_optional(&self.pool)
        .await?;
        // Expired codes nobody redeemed go too.
        sqlx::query("DELETE FROM sign_in_codes WHERE expires_at < $1")
            .bind(now_unix())
            .execute(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let code = SignInCode {
            challenge: row.try_get(0)?,
            account_id: row.try_get(1)?,
            user_id: row.try_get(2)?,
            expires_at: row.try_get(3)?,
        };
        Ok((code.expires_at >= now_unix()).then_some(code))
    }

    /// Stores the hash of a client token that works only with the device key `public_key`.
    pub async fn insert_device_token(
        &self,
        account_id: &str,
        user_id: &str,
        token: &str,
        public_key: &str,
        expires_at: i64,
    ) -> Result<String> {
        let id = new_id("tok");
        sqlx::query(
            "INSERT INTO tokens (id, token_hash, kind, account_id, user_id, created_at, expires_at, device_public_key)
             VALUES ($1, $2, 'client', $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(crypto::hash_token(token))
        .bind(account_id)
        .bind(user_id)
        .bind(now_unix())
        .bind(expires_at)
        .bind(public_key)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }
}
