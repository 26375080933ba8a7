-- Devices are keyed on (account, user, device key), not (account, device key): with the old
-- key, a second user of the account who sent another user's device key took that device over
-- (its id, its tunnel addresses, and the first user's connection was replaced). SQLite cannot
-- drop a table constraint, so the table is rebuilt; this runs unchanged on PostgreSQL.

CREATE TABLE devices_per_user (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_key TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    os TEXT NOT NULL,
    version TEXT NOT NULL,
    public_key TEXT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    UNIQUE (account_id, user_id, device_key)
);

INSERT INTO devices_per_user
    (id, account_id, device_key, user_id, name, os, version, public_key, last_seen_at)
SELECT id, account_id, device_key, user_id, name, os, version, public_key, last_seen_at
FROM devices;

DROP TABLE devices;

ALTER TABLE devices_per_user RENAME TO devices;
