//! The portal's TOML configuration: where to listen, which database, timings, relays, and
//! optionally a declared model (accounts with users, groups, sites, resources, policies and
//! gateways) that is applied on every start. Objects are matched by name, so applying the same
//! file twice changes nothing; objects created with the admin CLI are kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub sign_in: SignInConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub relays: Vec<RelayConfig>,
    /// OpenID Connect providers, each serving one account.
    #[serde(default)]
    pub oidc: Vec<OidcConfig>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The slug of the account whose users sign in here.
    pub account: String,
    /// Shown as "Sign in with {name}".
    pub name: String,
    /// The issuer URL; `{issuer}/.well-known/openid-configuration` is read on each sign-in.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `sqlite://path` (relative paths are relative to the working directory) or `postgres://…`.
    pub database: String,
    /// How often a heartbeat goes each way with a client; three missed ones end the connection.
    pub heartbeat_interval_ms: u64,
    /// The same with a gateway: shorter, because a gateway's heartbeat is also what re-opens
    /// its router's mapping for the portal link after the router lost it (a reboot), so it
    /// bounds how long a grant can wait to reach the gateway; and three missed ones are how
    /// long clients may wait to hear that a gateway whose host vanished is offline.
    pub gateway_heartbeat_interval_ms: u64,
    /// How often the portal looks for changes made by the admin CLI or another replica.
    pub change_poll_interval_ms: u64,
    /// The URL browsers reach the portal at (for the OIDC redirect URI); default
    /// `http://{listen address}`.
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` names the client
    /// for the sign-in rate limit; from anyone else the header is ignored.
    #[serde(deserialize_with = "trusted_proxies")]
    pub trusted_proxies: Vec<IpNet>,
    /// Serve HTTPS on `listen` with these files; without it the portal speaks plain HTTP
    /// (for loopback, test worlds, or behind a reverse proxy that terminates TLS).
    pub tls: Option<TlsConfig>,
    /// The built admin page (`npm run build:admin` writes `admin-ui/dist`); when set, a folder
    /// without a build stops the start. Default: `/usr/share/ember-portal/admin` if it is there.
    pub admin_page_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the certificate, then its chain. Reloaded (with the key) on SIGHUP.
    pub certificate: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// A plain-HTTP address (e.g. `0.0.0.0:80`) that answers every request with a permanent
    /// redirect to the same path on the public URL.
    #[serde(default)]
    pub redirect_http: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age=…` on every HTTPS answer; 0 sends none.
    #[serde(default = "TlsConfig::default_hsts")]
    pub hsts_max_age_secs: u64,
}

impl TlsConfig {
    fn default_hsts() -> u64 {
        // One year, what HSTS preload lists ask for.
        365 * 24 * 3600
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            certificate: PathBuf::new(),
            key: PathBuf::new(),
            redirect_http: None,
            hsts_max_age_secs: Self::default_hsts(),
        }
    }
}

fn trusted_proxies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| crate::throttle::parse_trusted_proxy(text).map_err(serde::de::Error::custom))
        .collect()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: "sqlite://ember-portal.db".into(),
            heartbeat_interval_ms: 10_000,
            gateway_heartbeat_interval_ms: 2_000,
            change_poll_interval_ms: 200,
            public_url: None,
            trusted_proxies: Vec::new(),
            tls: None,
            admin_page_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit events older than this are purged (hourly), with expired tokens and used
    /// sign-in attempts.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

impl AuditConfig {
    pub fn retention_secs(&self) -> i64 {
        i64::from(self.retention_days) * 24 * 3600
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignInConfig {
    /// Lifetime of a client token.
    pub client_token_lifetime_secs: u64,
    /// Failed password sign-ins per client address and per user before the next attempt
    /// waits `first_backoff_ms`; each further failure doubles the wait, up to
    /// `max_backoff_secs` (a wait, never a lockout).
    pub max_failures: u32,
    pub first_backoff_ms: u64,
    pub max_backoff_secs: u64,
    /// A client address or user quiet this long after its last wait starts afresh.
    pub failure_window_secs: u64,
    /// How long a sign-in page stays valid.
    pub attempt_lifetime_secs: u64,
    /// Set the `Secure` flag on the CSRF cookie (serve the portal over HTTPS behind a proxy).
    pub secure_cookies: bool,
}

impl SignInConfig {
    pub fn backoff(&self) -> crate::throttle::BackoffPolicy {
        crate::throttle::BackoffPolicy {
            free: self.max_failures,
            first: std::time::Duration::from_millis(self.first_backoff_ms),
            max: std::time::Duration::from_secs(self.max_backoff_secs),
            forget_after: std::time::Duration::from_secs(self.failure_window_secs),
        }
    }
}

impl Default for SignInConfig {
    fn default() -> Self {
        Self {
            client_token_lifetime_secs: 7 * 24 * 3600,
            max_failures: 5,
            first_backoff_ms: 1000,
            max_backoff_secs: 900,
            failure_window_secs: 300,
            attempt_lifetime_secs: 600,
            secure_cookies: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub id: String,
    /// `turn:host:port` URLs.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    #[serde(default = "default_relay_lifetime")]
    pub credential_lifetime_secs: u64,
}

fn default_relay_lifetime() -> u64 {
    12 * 3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub sites: Vec<String>,
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    #[serde(default)]
    pub gateways: Vec<GatewayConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub email: String,
    pub name: String,
    /// An argon2 PHC string (`ember-portal hash-password` prints one). Never a plain password.
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// Member emails.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub name: String,
    pub site: String,
    /// `10.0.0.0/24`, `10.0.0.9`, `db.corp.example`, `*.corp.example`, `?.corp.example`, `internet`.
    pub address: String,
    pub address_description: Option<String>,
    /// `tcp`, `udp/53`, `tcp/8000-8100`, `icmp`; none means everything.
    #[serde(default)]
    pub filters: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub group: String,
    pub resource: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub site: String,
    pub name: String,
}

impl Config {
    /// Cookies carry `Secure` when the portal serves HTTPS itself or is told it sits behind a
    /// proxy that does.
    pub fn secure_cookies(&self) -> bool {
        self.sign_in.secure_cookies || self.server.tls.is_some()
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "<text>".into(),
            source,
        })?;
        if config.server.change_poll_interval_ms < 10 {
            return Err(ConfigError::Invalid(
                "change_poll_interval_ms must be at least 10".into(),
            ));
        }
        // The range clients and gateways accept (they clamp anything else).
        for (name, value) in [
            ("heartbeat_interval_ms", config.server.heartbeat_interval_ms),
            (
                "gateway_heartbeat_interval_ms",
                config.server.gateway_heartbeat_interval_ms,
            ),
        ] {
            if !(100..=300_000).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be from 100 (0.1 s) to 300000 (5 minutes)"
                )));
            }
        }
        let sign_in = &config.sign_in;
        if sign_in.max_backoff_secs > 86_400 || sign_in.failure_window_secs > 30 * 86_400 {
            return Err(ConfigError::Invalid(
                "max_backoff_secs must be at most a day and failure_window_secs at most 30 days"
                    .into(),
            ));
        }
        for relay in &config.relays {
            if relay.credential_lifetime_secs < 2 {
                return Err(ConfigError::Invalid(format!(
                    "relay {}: credential_lifetime_secs must be at least 2",
                    relay.id
                )));
            }
        }
        Ok(config)
    }

    /// Writes the declared model into the store (idempotent).
    pub async fn apply(&self, store: &Store) -> Result<(), StoreError> {
        for account in &self.accounts {
            let account_id = store.ensure_account(&account.slug, &account.name).await?;
            for user in &account.users {
                store
                    .ensure_user(
                        &account_id,
                        &user.email,
                        &user.name,
                        user.password_hash.as_deref(),
                    )
                    .await?;
            }
            for group in &account.groups {
                let group_id = store.ensure_group(&account_id, &group.name).await?;
                for email in &group.members {
                    let user_id = store.user_id(&account_id, email).await?;
                    store.add_group_member(&group_id, &user_id).await?;
                }
            }
            for site in &account.sites {
                store.ensure_site(&account_id, site).await?;
            }
            for resource in &account.resources {
                let site_id = store.site_id(&account_id, &resource.site).await?;
                store
                    .upsert_resource(
                        &account_id,
                        &site_id,
                        &resource.name,
                        &resource.address,
                        resource.address_description.as_deref(),
                        &resource.filters,
                    )
                    .await?;
            }
            for policy in &account.policies {
                let group_id = store.group_id(&account_id, &policy.group).await?;
                let resource_id = store.resource_id(&account_id, &policy.resource).await?;
                store
                    .ensure_policy(&account_id, &group_id, &resource_id)
                    .await?;
            }
            for gateway in &account.gateways {
                let site_id = store.site_id(&account_id, &gateway.site).await?;
                store
                    .ensure_gateway(&account_id, &site_id, &gateway.name)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.sign_in.client_token_lifetime_secs, 604_800);
        assert_eq!(config.server.database, "sqlite://ember-portal.db");
    }

    #[test]
    fn gateways_get_a_shorter_heartbeat_than_clients_and_both_are_checked() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.server.heartbeat_interval_ms, 10_000);
        assert_eq!(config.server.gateway_heartbeat_interval_ms, 2_000);
        let err = Config::parse("[server]\ngateway_heartbeat_interval_ms = 50\n").unwrap_err();
        assert!(
            err.to_string().contains("gateway_heartbeat_interval_ms"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::parse("[server]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }
}
