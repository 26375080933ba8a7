//! Sites and their gateways. Deleting a site removes its resources (and their policies) and
//! its gateways (and their tokens); deleting a gateway closes its connection live.

use serde::Serialize;
use serde_json::json;

use super::input::Name;
use super::tokens::{self, IssuedToken};
use super::{Admin, AdminError, taken};
use crate::store::{GatewayRow, SiteRow, TokenKind};

/// A gateway just created, with its first token (shown once).
#[derive(Debug, Clone, Serialize)]
pub struct NewGateway {
    pub gateway: GatewayRow,
    pub token: IssuedToken,
}

pub async fn list(admin: &Admin<'_>) -> Result<Vec<SiteRow>, AdminError> {
    Ok(admin.store.list_sites(&admin.account_id).await?)
}

pub async fn get(admin: &Admin<'_>, site_id: &str) -> Result<SiteRow, AdminError> {
    Ok(admin.store.site(&admin.account_id, site_id).await?)
}

pub async fn find(admin: &Admin<'_>, name: &Name) -> Result<Option<SiteRow>, AdminError> {
    Ok(list(admin)
        .await?
        .into_iter()
        .find(|s| s.name == name.as_str()))
}

pub async fn create(admin: &Admin<'_>, name: Name) -> Result<SiteRow, AdminError> {
    let id = admin
        .store
        .insert_site(&admin.account_id, name.as_str())
        .await
        .map_err(taken(format!("a site {} already exists", name.as_str())))?;
    admin
        .record("site.create", &id, json!({ "name": name.as_str() }))
        .await;
    get(admin, &id).await
}

pub async fn rename(admin: &Admin<'_>, site_id: &str, name: Name) -> Result<SiteRow, AdminError> {
    admin
        .store
        .rename_site(&admin.account_id, site_id, name.as_str())
        .await
        .map_err(taken(format!("a site {} already exists", name.as_str())))?;
    admin
        .record("site.rename", site_id, json!({ "name": name.as_str() }))
        .await;
    get(admin, site_id).await
}

pub async fn delete(admin: &Admin<'_>, site_id: &str) -> Result<(), AdminError> {
    let site = get(admin, site_id).await?;
    admin.store.delete_site(&admin.account_id, site_id).await?;
    admin
        .record("site.delete", site_id, json!({ "name": site.name }))
        .await;
    Ok(())
}

pub async fn list_gateways(admin: &Admin<'_>) -> Result<Vec<GatewayRow>, AdminError> {
    Ok(admin.store.list_gateways(&admin.account_id).await?)
}

pub async fn get_gateway(admin: &Admin<'_>, gateway_id: &str) -> Result<GatewayRow, AdminError> {
    Ok(admin.store.gateway(&admin.account_id, gateway_id).await?)
}

/// Creates a gateway in a site with its first token.
pub async fn create_gateway(
    admin: &Admin<'_>,
    site_id: &str,
    name: Name,
) -> Result<NewGateway, AdminError> {
    let id = admin
        .store
        .insert_gateway(&admin.account_id, site_id, name.as_str())
        .await
        .map_err(taken(format!(
            "the site already has a gateway {}",
            name.as_str()
        )))?;
    admin
        .record(
            "gateway.create",
            &id,
            json!({ "name": name.as_str(), "site_id": site_id }),
        )
        .await;
    let token = tokens::issue(admin, TokenKind::Gateway, &id, None).await?;
    Ok(NewGateway {
        gateway: get_gateway(admin, &id).await?,
        token,
    })
}

/// A new token for a gateway (its old tokens stay valid until revoked).
pub async fn issue_gateway_token(
    admin: &Admin<'_>,
    gateway_id: &str,
) -> Result<IssuedToken, AdminError> {
    get_gateway(admin, gateway_id).await?;
    tokens::issue(admin, TokenKind::Gateway, gateway_id, None).await
}

/// The CLI's `gateway token`: the gateway `name` of a site, created if needed, and a new token.
pub async fn ensure_gateway_with_token(
    admin: &Admin<'_>,
    site_id: &str,
    name: Name,
) -> Result<IssuedToken, AdminError> {
    let existing = list_gateways(admin)
        .await?
        .into_iter()
        .find(|g| g.site_id == site_id && g.name == name.as_str());
    match existing {
        Some(gateway) => issue_gateway_token(admin, &gateway.id).await,
        None => Ok(create_gateway(admin, site_id, name).await?.token),
    }
}

pub async fn rename_gateway(
    admin: &Admin<'_>,
    gateway_id: &str,
    name: Name,
) -> Result<GatewayRow, AdminError> {
    admin
        .store
        .rename_gateway(&admin.account_id, gateway_id, name.as_str())
        .await
        .map_err(taken(format!(
            "the site already has a gateway {}",
            name.as_str()
        )))?;
    admin
        .record(
            "gateway.rename",
            gateway_id,
            json!({ "name": name.as_str() }),
        )
        .await;
    get_gateway(admin, gateway_id).await
}

/// Deletes a gateway and its tokens; its connection is closed live.
pub async fn delete_gateway(admin: &Admin<'_>, gateway_id: &str) -> Result<(), AdminError> {
    let gateway = get_gateway(admin, gateway_id).await?;
    admin
        .store
        .delete_gateway(&admin.account_id, gateway_id)
        .await?;
    admin
        .record(
            "gateway.delete",
            gateway_id,
            json!({ "name": gateway.name, "site_id": gateway.site_id }),
        )
        .await;
    Ok(())
}
