//! `POST /sign-in/redeem`: the tunnel service turns the one-time code of a browser sign-in into
//! a client token (ARCHITECTURE §4, [`ember_protocol::sign_in`]).
//!
//! The code is taken out of the store before anything else is checked, so a code is redeemed at
//! most once even when the verifier is wrong: someone who read the deep link (another local
//! user, a browser extension) and tries it without the verifier only burns it. The token is
//! bound to the device key in the request; the client API refuses it with any other key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ember_protocol::SecretToken;
use ember_protocol::portal::{ErrorBody, ErrorCode};
use ember_protocol::sign_in::{self, RedeemRequest, RedeemResponse};
use subtle::ConstantTimeEq as _;
use tracing::{info, warn};

use crate::crypto;
use crate::server::Shared;
use crate::store::now_unix;

/// How long the app has to redeem a code after the browser was sent back to it.
pub const CODE_LIFETIME_SECS: i64 = 120;

pub async fn redeem(State(state): State<Shared>, Json(request): Json<RedeemRequest>) -> Response {
    let code = request.code.expose();
    let verifier = request.verifier.expose();
    let key_ok = request
        .public_key
        .parse::<ember_protocol::WireGuardKey>()
        .is_ok();
    if !sign_in::is_hex32(code) || !sign_in::is_verifier(verifier) || !key_ok {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidField,
            "`code` must be 64 hex characters, `verifier` 43 base64url characters and \
             `public_key` standard base64 of 32 bytes",
        );
    }
    let issued = match state.store.take_sign_in_code(code).await {
        Ok(Some(issued)) => issued,
        Ok(None) => {
            info!("refused a sign-in code that is unknown, used or expired");
            return refuse(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "this sign-in code is unknown, used or expired: sign in again",
            );
        }
        Err(e) => return unavailable(&e),
    };
    let challenge = sign_in::challenge(verifier);
    if !bool::from(challenge.as_bytes().ct_eq(issued.challenge.as_bytes())) {
        warn!(user = %issued.user_id, "refused a sign-in code presented without its verifier");
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "the verifier does not match this sign-in: sign in again",
        );
    }
    let token = crypto::random_hex32();
    let expires_at = now_unix() + state.config.sign_in.client_token_lifetime_secs as i64;
    if let Err(e) = state
        .store
        .insert_device_token(
            &issued.account_id,
            &issued.user_id,
            &token,
            &request.public_key,
            expires_at,
        )
        .await
    {
        return unavailable(&e);
    }
    info!(user = %issued.user_id, "signed in");
    Json(RedeemResponse {
        token: SecretToken::new(token),
        expires_at,
    })
    .into_response()
}

fn unavailable(error: &crate::store::StoreError) -> Response {
    warn!(%error, "cannot redeem a sign-in code");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal,
        "the portal cannot use its database; try again shortly",
    )
}

fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            code,
            message: message.to_owned(),
        }),
    )
        .into_response()
}
