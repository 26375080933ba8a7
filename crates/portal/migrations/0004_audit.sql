-- The audit log: who signed in (or failed to), who was granted or denied what and why, which
-- access was revoked, and what administrators changed. Append-only; rows older than the
-- configured retention are purged. `detail` is a JSON object with the event's particulars.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    account_id TEXT,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at_ms);
CREATE INDEX audit_events_kind_at ON audit_events (kind, at_ms);
