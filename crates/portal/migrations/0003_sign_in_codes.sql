-- The one-time codes a browser sign-in ends with (ARCHITECTURE §4). Only the SHA-256 of a code
-- is stored, with the app's challenge (SHA-256 of a verifier only the app knows). A code is
-- redeemed at most once, before `expires_at`; the token it yields is bound to a device key.
CREATE TABLE sign_in_codes (
    code_hash TEXT PRIMARY KEY,
    challenge TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);

-- The WireGuard public key of the device a client token was redeemed for; the client API
-- refuses the token with any other key. NULL for tokens not issued by a sign-in.
ALTER TABLE tokens ADD COLUMN device_public_key TEXT;
