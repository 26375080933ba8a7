//! Ember's portal: the self-hostable control plane (ARCHITECTURE §7).
//!
//! - [`store`]: SQLite or PostgreSQL through sqlx, one set of migrations.
//! - [`config`]: the TOML file and the model it may declare.
//! - [`model`]: the in-memory [`model::Snapshot`] and policy evaluation.
//! - [`signin`]: the sign-in page, CSRF, one-time codes; [`oidc`]: sign-in with an OpenID
//!   Connect provider (authorisation code + PKCE, discovery); [`redeem`]: the service turns a
//!   code and the app's verifier into a device-bound token; [`throttle`]: the failure backoff
//!   (per account and client address, behind trusted proxies) and the access-request bucket.
//! - [`api`]: the client and gateway WebSocket APIs; [`hub`]: who is connected, grants,
//!   gateway choice; [`outbox`]: each peer's queue, closed rather than skipped when full.
//! - [`server`]: [`server::Portal`], which ties it together and follows store changes;
//!   [`tls`]: HTTPS with certificates reloaded on SIGHUP, and the plain-HTTP redirect.
//! - [`admin`]: what `ember-portal admin …`, the admin API and `ember-portal demo` do;
//!   [`admin_api`]: the JSON admin API under `/api/admin/v1`; [`audit`]: the audit
//!   log of sign-ins, grants, denials, revocations and admin changes.

pub mod admin;
pub mod admin_api;
pub mod admin_page;
pub mod api;
pub mod audit;
pub mod config;
pub mod crypto;
pub mod hub;
pub mod model;
pub mod oidc;
pub mod outbox;
pub mod redeem;
pub mod server;
pub mod signin;
pub mod store;
pub mod throttle;
pub mod tls;

pub use config::Config;
pub use server::Portal;
pub use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    AdminPage(#[from] admin_page::AdminPageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
