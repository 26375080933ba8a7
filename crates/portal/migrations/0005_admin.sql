-- Administrators and service accounts. `admin` (0/1) lets a user's admin tokens and session
-- tokens call the admin API of the user's account. `kind` is `person` (signs in with a
-- password or OIDC) or `service` (never signs in interactively; uses a long-lived token).
ALTER TABLE users ADD COLUMN admin BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN kind TEXT NOT NULL DEFAULT 'person';
