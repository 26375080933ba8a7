//! Who is calling: a Bearer token of an admin of the account the path names, and the typed
//! JSON errors every route answers with.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::admin::AdminError;
use crate::server::Shared;
use crate::store::{TokenKind, now_unix};

/// An error answer: `{"error": "<code>", "message": "<for people>"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_input", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the portal cannot read or write its database",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(why) => Self::bad_input(why),
            AdminError::NotFound(what) => Self::not_found(format!("{what} not found")),
            AdminError::Conflict(why) => Self::new(StatusCode::CONFLICT, "conflict", why),
            AdminError::Store(e) => {
                warn!(error = %e, "an admin API call failed in the store");
                Self::unavailable()
            }
            AdminError::Crypto(e) => {
                warn!(error = %e, "an admin API call failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

/// An admin allowed to act on the account in the path (or on their own account for routes
/// that name none).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub account_id: String,
    pub account_slug: String,
    pub email: String,
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
        if token.len() != 64 {
            return Err(ApiError::unauthorized("unknown token"));
        }
        let record = state
            .store
            .find_token(token)
            .await
            .map_err(|e| {
                warn!(error = %e, "admin token look-up failed");
                ApiError::unavailable()
            })?
            .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        if record.revoked_at.is_some() {
            return Err(ApiError::unauthorized("the token has been revoked"));
        }
        if record.expires_at.is_some_and(|e| e <= now_unix()) {
            return Err(ApiError::unauthorized("the token has expired"));
        }
        // Admin tokens, and the session tokens an admin got by signing in (password or OIDC).
        let (TokenKind::Admin | TokenKind::Client, Some(user_id)) = (record.kind, record.user_id)
        else {
            return Err(ApiError::forbidden(
                "only an admin's token may call the admin API",
            ));
        };
        let user = state
            .store
            .user_by_id(&user_id)
            .await
            .map_err(|e| {
                warn!(error = %e, "admin look-up failed");
                ApiError::unavailable()
            })?
            .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
        // The role is read on every call: revoking it (or disabling the user) takes effect at
        // once for every token the user holds.
        if !user.admin || user.disabled {
            return Err(ApiError::forbidden("this user is not an admin"));
        }
        let account_slug = state
            .store
            .account_slug(&user.account_id)
            .await
            .map_err(|e| {
                warn!(error = %e, "admin account look-up failed");
                ApiError::unavailable()
            })?;
        let named = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(key, _)| *key == "account")
                    .map(|(_, value)| value.to_owned())
            });
        if named.is_some_and(|slug| slug != account_slug) {
            return Err(ApiError::forbidden(
                "this token administers another account",
            ));
        }
        Ok(Self {
            user_id: user.id,
            account_id: user.account_id,
            account_slug,
            email: user.email,
        })
    }
}

/// A JSON body parsed into typed values; anything else is a `bad_input` answer.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_input(rejection.body_text())),
        }
    }
}
