//! The audit log (`migrations/0004_audit.sql`): sign-ins, grants, denials, revocations and
//! administrators' changes, kept in the database for `[audit] retention_days`.
//!
//! Events from the serving paths are queued ([`AuditLog::record`] never waits) and written in
//! batches by one task, so a grant never waits for the database. A full queue drops events and
//! says so in the log with a count, rather than slowing access for everyone. Rate-limited
//! access requests are not recorded one by one: a flooding device would flood the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use crate::store::Store;

/// Events waiting for the writer.
const QUEUE: usize = 16_384;
/// Events written in one transaction at most.
const BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    SignIn,
    Grant,
    Denial,
    Revocation,
    Admin,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::Grant => "grant",
            Self::Denial => "denial",
            Self::Revocation => "revocation",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::SignIn,
            Self::Grant,
            Self::Denial,
            Self::Revocation,
            Self::Admin,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// One line of the audit log. `actor` is who acted (a user id, `cli:<login>`, `portal`),
/// `subject` what it acted on (a resource, a token, a device), `outcome` how it ended
/// (`success`, `failure`, a denial reason).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub at_ms: i64,
    pub account_id: Option<String>,
    pub kind: AuditKind,
    pub outcome: String,
    pub actor: String,
    pub subject: String,
    pub detail: Value,
}

impl AuditEvent {
    pub fn now(kind: AuditKind, outcome: &str, actor: &str, subject: &str) -> Self {
        Self {
            at_ms: now_ms(),
            account_id: None,
            kind,
            outcome: outcome.to_owned(),
            actor: actor.to_owned(),
            subject: subject.to_owned(),
            detail: Value::Object(serde_json::Map::new()),
        }
    }

    pub fn account(mut self, account_id: &str) -> Self {
        self.account_id = Some(account_id.to_owned());
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What to read back: every field optional; newest last.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub kind: Option<AuditKind>,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub account_id: Option<String>,
    pub limit: Option<u32>,
}

/// The serving paths' side of the log.
#[derive(Debug)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditEvent>,
    dropped: AtomicU64,
}

impl AuditLog {
    /// The log and its writer task, which ends when `stop` turns true, after writing what
    /// was queued by then.
    pub fn start(store: Store, stop: watch::Receiver<bool>) -> (Arc<Self>, JoinHandle<()>) {
        let (queue, events) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write(store, events, stop));
        (
            Arc::new(Self {
                queue,
                dropped: AtomicU64::new(0),
            }),
            writer,
        )
    }

    pub fn record(&self, event: AuditEvent) {
        if self.queue.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                error!(dropped, "The audit log cannot keep up; events were dropped");
            }
        }
    }
}

async fn write(
    store: Store,
    mut events: mpsc::Receiver<AuditEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let received = tokio::select! {
            received = events.recv_many(&mut batch, BATCH) => received,
            () = stopped(&mut stop) => {
                // Nothing new is taken; what is queued is still written.
                events.close();
                events.recv_many(&mut batch, BATCH).await
            }
        };
        if received == 0 {
            return;
        }
        // A database that is briefly away (a PostgreSQL failover) costs a retry, not events.
        let mut attempt = 0;
        while let Err(e) = store.insert_audit_events(&batch).await {
            attempt += 1;
            if attempt == 5 {
                error!(error = %e, events = batch.len(), "Cannot write audit events; dropped");
                break;
            }
            warn!(error = %e, "Cannot write audit events; retrying");
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
        batch.clear();
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_as_they_are_written() {
        for kind in [
            AuditKind::SignIn,
            AuditKind::Grant,
            AuditKind::Denial,
            AuditKind::Revocation,
            AuditKind::Admin,
        ] {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AuditKind::parse("grants"), None);
    }
}
