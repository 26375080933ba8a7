//! The audit log's rows, and purging what has outlived its use: audit events past their
//! retention, expired tokens, used sign-in attempts and expired sign-in codes.

use sqlx::Row as _;

use super::{Result, Store, now_unix};
use crate::audit::{AuditEvent, AuditFilter, AuditKind};
use crate::crypto::new_id;

/// The most rows one query returns.
pub const MAX_AUDIT_ROWS: u32 = 10_000;

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub audit_events: u64,
    pub tokens: u64,
    pub sign_in_attempts: u64,
    pub sign_in_codes: u64,
}

impl Store {
    pub async fn insert_audit_events(&self, events: &[AuditEvent]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for event in events {
            sqlx::query(
                "INSERT INTO audit_events (id, at_ms, account_id, kind, outcome, actor, subject, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(new_id("aud"))
            .bind(event.at_ms)
            .bind(event.account_id.clone())
            .bind(event.kind.as_str())
            .bind(&event.outcome)
            .bind(&event.actor)
            .bind(&event.subject)
            .bind(event.detail.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The events `filter` selects, oldest first; the newest `limit` of them (at most
    /// [`MAX_AUDIT_ROWS`]).
    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        // Only the conditions that are set, numbered in order: PostgreSQL cannot type a
        // parameter that is only compared with NULL.
        let mut conditions = Vec::new();
        let mut texts = Vec::new();
        let mut numbers = Vec::new();
        let mut next = 1;
        let mut placeholder = || {
            let p = format!("${next}");
            next += 1;
            p
        };
        for (column, op, value) in [
            ("at_ms", ">=", filter.since_ms),
            ("at_ms", "<", filter.until_ms),
        ] {
            if let Some(value) = value {
                conditions.push(format!("{column} {op} {}", placeholder()));
                numbers.push(value);
            }
        }
        let number_count = numbers.len();
        for (column, value) in [
            ("kind", filter.kind.map(|k| k.as_str().to_owned())),
            ("actor", filter.actor.clone()),
            ("subject", filter.subject.clone()),
            ("account_id", filter.account_id.clone()),
        ] {
            if let Some(value) = value {
                conditions.push(format!("{column} = {}", placeholder()));
                texts.push(value);
            }
        }
        let limit = filter.limit.unwrap_or(MAX_AUDIT_ROWS).min(MAX_AUDIT_ROWS);
        let sql = format!(
            "SELECT at_ms, account_id, kind, outcome, actor, subject, detail FROM audit_events
             {} ORDER BY at_ms DESC, id DESC LIMIT {limit}",
            if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            }
        );
        debug_assert_eq!(number_count + texts.len(), next - 1);
        let mut query = sqlx::query(&sql);
        for number in numbers {
            query = query.bind(number);
        }
        for text in texts {
            query = query.bind(text);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            let kind: String = row.try_get(2)?;
            let detail: String = row.try_get(6)?;
            events.push(AuditEvent {
                at_ms: row.try_get(0)?,
                account_id: row.try_get(1)?,
                // Written by this code only; an unknown kind would be a newer portal's.
                kind: AuditKind::parse(&kind).unwrap_or(AuditKind::Admin),
                outcome: row.try_get(3)?,
                actor: row.try_get(4)?,
                subject: row.try_get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            });
        }
        Ok(events)
    }

    /// Removes audit events older than `audit_retention_secs`, tokens expired for longer than
    /// a day (the reconnect grace is far shorter), sign-in attempts older than
    /// `attempt_lifetime_secs` (a used page cannot be replayed once it is expired anyway) and
    /// expired sign-in codes.
    pub async fn purge(
        &self,
        audit_retention_secs: i64,
        attempt_lifetime_secs: i64,
    ) -> Result<Purged> {
        let now = now_unix();
        let audit_events = sqlx::query("DELETE FROM audit_events WHERE at_ms < $1")
            .bind(
                now.saturating_sub(audit_retention_secs)
                    .saturating_mul(1000),
            )
            .execute(&self.pool)
            .await?
            .rows_affected();
        let tokens =
            sqlx::query("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1")
                .bind(now - 24 * 3600)
                .execute(&self.pool)
                .await?
                .rows_affected();
        let sign_in_attempts = sqlx::query("DELETE FROM used_sign_in_attempts WHERE used_at < $1")
            .bind(now.saturating_sub(attempt_lifetime_secs))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let sign_in_codes = sqlx::query("DELETE FROM sign_in_codes WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(Purged {
            audit_events,
            tokens,
            sign_in_attempts,
            sign_in_codes,
        })
    }
}
