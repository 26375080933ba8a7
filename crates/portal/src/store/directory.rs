//! The model row by row, for administration: users, groups and their members, sites,
//! gateways, resources and policies of one account, listed, read, written and deleted by id.
//!
//! Every query names the account, so an id from another account is simply not found. Deleting
//! relies on the schema's `ON DELETE CASCADE` (a group takes its memberships and policies, a
//! site its resources and gateways, a gateway its tokens, a user their tokens, devices and
//! memberships). Every change bumps the generation, so running portals apply it live.

use ember_protocol::portal::Filter;
use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Result, Store, StoreError};
use crate::crypto::new_id;

/// `users.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    /// Signs in with a password or OIDC.
    Person,
    /// Never signs in interactively; uses a long-lived client token (the headless client).
    Service,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Service => "service",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub kind: UserKind,
    pub admin: bool,
    pub disabled: bool,
    /// Whether the user can sign in with a password (the hash itself never leaves the store).
    pub has_password: bool,
    pub groups: Vec<String>,
    #[serde(skip)]
    pub account_id: String,
}

/// What an update changes; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub email: Option<String>,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
    pub admin: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteRow {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayRow {
    pub id: String,
    pub site_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceRow {
    pub id: String,
    pub site_id: String,
    pub name: String,
    /// As the administrator typed it (already validated).
    pub address: String,
    pub description: Option<String>,
    pub filters: Vec<Filter>,
}

/// A resource to write: the address was validated by `model::parse_address`.
#[derive(Debug, Clone)]
pub struct NewResource {
    pub site_id: String,
    pub name: String,
    pub address: String,
    pub description: Option<String>,
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRow {
    pub id: String,
    pub group_id: String,
    pub resource_id: String,
}

const USER_COLUMNS: &str =
    "id, email, name, kind, admin, disabled, password_hash IS NOT NULL, account_id";

impl Store {
    // -- users ------------------------------------------------------------------------------

    pub async fn list_users(&self, account_id: &str) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE account_id = $1 ORDER BY email"
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        let members = self.memberships(account_id).await?;
        rows.iter()
            .map(|row| {
                let mut user = user_from_row(row)?;
                user.groups = members
                    .iter()
                    .filter(|(_, u)| *u == user.id)
                    .map(|(g, _)| g.clone())
                    .collect();
                Ok(user)
            })
            .collect()
    }

    /// A user of any account (the admin API's authentication looks the caller up by id).
    pub async fn user_by_id(&self, user_id: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut user = user_from_row(&row)?;
        user.groups =
            sqlx::query("SELECT group_id FROM group_members WHERE user_id = $1 ORDER BY group_id")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
        Ok(Some(user))
    }

    pub async fn user(&self, account_id: &str, user_id: &str) -> Result<UserRow> {
        match self.user_by_id(user_id).await? {
            Some(user) if user.account_id == account_id => Ok(user),
            _ => Err(StoreError::NotFound(format!("user `{user_id}`"))),
        }
    }

    /// Inserts a user; a taken email is a conflict ([`StoreError::is_conflict`]).
    pub async fn insert_user(
        &self,
        account_id: &str,
        email: &str,
        name: &str,
        password_hash: Option<&str>,
        kind: UserKind,
    ) -> Result<String> {
        let id = new_id("usr");
        sqlx::query(
            "INSERT INTO users (id, account_id, email, name, password_hash, kind) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(email)
        .bind(name)
        .bind(password_hash.map(str::to_owned))
        .bind(kind.as_str())
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        Ok(id)
    }

    pub async fn update_user(
        &self,
        account_id: &str,
        user_id: &str,
        change: &UserChange,
    ) -> Result<()> {
        let current = self.user(account_id, user_id).await?;
        // The hash is not read back; COALESCE keeps it when no new one is given.
        sqlx::query(
            "UPDATE users SET email = $1, name = $2, password_hash = COALESCE($3, password_hash),
             disabled = $4, admin = $5 WHERE id = $6 AND account_id = $7",
        )
        .bind(change.email.clone().unwrap_or(current.email))
        .bind(change.name.clone().unwrap_or(current.name))
        .bind(change.password_hash.clone())
        .bind(i64::from(change.disabled.unwrap_or(current.disabled)))
        .bind(i64::from(change.admin.unwrap_or(current.admin)))
        .bind(user_id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        self.bump_generation().await
    }

    pub async fn delete_user(&self, account_id: &str, user_id: &str) -> Result<()> {
        self.delete_row("users", account_id, user_id, "user").await
    }

    // -- groups and memberships -------------------------------------------------------------

    pub async fn list_groups(&self, account_id: &str) -> Result<Vec<GroupRow>> {
        let rows =
            sqlx::query("SELECT id, name FROM user_groups WHERE account_id = $1 ORDER BY name")
                .bind(account_id)
                .fetch_all(&self.pool)
                .await?;
        let members = self.memberships(account_id).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                Ok(GroupRow {
                    members: members
                        .iter()
                        .filter(|(g, _)| *g == id)
                        .map(|(_, u)| u.clone())
                        .collect(),
                    name: row.try_get(1)?,
                    id,
                })
            })
            .collect()
    }

    pub async fn group(&self, account_id: &str, group_id: &str) -> Result<GroupRow> {
        self.list_groups(account_id)
            .await?
            .into_iter()
            .find(|g| g.id == group_id)
            .ok_or_else(|| StoreError::NotFound(format!("group `{group_id}`")))
    }

    pub async fn insert_group(&self, account_id: &str, name: &str) -> Result<String> {
        self.insert_named("user_groups", "grp", account_id, name)
            .await
    }

    pub async fn rename_group(&self, account_id: &str, group_id: &str, name: &str) -> Result<()> {
        self.rename_row("user_groups", account_id, group_id, name, "group")
            .await
    }

    pub async fn delete_group(&self, account_id: &str, group_id: &str) -> Result<()> {
        self.delete_row("user_groups", account_id, group_id, "group")
            .await
    }

    /// Adds a user to a group, both of `account_id`; returns whether the user was not in it.
    pub async fn add_member(
        &self,
        account_id: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<bool> {
        self.group(account_id, group_id).await?;
        self.user(account_id, user_id).await?;
        let done = sqlx::query(
            "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn remove_member(
        &self,
        account_id: &str,
        group_id: &str,
        user_id: &str,
    ) -> Result<()> {
        self.group(account_id, group_id).await?;
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "member `{user_id}` of group `{group_id}`"
            )));
        }
        self.bump_generation().await
    }

    // -- sites and gateways -----------------------------------------------------------------

    pub async fn list_sites(&self, account_id: &str) -> Result<Vec<SiteRow>> {
        let rows = sqlx::query("SELECT id, name FROM sites WHERE account_id = $1 ORDER BY name")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SiteRow {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                })
            })
            .collect()
    }

    pub async fn site(&self, account_id: &str, site_id: &str) -> Result<SiteRow> {
        self.list_sites(account_id)
            .await?
            .into_iter()
            .find(|s| s.id == site_id)
            .ok_or_else(|| StoreError::NotFound(format!("site `{site_id}`")))
    }

    pub async fn insert_site(&self, account_id: &str, name: &str) -> Result<String> {
        self.insert_named("sites", "site", account_id, name).await
    }

    pub async fn rename_site(&self, account_id: &str, site_id: &str, name: &str) -> Result<()> {
        self.rename_row("sites", account_id, site_id, name, "site")
            .await
    }

    pub async fn delete_site(&self, account_id: &str, site_id: &str) -> Result<()> {
        self.delete_row("sites", account_id, site_id, "site").await
    }

    pub async fn list_gateways(&self, account_id: &str) -> Result<Vec<GatewayRow>> {
        let rows = sqlx::query(
            "SELECT id, site_id, name FROM gateways WHERE account_id = $1 ORDER BY site_id, name",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(GatewayRow {
                    id: row.try_get(0)?,
                    site_id: row.try_get(1)?,
                    name: row.try_get(2)?,
                })
            })
            .collect()
    }

    pub async fn gateway(&self, account_id: &str, gateway_id: &str) -> Result<GatewayRow> {
        self.list_gateways(account_id)
            .await?
            .into_iter()
            .find(|g| g.id == gateway_id)
            .ok_or_else(|| StoreError::NotFound(format!("gateway `{gateway_id}`")))
    }

    /// Inserts a gateway in a site of `account_id`; a taken name in the site is a conflict.
    pub async fn insert_gateway(
        &self,
        account_id: &str,
        site_id: &str,
        name: &str,
    ) -> Result<String> {
        self.site(account_id, site_id).await?;
        let id = new_id("gw");
        sqlx::query("INSERT INTO gateways (id, account_id, site_id, name) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(account_id)
            .bind(site_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.bump_generation().await?;
        Ok(id)
    }

    pub async fn rename_gateway(
        &self,
        account_id: &str,
        gateway_id: &str,
        name: &str,
    ) -> Result<()> {
        self.rename_row("gateways", account_id, gateway_id, name, "gateway")
            .await
    }

    pub async fn delete_gateway(&self, account_id: &str, gateway_id: &str) -> Result<()> {
        self.delete_row("gateways", account_id, gateway_id, "gateway")
            .await
    }

    // -- resources and policies -------------------------------------------------------------

    pub async fn list_resources(&self, account_id: &str) -> Result<Vec<ResourceRow>> {
        let rows = sqlx::query(
            "SELECT id, site_id, name, address, address_description, filters FROM resources
             WHERE account_id = $1 ORDER BY name",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let filters: String = row.try_get(5)?;
                Ok(ResourceRow {
                    filters: serde_json::from_str(&filters).map_err(|e| {
                        StoreError::Invalid(format!("filters of resource {id}: {e}"))
                    })?,
                    site_id: row.try_get(1)?,
                    name: row.try_get(2)?,
                    address: row.try_get(3)?,
                    description: row.try_get(4)?,
                    id,
                })
            })
            .collect()
    }

    pub async fn resource(&self, account_id: &str, resource_id: &str) -> Result<ResourceRow> {
        self.list_resources(account_id)
            .await?
            .into_iter()
            .find(|r| r.id == resource_id)
            .ok_or_else(|| StoreError::NotFound(format!("resource `{resource_id}`")))
    }

    /// Inserts a resource; a taken name is a conflict.
    pub async fn insert_resource(
        &self,
        account_id: &str,
        resource: &NewResource,
    ) -> Result<String> {
        self.site(account_id, &resource.site_id).await?;
        let id = new_id("res");
        sqlx::query(
            "INSERT INTO resources (id, account_id, site_id, name, address, address_description, filters)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(&resource.site_id)
        .bind(&resource.name)
        .bind(&resource.address)
        .bind(resource.description.clone())
        .bind(filters_json(&resource.filters)?)
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        Ok(id)
    }

    /// Replaces every field of a resource (the caller merged the change).
    pub async fn update_resource(
        &self,
        account_id: &str,
        resource_id: &str,
        resource: &NewResource,
    ) -> Result<()> {
        self.site(account_id, &resource.site_id).await?;
        let done = sqlx::query(
            "UPDATE resources SET site_id = $1, name = $2, address = $3, address_description = $4,
             filters = $5 WHERE id = $6 AND account_id = $7",
        )
        .bind(&resource.site_id)
        .bind(&resource.name)
        .bind(&resource.address)
        .bind(resource.description.clone())
        .bind(filters_json(&resource.filters)?)
        .bind(resource_id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("resource `{resource_id}`")));
        }
        self.bump_generation().await
    }

    pub async fn delete_resource_of(&self, account_id: &str, resource_id: &str) -> Result<()> {
        self.delete_row("resources", account_id, resource_id, "resource")
            .await
    }

    pub async fn list_policies(&self, account_id: &str) -> Result<Vec<PolicyRow>> {
        let rows = sqlx::query(
            "SELECT id, group_id, resource_id FROM policies WHERE account_id = $1 ORDER BY group_id, resource_id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PolicyRow {
                    id: row.try_get(0)?,
                    group_id: row.try_get(1)?,
                    resource_id: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Lets a group of `account_id` use a resource of it; the same pair twice is a conflict.
    pub async fn insert_policy(
        &self,
        account_id: &str,
        group_id: &str,
        resource_id: &str,
    ) -> Result<String> {
        self.group(account_id, group_id).await?;
        self.resource(account_id, resource_id).await?;
        let id = new_id("pol");
        sqlx::query(
            "INSERT INTO policies (id, account_id, group_id, resource_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(group_id)
        .bind(resource_id)
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        Ok(id)
    }

    pub async fn delete_policy_of(&self, account_id: &str, policy_id: &str) -> Result<()> {
        self.delete_row("policies", account_id, policy_id, "policy")
            .await
    }

    // -- helpers ----------------------------------------------------------------------------

    /// (group id, user id) of every membership in the account.
    async fn memberships(&self, account_id: &str) -> Result<Vec<(String, String)>> {
        sqlx::query(
            "SELECT m.group_id, m.user_id FROM group_members m JOIN user_groups g ON g.id = m.group_id
             WHERE g.account_id = $1 ORDER BY m.group_id, m.user_id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
    }

    /// `table` is one of this module's constants, never input.
    async fn insert_named(
        &self,
        table: &str,
        prefix: &str,
        account_id: &str,
        name: &str,
    ) -> Result<String> {
        let id = new_id(prefix);
        sqlx::query(&format!(
            "INSERT INTO {table} (id, account_id, name) VALUES ($1, $2, $3)"
        ))
        .bind(&id)
        .bind(account_id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        self.bump_generation().await?;
        Ok(id)
    }

    async fn rename_row(
        &self,
        table: &str,
        account_id: &str,
        id: &str,
        name: &str,
        what: &str,
    ) -> Result<()> {
        let done = sqlx::query(&format!(
            "UPDATE {table} SET name = $1 WHERE id = $2 AND account_id = $3"
        ))
        .bind(name)
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{what} `{id}`")));
        }
        self.bump_generation().await
    }

    async fn delete_row(&self, table: &str, account_id: &str, id: &str, what: &str) -> Result<()> {
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{what} `{id}`")));
        }
        self.bump_generation().await
    }
}

fn user_from_row(row: &AnyRow) -> Result<UserRow> {
    let kind: String = row.try_get(3)?;
    Ok(UserRow {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        name: row.try_get(2)?,
        kind: if kind == UserKind::Service.as_str() {
            UserKind::Service
        } else {
            UserKind::Person
        },
        admin: row.try_get::<i64, _>(4)? != 0,
        disabled: row.try_get::<i64, _>(5)? != 0,
        has_password: bool_of(row, 6)?,
        groups: Vec::new(),
        account_id: row.try_get(7)?,
    })
}

/// `x IS NOT NULL` is an integer in SQLite and a boolean in PostgreSQL.
fn bool_of(row: &AnyRow, index: usize) -> Result<bool> {
    match row.try_get::<bool, _>(index) {
        Ok(value) => Ok(value),
        Err(_) => Ok(row.try_get::<i64, _>(index)? != 0),
    }
}

fn filters_json(filters: &[Filter]) -> Result<String> {
    serde_json::to_string(filters).map_err(|e| StoreError::Invalid(e.to_string()))
}
