//! Groups and their members. Deleting a group removes its memberships and policies.

use serde_json::json;

use super::input::Name;
use super::{Admin, AdminError, taken};
use crate::store::{GroupRow, UserRow};

pub async fn list(admin: &Admin<'_>) -> Result<Vec<GroupRow>, AdminError> {
    Ok(admin.store.list_groups(&admin.account_id).await?)
}

pub async fn get(admin: &Admin<'_>, group_id: &str) -> Result<GroupRow, AdminError> {
    Ok(admin.store.group(&admin.account_id, group_id).await?)
}

/// The group with this name, if any.
pub async fn find(admin: &Admin<'_>, name: &Name) -> Result<Option<GroupRow>, AdminError> {
    Ok(list(admin)
        .await?
        .into_iter()
        .find(|g| g.name == name.as_str()))
}

pub async fn create(admin: &Admin<'_>, name: Name) -> Result<GroupRow, AdminError> {
    let id = admin
        .store
        .insert_group(&admin.account_id, name.as_str())
        .await
        .map_err(taken(format!("a group {} already exists", name.as_str())))?;
    admin
        .record("group.create", &id, json!({ "name": name.as_str() }))
        .await;
    get(admin, &id).await
}

pub async fn rename(admin: &Admin<'_>, group_id: &str, name: Name) -> Result<GroupRow, AdminError> {
    admin
        .store
        .rename_group(&admin.account_id, group_id, name.as_str())
        .await
        .map_err(taken(format!("a group {} already exists", name.as_str())))?;
    admin
        .record("group.rename", group_id, json!({ "name": name.as_str() }))
        .await;
    get(admin, group_id).await
}

/// Deletes a group with its memberships and policies; access only it gave is withdrawn live.
pub async fn delete(admin: &Admin<'_>, group_id: &str) -> Result<(), AdminError> {
    let group = get(admin, group_id).await?;
    admin
        .store
        .delete_group(&admin.account_id, group_id)
        .await?;
    admin
        .record("group.delete", group_id, json!({ "name": group.name }))
        .await;
    Ok(())
}

pub async fn members(admin: &Admin<'_>, group_id: &str) -> Result<Vec<UserRow>, AdminError> {
    let group = get(admin, group_id).await?;
    Ok(admin
        .store
        .list_users(&admin.account_id)
        .await?
        .into_iter()
        .filter(|u| group.members.contains(&u.id))
        .collect())
}

/// Adds a user to a group; adding a member twice changes nothing. Returns whether it was new.
pub async fn add_member(
    admin: &Admin<'_>,
    group_id: &str,
    user_id: &str,
) -> Result<bool, AdminError> {
    let added = admin
        .store
        .add_member(&admin.account_id, group_id, user_id)
        .await?;
    if added {
        admin
            .record("group.add_member", group_id, json!({ "user_id": user_id }))
            .await;
    }
    Ok(added)
}

pub async fn remove_member(
    admin: &Admin<'_>,
    group_id: &str,
    user_id: &str,
) -> Result<(), AdminError> {
    admin
        .store
        .remove_member(&admin.account_id, group_id, user_id)
        .await?;
    admin
        .record(
            "group.remove_member",
            group_id,
            json!({ "user_id": user_id }),
        )
        .await;
    Ok(())
}
