//! The handlers: parse the path and body, call `crate::admin`, answer JSON.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{ApiError, Body, Caller};
use crate::admin::input::{Address, Description, Email, FilterSpec, Name, Password};
use crate::admin::resources::{ResourceSpec, ResourceUpdate};
use crate::admin::users::{NewUser, UserUpdate};
use crate::admin::{self, Admin};
use crate::server::Shared;
use crate::store::UserKind;

type Answer = Result<Response, ApiError>;

fn ok(value: impl serde::Serialize) -> Answer {
    Ok(Json(value).into_response())
}

fn created(value: impl serde::Serialize) -> Answer {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

fn deleted() -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn acting<'a>(state: &'a Shared, caller: &Caller) -> Admin<'a> {
    Admin::new(
        &state.store,
        caller.account_id.clone(),
        caller.user_id.clone(),
    )
}

/// `{id}` in a path (the account's slug is the caller's business).
#[derive(Deserialize)]
pub struct Id {
    id: String,
}

#[derive(Deserialize)]
pub struct Member {
    id: String,
    user_id: String,
}

pub async fn unknown_route() -> ApiError {
    ApiError::not_found("no such admin API route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

pub async fn me(caller: Caller) -> Answer {
    ok(json!({
        "user_id": caller.user_id,
        "email": caller.email,
        "account": caller.account_slug,
    }))
}

// -- users ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: Email,
    name: Name,
    password: Option<Password>,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    email: Option<Email>,
    name: Option<Name>,
    password: Option<Password>,
    disabled: Option<bool>,
    admin: Option<bool>,
}

pub async fn list_users(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(admin::users::list(&acting(&state, &caller)).await?)
}

pub async fn create_user(
    State(state): State<Shared>,
    caller: Caller,
    Body(body): Body<CreateUser>,
) -> Answer {
    let user = NewUser {
        email: body.email,
        name: body.name,
        password: body.password,
        admin: body.admin,
    };
    created(admin::users::create(&acting(&state, &caller), user).await?)
}

pub async fn get_user(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    ok(admin::users::get(&acting(&state, &caller), &p.id).await?)
}

pub async fn update_user(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
    Body(body): Body<PatchUser>,
) -> Answer {
    let update = UserUpdate {
        email: body.email,
        name: body.name,
        password: body.password,
        disabled: body.disabled,
        admin: body.admin,
    };
    ok(admin::users::update(&acting(&state, &caller), &p.id, update).await?)
}

pub async fn delete_user(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    admin::users::delete(&acting(&state, &caller), &p.id).await?;
    deleted()
}

pub async fn disable_user(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    ok(admin::users::set_disabled(&acting(&state, &caller), &p.id, true).await?)
}

pub async fn enable_user(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    ok(admin::users::set_disabled(&acting(&state, &caller), &p.id, false).await?)
}

pub async fn revoke_user_tokens(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    let revoked = admin::users::revoke_tokens(&acting(&state, &caller), &p.id).await?;
    ok(json!({ "revoked": revoked }))
}

// -- service accounts -----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    name: Name,
}

pub async fn list_service_accounts(State(state): State<Shared>, caller: Caller) -> Answer {
    let users = admin::users::list(&acting(&state, &caller)).await?;
    ok(users
        .into_iter()
        .filter(|u| u.kind == UserKind::Service)
        .collect::<Vec<_>>())
}

pub async fn create_service_account(
    State(state): State<Shared>,
    caller: Caller,
    Body(body): Body<Named>,
) -> Answer {
    let (user, token) =
        admin::users::create_service_account(&acting(&state, &caller), body.name).await?;
    created(json!({ "service_account": user, "token": token }))
}

pub async fn issue_service_token(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    created(admin::users::issue_service_token(&acting(&state, &caller), &p.id).await?)
}

// -- groups ---------------------------------------------------------------------------------

pub async fn list_groups(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(admin::groups::list(&acting(&state, &caller)).await?)
}

pub async fn create_group(
    State(state): State<Shared>,
    caller: Caller,
    Body(body): Body<Named>,
) -> Answer {
    created(admin::groups::create(&acting(&state, &caller), body.name).await?)
}

pub async fn get_group(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    ok(admin::groups::get(&acting(&state, &caller), &p.id).await?)
}

pub async fn rename_group(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
    Body(body): Body<Named>,
) -> Answer {
    ok(admin::groups::rename(&acting(&state, &caller), &p.id, body.name).await?)
}

pub async fn delete_group(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    admin::groups::delete(&acting(&state, &caller), &p.id).await?;
    deleted()
}

pub async fn list_members(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    ok(admin::groups::members(&acting(&state, &caller), &p.id).await?)
}

pub async fn add_member(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Member>,
) -> Answer {
    admin::groups::add_member(&acting(&state, &caller), &p.id, &p.user_id).await?;
    deleted()
}

pub async fn remove_member(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Member>,
) -> Answer {
    admin::groups::remove_member(&acting(&state, &caller), &p.id, &p.user_id).await?;
    deleted()
}

// -- sites and gateways ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGateway {
    site_id: String,
    name: Name,
}

pub async fn list_sites(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(admin::sites::list(&acting(&state, &caller)).await?)
}

pub async fn create_site(
    State(state): State<Shared>,
    caller: Caller,
    Body(body): Body<Named>,
) -> Answer {
    created(admin::sites::create(&acting(&state, &caller), body.name).await?)
}

pub async fn get_site(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    ok(admin::sites::get(&acting(&state, &caller), &p.id).await?)
}

pub async fn rename_site(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
    Body(body): Body<Named>,
) -> Answer {
    ok(admin::sites::rename(&acting(&state, &caller), &p.id, body.name).await?)
}

pub async fn delete_site(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    admin::sites::delete(&acting(&state, &caller), &p.id).await?;
    deleted()
}

pub async fn list_gateways(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(admin::sites::list_gateways(&acting(&state, &caller)).await?)
}

pub async fn create_gateway(
    State(state): State<Shared>,
    caller: Caller,
    Body(body): Body<CreateGateway>,
) -> Answer {
    created(admin::sites::create_gateway(&acting(&state, &caller), &body.site_id, body.name).await?)
}

pub async fn get_gateway(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    ok(admin::sites::get_gateway(&acting(&state, &caller), &p.id).await?)
}

pub async fn rename_gateway(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
    Body(body): Body<Named>,
) -> Answer {
    ok(admin::sites::rename_gateway(&acting(&state, &caller), &p.id, body.name).await?)
}

pub async fn delete_gateway(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    admin::sites::delete_gateway(&acting(&state, &caller), &p.id).await?;
    deleted()
}

pub async fn issue_gateway_token(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    created(admin::sites::issue_gateway_token(&acting(&state, &caller), &p.id).await?)
}

// -- resources and policies -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateResource {
    site_id: String,
    name: Name,
    address: Address,
    description: Option<Description>,
    #[serde(default)]
    filters: Vec<FilterSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchResource {
    site_id: Option<String>,
    name: Option<Name>,
    address: Option<Address>,
    description: Option<Description>,
    filters: Option<Vec<FilterSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    group_id: String,
    resource_id: String,
}

pub async fn list_resources(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(admin::resources::list(&acting(&state, &caller)).await?)
}

pub async fn create_resource(
    State(state): State<Shared>,
    caller: Caller,
    Body(body): Body<CreateResource>,
) -> Answer {
    let spec = ResourceSpec {
        site_id: body.site_id,
        name: body.name,
        address: body.address,
        description: body.description,
        filters: body.filters,
    };
    created(admin::resources::create(&acting(&state, &caller), spec).await?)
}

pub async fn get_resource(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    ok(admin::resources::get(&acting(&state, &caller), &p.id).await?)
}

pub async fn update_resource(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
    Body(body): Body<PatchResource>,
) -> Answer {
    let update = ResourceUpdate {
        site_id: body.site_id,
        name: body.name,
        address: body.address,
        description: body.description,
        filters: body.filters,
    };
    ok(admin::resources::update(&acting(&state, &caller), &p.id, update).await?)
}

pub async fn delete_resource(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    admin::resources::delete(&acting(&state, &caller), &p.id).await?;
    deleted()
}

pub async fn list_policies(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(admin::resources::list_policies(&acting(&state, &caller)).await?)
}

pub async fn create_policy(
    State(state): State<Shared>,
    caller: Caller,
    Body(body): Body<CreatePolicy>,
) -> Answer {
    created(
        admin::resources::create_policy(
            &acting(&state, &caller),
            &body.group_id,
            &body.resource_id,
        )
        .await?,
    )
}

pub async fn get_policy(State(state): State<Shared>, caller: Caller, Path(p): Path<Id>) -> Answer {
    ok(admin::resources::get_policy(&acting(&state, &caller), &p.id).await?)
}

pub async fn delete_policy(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    admin::resources::delete_policy(&acting(&state, &caller), &p.id).await?;
    deleted()
}

// -- tokens ---------------------------------------------------------------------------------

pub async fn list_tokens(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(admin::tokens::list(&acting(&state, &caller)).await?)
}

pub async fn revoke_token(
    State(state): State<Shared>,
    caller: Caller,
    Path(p): Path<Id>,
) -> Answer {
    admin::tokens::revoke(&acting(&state, &caller), &p.id).await?;
    deleted()
}

// -- who is connected -----------------------------------------------------------------------

/// Devices and gateways connected to this replica, with the grants each device holds.
pub async fn online(State(state): State<Shared>, caller: Caller) -> Answer {
    ok(state.with_hub(|hub| hub.online(&caller.account_id)))
}
