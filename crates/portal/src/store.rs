//! Persistent state on sqlx's `Any` driver: SQLite (one file, the default) or PostgreSQL (by
//! URL, for several portal replicas on one database), with the same migrations and queries.
//!
//! Every change to the model bumps the `generation` row in the same transaction; running
//! portals poll it and reload their [`Snapshot`], so changes made by the admin CLI (another
//! process) or another replica reach connected clients live.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use ember_protocol::portal::{AccountInfo, Filter, Interface, Resource, SiteInfo};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row as _};

use crate::crypto::{self, new_id};
use crate::model::{
    self, GatewayRecord, ModelError, ResourceRecord, SiteRecord, Snapshot, UserRecord,
};

mod audit;
mod directory;
mod sign_in_codes;
mod tokens;

pub use audit::{MAX_AUDIT_ROWS, Purged};
pub use directory::{
    GatewayRow, GroupRow, NewResource, PolicyRow, ResourceRow, SiteRow, UserChange, UserKind,
    UserRow,
};

pub use sign_in_codes::SignInCode;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The number of usable tunnel addresses: 100.64.0.0/11 has 2^21; index 0 and 1 are skipped.
const ADDRESS_SPACE: i64 = 1 << 21;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Invalid(String),
    #[error("no tunnel addresses left")]
    AddressesExhausted,
}

impl StoreError {
    /// Whether the database refused a write because a unique key is already taken.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The kind of a token, stored in `tokens.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Client,
    Gateway,
    /// A user's token for the admin API (`ember-portal admin token create-admin`).
    Admin,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Gateway => "gateway",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Client, Self::Gateway, Self::Admin]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: String,
    pub kind: TokenKind,
    pub account_id: String,
    pub user_id: Option<String>,
    pub gateway_id: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The device key a sign-in bound this client token to (see [`sign_in_codes`]).
    pub device_public_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PasswordUser {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// A device as reported in a client hello.
#[derive(Debug, Clone)]
pub struct DeviceHello<'a> {
    pub account_id: &'a str,
    pub user_id: &'a str,
    pub device_key: &'a str,
    pub name: &'a str,
    pub os: &'a str,
    pub version: &'a str,
    pub public_key: &'a str,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    allocation: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`:
    /// `sqlite://path/to/portal.db` or `postgres://user@host:port/db`.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_owned()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 10 })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if is_sqlite {
                        // WAL lets the admin CLI write while portals read; foreign keys are
                        // off by default in SQLite.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        // Safe in WAL mode: a power cut may lose the last commits, never
                        // corrupt the file; it spares an fsync per device hello.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            allocation: std::sync::Arc::default(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn generation(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Marks the model as changed; connected portals reload it.
    pub async fn bump_generation(&self) -> Result<()> {
        sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The portal's secret for signing sign-in attempts, created on first use. Kept in the
    /// database so every replica and every restart agrees on it.
    pub async fn signing_key(&self) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO portal_settings (name, value) VALUES ('signing_key', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(crypto::random_hex32())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM portal_settings WHERE name = 'signing_key'")
            .fetch_one(&self.pool)
            .await?;
        let value: String = row.try_get(0)?;
        hex::decode(value).map_err(|_| StoreError::Invalid("corrupt signing key".into()))
    }

    // -- model ------------------------------------------------------------------------------

    pub async fn ensure_account(&self, slug: &str, name: &str) -> Result<String> {
        if slug.is_empty() || !slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StoreError::Invalid(format!(
                "account slug `{slug}`: use letters, digits and `-`"
            )));
        }
        sqlx::query("INSERT INTO accounts (id, slug, name) VALUES ($1, $2, $3) ON CONFLICT (slug) DO UPDATE SET name = excluded.name")
            .bind(new_id("acc"))
            .bind(slug)
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await?;
        self.account_id(slug).await
    }

    pub async fn account_id(&self, slug: &str) -> Result<String> {
        self.lookup("SELECT id FROM accounts WHERE slug = $1", &[slug], || {
            format!("account `{slug}`")
        })
        .await
    }

    pub async fn account_slug(&self, account_id: &str) -> Result<String> {
        self.lookup(
            "SELECT slug FROM accounts WHERE id = $1",
            &[account_id],
            || format!("account `{account_id}`"),
        )
        .await
    }

    /// Creates or updates a user; `password_hash` replaces the stored one only when given.
    pub async fn ensure_user(
        &self,
        account_id: &str,
        email: &str,
        name: &str,
        password_hash: Option<&str>,
    ) -> Result<String> {
        let email = email.trim().to_ascii_lowercase();
        if !email.contains('@') || email.len() > 254 {
            return Err(StoreError::Invalid(format!(
                "`{email}` is not an email address"
            )));
        }
        sqlx::query(
            "INSERT INTO users (id, account_id, email, name, password_hash) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (account_id, email) DO UPDATE SET name = excluded.name,
             password_hash = COALESCE(excluded.password_hash, users.password_hash)",
        )
        .bind(new_id("usr"))
        .bind(account_id)
        .bind(&email)
        .bind(name)
        .bind(password_hash.map(str::to_owned))
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        self.user_id(account_id, &email).await
    }

    pub async fn user_id(&self, account_id: &str, email: &str) -> Result<String> {
        let email = email.trim().to_ascii_lowercase();
        self.lookup(
            "SELECT id FROM users WHERE account_id = $1 AND email = $2",
            &[account_id, &email],
            || format!("user `{email}`"),
        )
        .await
    }

    pub async fn set_user_disabled(&self, user_id: &str, disabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{user_id}`")));
        }
        self.bump_generation().await
    }

    pub async fn password_user(
        &self,
        account_id: &str,
        email: &str,
    ) -> Result<Option<PasswordUser>> {
        let email = email.trim().to_ascii_lowercase();
        let row = sqlx::query(
            "SELECT id, account_id, name, password_hash, disabled FROM users WHERE account_id = $1 AND email = $2",
        )
        .bind(account_id)
        .bind(&email)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PasswordUser {
            id: row.try_get(0)?,
            account_id: row.try_get(1)?,
            name: row.try_get(2)?,
            password_hash: row.try_get(3)?,
            disabled: row.try_get::<i64, _>(4)? != 0,
        }))
    }

    pub async fn ensure_group(&self, account_id: &str, name: &str) -> Result<String> {
        sqlx::query("INSERT INTO user_groups (id, account_id, name) VALUES ($1, $2, $3) ON CONFLICT (account_id, name) DO NOTHING")
            .bind(new_id("grp"))
            .bind(account_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await?;
        self.group_id(account_id, name).await
    }

    pub async fn group_id(&self, account_id: &str, name: &str) -> Result<String> {
        self.lookup(
            "SELECT id FROM user_groups WHERE account_id = $1 AND name = $2",
            &[account_id, name],
            || format!("group `{name}`"),
        )
        .await
    }

    pub async fn add_group_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT (group_id, user_id) DO NOTHING")
            .bind(group_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await
    }

    pub async fn ensure_site(&self, account_id: &str, name: &str) -> Result<String> {
        sqlx::query("INSERT INTO sites (id, account_id, name) VALUES ($1, $2, $3) ON CONFLICT (account_id, name) DO NOTHING")
            .bind(new_id("site"))
            .bind(account_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await?;
        self.site_id(account_id, name).await
    }

    pub async fn site_id(&self, account_id: &str, name: &str) -> Result<String> {
        self.lookup(
            "SELECT id FROM sites WHERE account_id = $1 AND name = $2",
            &[account_id, name],
            || format!("site `{name}`"),
        )
        .await
    }

    /// Creates or updates the resource `name` of an account. The address and filters are
    /// validated before anything is written.
    pub async fn upsert_resource(
        &self,
        account_id: &str,
        site_id: &str,
        name: &str,
        address: &str,
        address_description: Option<&str>,
        filters: &[String],
    ) -> Result<String> {
        model::parse_address(address)?;
        let filters: Vec<Filter> = filters
            .iter()
            .map(|f| model::parse_filter(f))
            .collect::<Result<_, _>>()?;
        let filters =
            serde_json::to_string(&filters).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO resources (id, account_id, site_id, name, address, address_description, filters)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (account_id, name) DO UPDATE SET site_id = excluded.site_id,
             address = excluded.address, address_description = excluded.address_description,
             filters = excluded.filters",
        )
        .bind(new_id("res"))
        .bind(account_id)
        .bind(site_id)
        .bind(name)
        .bind(address.trim())
        .bind(address_description.map(str::to_owned))
        .bind(filters)
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        self.resource_id(account_id, name).await
    }

    pub async fn resource_id(&self, account_id: &str, name: &str) -> Result<String> {
        self.lookup(
            "SELECT id FROM resources WHERE account_id = $1 AND name = $2",
            &[account_id, name],
            || format!("resource `{name}`"),
        )
        .await
    }

    pub async fn delete_resource(&self, resource_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM resources WHERE id = $1")
            .bind(resource_id)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await
    }

    pub async fn ensure_policy(
        &self,
        account_id: &str,
        group_id: &str,
        resource_id: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO policies (id, account_id, group_id, resource_id) VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, resource_id) DO NOTHING")
            .bind(new_id("pol"))
            .bind(account_id)
            .bind(group_id)
            .bind(resource_id)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await
    }

    pub async fn delete_policy(&self, group_id: &str, resource_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM policies WHERE group_id = $1 AND resource_id = $2")
            .bind(group_id)
            .bind(resource_id)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await
    }

    pub async fn ensure_gateway(
        &self,
        account_id: &str,
        site_id: &str,
        name: &str,
    ) -> Result<String> {
        sqlx::query("INSERT INTO gateways (id, account_id, site_id, name) VALUES ($1, $2, $3, $4) ON CONFLICT (site_id, name) DO NOTHING")
            .bind(new_id("gw"))
            .bind(account_id)
            .bind(site_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await?;
        self.lookup(
            "SELECT id FROM gateways WHERE site_id = $1 AND name = $2",
            &[site_id, name],
            || format!("gateway `{name}`"),
        )
        .await
    }

    /// The user an OIDC identity was linked to.
    pub async fn oidc_user(&self, issuer: &str, subject: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2")
                .bind(issuer)
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn link_oidc_identity(
        &self,
        user_id: &str,
        issuer: &str,
        subject: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO oidc_identities (id, user_id, issuer, subject) VALUES ($1, $2, $3, $4) ON CONFLICT (issuer, subject) DO NOTHING")
            .bind(new_id("oidc"))
            .bind(user_id)
            .bind(issuer)
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // -- tokens -----------------------------------------------------------------------------

    /// Records a device's hello; returns its id and stable tunnel addresses.
    pub async fn upsert_device(&self, hello: &DeviceHello<'_>) -> Result<(String, Interface)> {
        sqlx::query(
            "INSERT INTO devices (id, account_id, device_key, user_id, name, os, version, public_key, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (account_id, user_id, device_key) DO UPDATE SET
             name = excluded.name, os = excluded.os, version = excluded.version,
             public_key = excluded.public_key, last_seen_at = excluded.last_seen_at",
        )
        .bind(new_id("dev"))
        .bind(hello.account_id)
        .bind(hello.device_key)
        .bind(hello.user_id)
        .bind(hello.name)
        .bind(hello.os)
        .bind(hello.version)
        .bind(hello.public_key)
        .bind(now_unix())
        .execute(&self.pool)
        .await?;
        let id = self
            .lookup(
                "SELECT id FROM devices WHERE account_id = $1 AND user_id = $2 AND device_key = $3",
                &[hello.account_id, hello.user_id, hello.device_key],
                || "device".to_owned(),
            )
            .await?;
        let interface = self.tunnel_interface(&format!("device:{id}")).await?;
        Ok((id, interface))
    }

    /// The stable tunnel addresses of `owner` (`device:<id>` or `gateway:<id>`), allocated on
    /// first use. Safe against concurrent allocation by several replicas: the index is unique
    /// and a lost race simply retries.
    pub async fn tunnel_interface(&self, owner: &str) -> Result<Interface> {
        // One allocation at a time in this process; the unique index and the retry below
        // cover other processes (replicas, the admin CLI) on the same database.
        let _one_at_a_time = self.allocation.lock().await;
        for _ in 0..64 {
            if let Some(row) = sqlx::query("SELECT ip_index FROM tunnel_addresses WHERE owner = $1")
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?
            {
                return Ok(interface_for(row.try_get(0)?));
            }
            // One statement, so SQLite computes and inserts under one write lock. `WHERE true`
            // keeps SQLite's parser from reading ON CONFLICT as a join constraint.
            let inserted = sqlx::query(
                "INSERT INTO tunnel_addresses (ip_index, owner)
                 SELECT COALESCE(MAX(ip_index), 1) + 1, $1 FROM tunnel_addresses WHERE true
                 HAVING COALESCE(MAX(ip_index), 1) + 1 < $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(owner)
            .bind(ADDRESS_SPACE)
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 0 {
                let row = sqlx::query("SELECT COALESCE(MAX(ip_index), 1) FROM tunnel_addresses")
                    .fetch_one(&self.pool)
                    .await?;
                if row.try_get::<i64, _>(0)? + 1 >= ADDRESS_SPACE {
                    return Err(StoreError::AddressesExhausted);
                }
            }
        }
        Err(StoreError::Invalid(
            "could not allocate a tunnel address".into(),
        ))
    }

    // -- snapshot ---------------------------------------------------------------------------

    /// Loads everything policy evaluation needs. The generation is read first, so a change
    /// made while loading is picked up by the next poll.
    pub async fn load_snapshot(&self) -> Result<Snapshot> {
        let mut s = Snapshot {
            generation: self.generation().await?,
            ..Snapshot::default()
        };
        for row in sqlx::query("SELECT id, slug, name FROM accounts")
            .fetch_all(&self.pool)
            .await?
        {
            let id: String = row.try_get(0)?;
            s.accounts.insert(
                id.clone(),
                AccountInfo {
                    id,
                    slug: row.try_get(1)?,
                    name: row.try_get(2)?,
                },
            );
        }
        for row in sqlx::query("SELECT id, account_id, email, name, disabled, kind FROM users")
            .fetch_all(&self.pool)
            .await?
        {
            let id: String = row.try_get(0)?;
            s.users.insert(
                id.clone(),
                UserRecord {
                    id,
                    account_id: row.try_get(1)?,
                    email: row.try_get(2)?,
                    name: row.try_get(3)?,
                    disabled: row.try_get::<i64, _>(4)? != 0,
                    service: row.try_get::<String, _>(5)? == UserKind::Service.as_str(),
                    groups: Vec::new(),
                },
            );
        }
        for row in sqlx::query("SELECT group_id, user_id FROM group_members")
            .fetch_all(&self.pool)
            .await?
        {
            let user_id: String = row.try_get(1)?;
            if let Some(user) = s.users.get_mut(&user_id) {
                user.groups.push(row.try_get(0)?);
            }
        }
        for row in sqlx::query("SELECT id, account_id, name FROM sites")
            .fetch_all(&self.pool)
            .await?
        {
            let id: String = row.try_get(0)?;
            s.sites.insert(
                id.clone(),
                SiteRecord {
                    account_id: row.try_get(1)?,
                    info: SiteInfo {
                        id,
                        name: row.try_get(2)?,
                    },
                },
            );
        }
        for row in sqlx::query(
            "SELECT id, account_id, site_id, name, address, address_description, filters FROM resources",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let id: String = row.try_get(0)?;
            let site_id: String = row.try_get(2)?;
            let Some(site) = s.sites.get(&site_id) else { continue };
            let address: String = row.try_get(4)?;
            let filters: String = row.try_get(6)?;
            let resource = Resource {
                id: id.clone(),
                name: row.try_get(3)?,
                address: model::parse_address(&address)?,
                address_description: row.try_get(5)?,
                site: site.info.clone(),
                filters: serde_json::from_str(&filters)
                    .map_err(|e| StoreError::Invalid(format!("filters of resource {id}: {e}")))?,
            };
            s.resources.insert(
                id,
                ResourceRecord { account_id: row.try_get(1)?, site_id, resource },
            );
        }
        let mut policies: HashMap<String, Vec<String>> = HashMap::new();
        for row in sqlx::query("SELECT group_id, resource_id FROM policies")
            .fetch_all(&self.pool)
            .await?
        {
            policies
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        s.policies = policies;
        for row in sqlx::query("SELECT id, account_id, site_id, name FROM gateways")
            .fetch_all(&self.pool)
            .await?
        {
            let id: String = row.try_get(0)?;
            s.gateways.insert(
                id.clone(),
                GatewayRecord {
                    id,
                    account_id: row.try_get(1)?,
                    site_id: row.try_get(2)?,
                    name: row.try_get(3)?,
                },
            );
        }
        for row in sqlx::query("SELECT id FROM tokens WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?
        {
            s.revoked_tokens.insert(row.try_get(0)?);
        }
        Ok(s)
    }

    async fn lookup(
        &self,
        sql: &str,
        args: &[&str],
        what: impl FnOnce() -> String,
    ) -> Result<String> {
        let mut query = sqlx::query(sql);
        for arg in args {
            query = query.bind(arg.to_string());
        }
        match query.fetch_optional(&self.pool).await? {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(StoreError::NotFound(what())),
        }
    }
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<TokenRecord> {
    let kind: String = row.try_get(1)?;
    // An unknown kind is refused rather than read as a client token: a token kind that a
    // newer portal added must not open the client API on an older one.
    let kind = TokenKind::parse(&kind)
        .ok_or_else(|| StoreError::Invalid(format!("unknown token kind `{kind}`")))?;
    Ok(TokenRecord {
        id: row.try_get(0)?,
        kind,
        account_id: row.try_get(2)?,
        user_id: row.try_get(3)?,
        gateway_id: row.try_get(4)?,
        created_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        revoked_at: row.try_get(7)?,
        device_public_key: row.try_get(8)?,
    })
}

/// Index n → 100.64.0.0 + n and fd00:2021:1111:: + n.
pub fn interface_for(index: i64) -> Interface {
    let n = u32::try_from(index).unwrap_or(0) & (ADDRESS_SPACE as u32 - 1);
    let base4 = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let base6 = u128::from(Ipv6Addr::new(0xfd00, 0x2021, 0x1111, 0, 0, 0, 0, 0));
    Interface {
        ipv4: Ipv4Addr::from(base4 + n),
        ipv6: Ipv6Addr::from(base6 + u128::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_index_maps_into_both_tunnel_ranges() {
        let i = interface_for(2);
        assert_eq!(i.ipv4, Ipv4Addr::new(100, 64, 0, 2));
        assert_eq!(i.ipv6.to_string(), "fd00:2021:1111::2");
        let last = interface_for(ADDRESS_SPACE - 1);
        assert_eq!(last.ipv4, Ipv4Addr::new(100, 95, 255, 255));
        assert_eq!(last.ipv6.to_string(), "fd00:2021:1111::1f:ffff");
    }
}
