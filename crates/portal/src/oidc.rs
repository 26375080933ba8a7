//! "Sign in with <provider>": OpenID Connect authorisation code flow with PKCE (S256) and
//! discovery, through the `openidconnect` crate.
//!
//! `POST /sign-in/oidc` (the button on the sign-in page, CSRF-checked like the password form)
//! discovers the provider, creates the PKCE verifier, OIDC `state` and `nonce`, keeps them with
//! the Ember sign-in attempt in a signed, HttpOnly cookie (`SameSite=Lax`, since the provider
//! redirects back cross-site), and redirects to the provider. `GET /sign-in/oidc/callback`
//! checks the cookie's signature and the `state`, exchanges the code (with the verifier),
//! verifies the ID token (signature, issuer, audience, expiry, nonce), and maps the identity to
//! a user of the provider's account: by `(issuer, subject)` when linked before, otherwise by a
//! *verified* email, which links it. Then it finishes like a password sign-in.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tracing::{info, warn};

use crate::config::OidcConfig;
use crate::crypto;
use crate::server::Shared;
use crate::signin::{self, Attempt, error_page};

const OIDC_COOKIE: &str = "ember_oidc";
pub const CALLBACK_PATH: &str = "/sign-in/oidc/callback";

#[derive(Debug, Deserialize)]
pub struct StartForm {
    pub attempt: String,
    pub csrf: String,
    pub provider: usize,
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// What travels in the signed cookie between the redirect and the callback.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    provider: usize,
    /// The Ember attempt field, as posted (its hash is the replay key).
    attempt: String,
    oidc_state: String,
    nonce: String,
    pkce_verifier: String,
}

fn http_client() -> Result<openidconnect::reqwest::Client, openidconnect::reqwest::Error> {
    // No redirects: the OIDC specifications forbid following them for these requests (SSRF).
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
}

async fn discover(
    state: &Shared,
    provider: &OidcConfig,
    http: &openidconnect::reqwest::Client,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    String,
> {
    let issuer = IssuerUrl::new(provider.issuer.clone()).map_err(|e| e.to_string())?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| format!("discovery failed: {e}"))?;
    let redirect = RedirectUrl::new(format!("{}{CALLBACK_PATH}", state.public_url()))
        .map_err(|e| e.to_string())?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.client_id.clone()),
        Some(ClientSecret::new(provider.client_secret.clone())),
    )
    .set_redirect_uri(redirect))
}

pub async fn start(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Response {
    let attempt = match signin::check_form(&state, &headers, &form.attempt, &form.csrf) {
        Ok(attempt) => attempt,
        Err(refusal) => return refusal,
    };
    let Some(provider) = state.config.oidc.get(form.provider) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "There is no such sign-in provider.",
        );
    };
    if !attempt.account.is_empty() && attempt.account != provider.account {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This provider does not serve that account.",
        );
    }
    let Ok(http) = http_client() else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The portal cannot make HTTP requests.",
        );
    };
    let client = match discover(&state, provider, &http).await {
        Ok(client) => client,
        Err(e) => {
            warn!(issuer = %provider.issuer, error = %e, "OIDC discovery failed");
            return error_page(
                StatusCode::BAD_GATEWAY,
                &format!("{} cannot be reached. Try again shortly.", provider.name),
            );
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, oidc_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        provider: form.provider,
        attempt: form.attempt,
        oidc_state: oidc_state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    };
    let Ok(json) = serde_json::to_vec(&pending) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The portal could not start the sign-in.",
        );
    };
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let signature = crypto::sign(&state.signing_key, format!("oidc.{payload}").as_bytes());
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{OIDC_COOKIE}={payload}.{signature}; Path=/sign-in; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        state.config.sign_in.attempt_lifetime_secs
    );
    let mut response = Redirect::to(url.as_str()).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub async fn callback(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    if let Some(error) = query.error {
        let error: String = error.chars().take(100).collect();
        return error_page(
            StatusCode::UNAUTHORIZED,
            &format!("The provider refused the sign-in ({error}). Start again from the Ember app."),
        );
    }
    let (Some(code), Some(returned_state)) = (query.code, query.state) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The provider's answer is incomplete. Start again from the Ember app.",
        );
    };
    let Some(pending) =
        signin::cookie(&headers, OIDC_COOKIE).and_then(|c| verify_pending(&state, &c))
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in is not valid in this browser (cookies must be enabled). Start again from the Ember app.",
        );
    };
    if !bool::from(
        pending
            .oidc_state
            .as_bytes()
            .ct_eq(returned_state.as_bytes()),
    ) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The provider's answer does not belong to this sign-in. Start again from the Ember app.",
        );
    }
    let Some(attempt) = signin::verify_attempt(&state, &pending.attempt) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in is not valid. Start again from the Ember app.",
        );
    };
    if let Err(refusal) = signin::check_attempt_age(&state, &attempt) {
        return refusal;
    }
    let Some(provider) = state.config.oidc.get(pending.provider) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "There is no such sign-in provider.",
        );
    };
    match identify(&state, provider, code, &pending).await {
        Ok((account, user_id, user_name)) => {
            finish(&state, &pending, &attempt, &account, &user_id, &user_name).await
        }
        Err((status, message)) => {
            signin::audit_failure(
                &state,
                signin::SignInMethod::Oidc,
                &provider.issuer,
                &provider.account,
                None,
                &message,
            );
            error_page(status, &message)
        }
    }
}

async fn finish(
    state: &Shared,
    pending: &Pending,
    attempt: &Attempt,
    account: &ember_protocol::portal::AccountInfo,
    user_id: &str,
    user_name: &str,
) -> Response {
    signin::finish(
        state,
        signin::SignInMethod::Oidc,
        &pending.attempt,
        attempt,
        account,
        user_id,
        user_name,
    )
    .await
}

/// Exchanges the code and finds (or links) the user.
async fn identify(
    state: &Shared,
    provider: &OidcConfig,
    code: String,
    pending: &Pending,
) -> Result<(ember_protocol::portal::AccountInfo, String, String), (StatusCode, String)> {
    let unavailable = |what: String| (StatusCode::BAD_GATEWAY, what);
    let http = http_client().map_err(|e| unavailable(e.to_string()))?;
    let client = discover(state, provider, &http).await.map_err(|e| {
        warn!(issuer = %provider.issuer, error = %e, "OIDC discovery failed");
        unavailable(format!(
            "{} cannot be reached. Try again shortly.",
            provider.name
        ))
    })?;
    let exchange = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| unavailable(format!("the provider has no token endpoint: {e}")))?;
    let tokens = exchange
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| {
            warn!(error = %e, "OIDC code exchange failed");
            (
                StatusCode::UNAUTHORIZED,
                "The provider did not confirm the sign-in. Start again from the Ember app."
                    .to_owned(),
            )
        })?;
    let id_token = openidconnect::TokenResponse::id_token(&tokens)
        .ok_or_else(|| unavailable("the provider sent no ID token".into()))?;
    let claims = id_token
        .claims(
            &client.id_token_verifier(),
            &Nonce::new(pending.nonce.clone()),
        )
        .map_err(|e| {
            warn!(error = %e, "OIDC ID token rejected");
            (
                StatusCode::UNAUTHORIZED,
                "The provider's ID token is not valid. Start again from the Ember app.".to_owned(),
            )
        })?;
    let subject = claims.subject().as_str().to_owned();
    let mut email = claims.email().map(|e| e.as_str().to_ascii_lowercase());
    let mut verified = claims.email_verified().unwrap_or(false);
    if email.is_none() {
        // Many providers put profile claims only in the UserInfo response.
        let request = client
            .user_info(
                openidconnect::OAuth2TokenResponse::access_token(&tokens).clone(),
                Some(claims.subject().clone()),
            )
            .map_err(|e| unavailable(format!("the provider has no userinfo endpoint: {e}")))?;
        let info: openidconnect::core::CoreUserInfoClaims =
            request.request_async(&http).await.map_err(|e| {
                warn!(error = %e, "OIDC userinfo request failed");
                unavailable("The provider did not answer the userinfo request.".into())
            })?;
        email = info.email().map(|e| e.as_str().to_ascii_lowercase());
        verified = info.email_verified().unwrap_or(false);
    }

    let internal = |e: crate::store::StoreError| {
        warn!(error = %e, "OIDC user look-up failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "The portal cannot read its database. Try again shortly.".to_owned(),
        )
    };
    let account_id = state
        .store
        .account_id(&provider.account)
        .await
        .map_err(internal)?;
    let user_id = match state
        .store
        .oidc_user(&provider.issuer, &subject)
        .await
        .map_err(internal)?
    {
        Some(user_id) => user_id,
        None => {
            let (Some(email), true) = (email, verified) else {
                return Err((
                    StatusCode::FORBIDDEN,
                    "The provider did not share a verified email address. Ask your administrator."
                        .into(),
                ));
            };
            let Ok(user_id) = state.store.user_id(&account_id, &email).await else {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "There is no Ember user {email} in this account. Ask your administrator."
                    ),
                ));
            };
            state
                .store
                .link_oidc_identity(&user_id, &provider.issuer, &subject)
                .await
                .map_err(internal)?;
            info!(user = %user_id, issuer = %provider.issuer, "linked an OIDC identity");
            user_id
        }
    };
    // A user created or linked a moment ago may not be in the model yet.
    let snapshot = state
        .snapshot_knowing(|s| {
            s.users.contains_key(&user_id) && s.accounts.contains_key(&account_id)
        })
        .await;
    let (Some(user), Some(account)) = (
        snapshot.users.get(&user_id),
        snapshot.accounts.get(&account_id),
    ) else {
        return Err((StatusCode::FORBIDDEN, "This user no longer exists.".into()));
    };
    if user.service {
        return Err((
            StatusCode::FORBIDDEN,
            "This is a service account; it signs in with its token, not here.".into(),
        ));
    }
    if user.disabled || user.account_id != account_id {
        return Err((
            StatusCode::FORBIDDEN,
            "This user is disabled. Ask your administrator.".into(),
        ));
    }
    Ok((account.clone(), user.id.clone(), user.name.clone()))
}

fn verify_pending(state: &Shared, cookie: &str) -> Option<Pending> {
    let (payload, signature) = cookie.split_once('.')?;
    if !crypto::verify_signature(
        &state.signing_key,
        format!("oidc.{payload}").as_bytes(),
        signature,
    ) {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
