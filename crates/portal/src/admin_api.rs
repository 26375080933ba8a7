//! The admin HTTP API: JSON under [`PREFIX`], Bearer-authenticated by an admin's token
//! ([`auth::Caller`]), every route scoped to the account its path names. Handlers only parse
//! and answer: the work is `crate::admin`'s, the same code the CLI runs.
//!
//! Answers: 200 with the object or list, 201 with what was created, 204 after a delete;
//! errors are `{"error", "message"}` with 400, 401, 403, 404, 409 or 503.

mod auth;
mod routes;

pub use auth::{ApiError, Caller};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{delete, get, post, put};

use crate::server::Shared;

pub const PREFIX: &str = "/api/admin/v1";

/// The API's routes, to be nested under [`PREFIX`].
pub fn router(state: Shared) -> Router<Shared> {
    use routes::*;
    let account = Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/users/{id}/disable", post(disable_user))
        .route("/users/{id}/enable", post(enable_user))
        .route("/users/{id}/revoke-tokens", post(revoke_user_tokens))
        .route(
            "/service-accounts",
            get(list_service_accounts).post(create_service_account),
        )
        .route("/service-accounts/{id}/tokens", post(issue_service_token))
        .route("/groups", get(list_groups).post(create_group))
        .route(
            "/groups/{id}",
            get(get_group).patch(rename_group).delete(delete_group),
        )
        .route("/groups/{id}/members", get(list_members))
        .route(
            "/groups/{id}/members/{user_id}",
            put(add_member).delete(remove_member),
        )
        .route("/sites", get(list_sites).post(create_site))
        .route(
            "/sites/{id}",
            get(get_site).patch(rename_site).delete(delete_site),
        )
        .route("/gateways", get(list_gateways).post(create_gateway))
        .route(
            "/gateways/{id}",
            get(get_gateway)
                .patch(rename_gateway)
                .delete(delete_gateway),
        )
        .route("/gateways/{id}/tokens", post(issue_gateway_token))
        .route("/resources", get(list_resources).post(create_resource))
        .route(
            "/resources/{id}",
            get(get_resource)
                .patch(update_resource)
                .delete(delete_resource),
        )
        .route("/policies", get(list_policies).post(create_policy))
        .route("/policies/{id}", get(get_policy).delete(delete_policy))
        .route("/tokens", get(list_tokens))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/online", get(online));
    Router::new()
        .route("/me", get(me))
        .nest("/accounts/{account}", account)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state, apply_at_once))
}

/// After a change, this replica reloads its model before answering, so the admin's next call
/// (or a device reconnecting at once) sees it; other replicas follow the generation as usual.
async fn apply_at_once(
    State(state): State<Shared>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let changes = request.method() != Method::GET;
    let response = next.run(request).await;
    if changes && response.status().is_success() {
        state.apply_changes().await;
    }
    response
}
