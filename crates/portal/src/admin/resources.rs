//! Resources and policies. Deleting either withdraws the access it gave, live.

use serde_json::json;

use super::input::{Address, Description, FilterSpec, Name};
use super::{Admin, AdminError, taken};
use crate::store::{NewResource, PolicyRow, ResourceRow};

/// A resource as an administrator describes it.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    pub site_id: String,
    pub name: Name,
    pub address: Address,
    pub description: Option<Description>,
    pub filters: Vec<FilterSpec>,
}

/// What an update changes; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ResourceUpdate {
    pub site_id: Option<String>,
    pub name: Option<Name>,
    pub address: Option<Address>,
    pub description: Option<Description>,
    pub filters: Option<Vec<FilterSpec>>,
}

pub async fn list(admin: &Admin<'_>) -> Result<Vec<ResourceRow>, AdminError> {
    Ok(admin.store.list_resources(&admin.account_id).await?)
}

pub async fn get(admin: &Admin<'_>, resource_id: &str) -> Result<ResourceRow, AdminError> {
    Ok(admin.store.resource(&admin.account_id, resource_id).await?)
}

pub async fn find(admin: &Admin<'_>, name: &Name) -> Result<Option<ResourceRow>, AdminError> {
    Ok(list(admin)
        .await?
        .into_iter()
        .find(|r| r.name == name.as_str()))
}

pub async fn create(admin: &Admin<'_>, spec: ResourceSpec) -> Result<ResourceRow, AdminError> {
    let row = NewResource {
        site_id: spec.site_id,
        name: spec.name.as_str().to_owned(),
        address: spec.address.as_str().to_owned(),
        description: spec.description.and_then(Description::into_inner),
        filters: spec.filters.iter().map(|f| f.0).collect(),
    };
    let id = admin
        .store
        .insert_resource(&admin.account_id, &row)
        .await
        .map_err(taken(format!("a resource {} already exists", row.name)))?;
    admin
        .record(
            "resource.create",
            &id,
            json!({ "name": row.name, "address": row.address, "site_id": row.site_id }),
        )
        .await;
    get(admin, &id).await
}

/// Changes a resource; clients that see it are told live, and grants of its old definition
/// are withdrawn.
pub async fn update(
    admin: &Admin<'_>,
    resource_id: &str,
    update: ResourceUpdate,
) -> Result<ResourceRow, AdminError> {
    let current = get(admin, resource_id).await?;
    let row = NewResource {
        site_id: update.site_id.unwrap_or(current.site_id),
        name: update.name.map_or(current.name, |n| n.as_str().to_owned()),
        address: update
            .address
            .map_or(current.address, |a| a.as_str().to_owned()),
        description: match update.description {
            Some(d) => d.into_inner(),
            None => current.description,
        },
        filters: match update.filters {
            Some(filters) => filters.iter().map(|f| f.0).collect(),
            None => current.filters,
        },
    };
    admin
        .store
        .update_resource(&admin.account_id, resource_id, &row)
        .await
        .map_err(taken(format!("a resource {} already exists", row.name)))?;
    admin
        .record(
            "resource.update",
            resource_id,
            json!({ "name": row.name, "address": row.address, "site_id": row.site_id }),
        )
        .await;
    get(admin, resource_id).await
}

/// The CLI's `resource create`: creates the resource, or updates the one with that name.
pub async fn save(admin: &Admin<'_>, spec: ResourceSpec) -> Result<ResourceRow, AdminError> {
    match find(admin, &spec.name).await? {
        None => create(admin, spec).await,
        Some(existing) => {
            let update = ResourceUpdate {
                site_id: Some(spec.site_id),
                name: None,
                address: Some(spec.address),
                description: Some(spec.description.unwrap_or_else(Description::none)),
                filters: Some(spec.filters),
            };
            self::update(admin, &existing.id, update).await
        }
    }
}

pub async fn delete(admin: &Admin<'_>, resource_id: &str) -> Result<(), AdminError> {
    let resource = get(admin, resource_id).await?;
    admin
        .store
        .delete_resource_of(&admin.account_id, resource_id)
        .await?;
    admin
        .record(
            "resource.delete",
            resource_id,
            json!({ "name": resource.name }),
        )
        .await;
    Ok(())
}

pub async fn list_policies(admin: &Admin<'_>) -> Result<Vec<PolicyRow>, AdminError> {
    Ok(admin.store.list_policies(&admin.account_id).await?)
}

pub async fn get_policy(admin: &Admin<'_>, policy_id: &str) -> Result<PolicyRow, AdminError> {
    list_policies(admin)
        .await?
        .into_iter()
        .find(|p| p.id == policy_id)
        .ok_or_else(|| AdminError::NotFound(format!("policy `{policy_id}`")))
}

/// The policy letting `group_id` use `resource_id`, if any.
pub async fn find_policy(
    admin: &Admin<'_>,
    group_id: &str,
    resource_id: &str,
) -> Result<Option<PolicyRow>, AdminError> {
    Ok(list_policies(admin)
        .await?
        .into_iter()
        .find(|p| p.group_id == group_id && p.resource_id == resource_id))
}

pub async fn create_policy(
    admin: &Admin<'_>,
    group_id: &str,
    resource_id: &str,
) -> Result<PolicyRow, AdminError> {
    let id = admin
        .store
        .insert_policy(&admin.account_id, group_id, resource_id)
        .await
        .map_err(taken("that group may already use that resource"))?;
    admin
        .record(
            "policy.create",
            &id,
            json!({ "group_id": group_id, "resource_id": resource_id }),
        )
        .await;
    get_policy(admin, &id).await
}

pub async fn delete_policy(admin: &Admin<'_>, policy_id: &str) -> Result<(), AdminError> {
    let policy = get_policy(admin, policy_id).await?;
    admin
        .store
        .delete_policy_of(&admin.account_id, policy_id)
        .await?;
    admin
        .record(
            "policy.delete",
            policy_id,
            json!({ "group_id": policy.group_id, "resource_id": policy.resource_id }),
        )
        .await;
    Ok(())
}
