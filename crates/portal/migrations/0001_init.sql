-- Ember portal schema. Written for both SQLite and PostgreSQL: TEXT ids, BIGINT unix seconds,
-- BIGINT 0/1 flags, JSON in TEXT.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    -- argon2id PHC string; NULL for users who sign in with OIDC only.
    password_hash TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    UNIQUE (account_id, email)
);

CREATE TABLE oidc_identities (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    UNIQUE (issuer, subject)
);

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE resources (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    site_id TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- As typed: `10.0.0.0/24`, `10.0.0.9`, `*.corp.example`, `internet`.
    address TEXT NOT NULL,
    address_description TEXT,
    -- JSON array of protocol filters, e.g. [{"protocol":"tcp","ports":{"start":443,"end":443}}].
    filters TEXT NOT NULL DEFAULT '[]',
    UNIQUE (account_id, name)
);

CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    resource_id TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    UNIQUE (group_id, resource_id)
);

CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    site_id TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    UNIQUE (site_id, name)
);

-- Client and gateway tokens. Only the SHA-256 of a token is stored.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    gateway_id TEXT REFERENCES gateways (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

-- Client devices, keyed by the device id the tunnel service reports.
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_key TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    os TEXT NOT NULL,
    version TEXT NOT NULL,
    public_key TEXT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    UNIQUE (account_id, device_key)
);

-- Tunnel address index n → 100.64.0.0 + n and fd00:2021:1111:: + n, per device or gateway.
CREATE TABLE tunnel_addresses (
    ip_index BIGINT PRIMARY KEY,
    owner TEXT NOT NULL UNIQUE
);

-- Sign-in attempts that completed; a second use of the same signed attempt is a replay.
CREATE TABLE used_sign_in_attempts (
    id TEXT PRIMARY KEY,
    used_at BIGINT NOT NULL
);

-- Key/value settings the portal creates itself (e.g. the key that signs sign-in attempts).
CREATE TABLE portal_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Bumped by every change to the model; running portals poll it and push changes live.
CREATE TABLE generation (
    id BIGINT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);
