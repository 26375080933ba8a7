//! The sign-in page (ARCHITECTURE §4): plain, accessible HTML with a password form.
//!
//! `GET /sign-in?as=client&state=S&challenge=C[&account=SLUG]` shows the form; `C` is the app's
//! PKCE challenge (see [`ember_protocol::sign_in`]). The form carries a signed *attempt* (state,
//! challenge, account, time, CSRF binding) so nothing is stored for a page view.
//! `POST /sign-in` checks, in order: the CSRF cookie equals the form's CSRF field and is the one
//! the attempt was signed with; the attempt's signature and age; the failure rate limit; the
//! password. Then, atomically, the attempt is recorded as used (a second use is refused as a
//! replay) and a one-time code is stored (as a hash, with the challenge), and the browser is
//! sent to `ember://sign-in-callback?state=S&code=K&actor=NAME&account=SLUG`. The app's service
//! redeems the code with the verifier at [`crate::redeem`]; the code alone is worth nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use ember_protocol::portal::AccountInfo;
use ember_protocol::sign_in;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use tracing::{info, warn};

use crate::audit::{AuditEvent, AuditKind};
use crate::server::Shared;
use crate::store::now_unix;
use crate::{crypto, throttle};

const CSRF_COOKIE: &str = "ember_csrf";

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(rename = "as")]
    pub as_: Option<String>,
    pub state: Option<String>,
    pub challenge: Option<String>,
    pub account: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SubmitForm {
    pub attempt: String,
    pub csrf: String,
    pub account: String,
    pub email: String,
    pub password: String,
}

/// What the form's `attempt` field carries, signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Attempt {
    pub(crate) state: String,
    pub(crate) challenge: String,
    pub(crate) account: String,
    issued_at: i64,
    /// SHA-256 (hex) of the CSRF value in the cookie and the form.
    csrf: String,
}

pub async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Ember portal</title></head>",
        "<body><main><h1>Ember portal</h1><p>Sign in from the Ember app: it opens this portal's sign-in page for you.</p></main></body></html>"
    ))
}

pub async fn page(State(state): State<Shared>, Query(query): Query<PageQuery>) -> Response {
    if query.as_.as_deref() != Some("client") {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This page is opened by the Ember app (missing `as=client`).",
        );
    }
    let (Some(s), Some(challenge)) = (query.state, query.challenge) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is incomplete. Start again from the Ember app.",
        );
    };
    if crypto::decode_hex32(&s, "state").is_err() || !sign_in::is_challenge(&challenge) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is malformed. Start again from the Ember app.",
        );
    }
    let account = query.account.unwrap_or_else(|| {
        let snapshot = state.snapshot();
        match snapshot.accounts.values().collect::<Vec<_>>().as_slice() {
            [only] => only.slug.clone(),
            _ => String::new(),
        }
    });
    let csrf = crypto::random_hex32();
    let attempt = Attempt {
        state: s,
        challenge,
        account: account.clone(),
        issued_at: now_unix(),
        csrf: hex::encode(Sha256::digest(csrf.as_bytes())),
    };
    let Ok(payload) = serde_json::to_vec(&attempt) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The portal could not create the sign-in form.",
        );
    };
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    let signature = crypto::sign(&state.signing_key, payload.as_bytes());
    let attempt_field = format!("{payload}.{signature}");
    let mut response = form_page(
        &state.config.oidc,
        StatusCode::OK,
        &attempt_field,
        &csrf,
        &account,
        "",
        None,
    );
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{CSRF_COOKIE}={csrf}; Path=/sign-in; HttpOnly; SameSite=Strict{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub async fn submit(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SubmitForm>,
) -> Response {
    let attempt = match check_form(&state, &headers, &form.attempt, &form.csrf) {
        Ok(attempt) => attempt,
        Err(refusal) => return refusal,
    };
    let account_slug = form.account.trim().to_owned();
    let email = form.email.trim().to_ascii_lowercase();
    let client =
        throttle::client_address(peer.ip(), &headers, &state.config.server.trusted_proxies);
    let ip_key = throttle::address_key(client);
    let user_key = throttle::account_key(&account_slug, &email);
    let now = Instant::now();
    let blocked = {
        let limiter = state
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        limiter
            .blocked_for(&ip_key, now)
            .or_else(|| limiter.blocked_for(&user_key, now))
    };
    if let Some(wait) = blocked {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let when = if seconds < 60 {
            format!("{seconds} second(s)")
        } else {
            format!("{} minute(s)", seconds.div_ceil(60))
        };
        let mut response = form_page(
            &state.config.oidc,
            StatusCode::TOO_MANY_REQUESTS,
            &form.attempt,
            &form.csrf,
            &account_slug,
            &email,
            Some(&format!("Too many failed sign-ins. Try again in {when}.")),
        );
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // An account the admin CLI created a moment ago may not be in the model yet.
    let snapshot = state
        .snapshot_knowing(|s| s.accounts.values().any(|a| a.slug == account_slug))
        .await;
    let account = snapshot
        .accounts
        .values()
        .find(|a| a.slug == account_slug)
        .cloned();
    let user = match &account {
        Some(account) => state.store.password_user(&account.id, &email).await,
        None => Ok(None),
    };
    let user = match user {
        Ok(user) => user,
        Err(e) => {
            warn!(error = %e, "user look-up failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The portal cannot read its database. Try again shortly.",
            );
        }
    };
    // Verify against a dummy hash when the user does not exist, so timing tells nothing.
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let password = form.password.clone();
    let verified = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => crypto::verify_password(&password, &hash),
        None => {
            let _ = crypto::verify_password(&password, DUMMY_HASH);
            false
        }
    })
    .await
    .unwrap_or(false);
    let (Some(account), Some(user), true) = (account, user, verified) else {
        {
            let mut limiter = state
                .limiter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            limiter.record_failure(&ip_key, now);
            limiter.record_failure(&user_key, now);
        }
        info!(account = %account_slug, "failed sign-in");
        audit_failure(
            &state,
            SignInMethod::Password,
            &email,
            &account_slug,
            Some(client),
            "wrong account, email or password",
        );
        return form_page(
            &state.config.oidc,
            StatusCode::UNAUTHORIZED,
            &form.attempt,
            &form.csrf,
            &account_slug,
            &email,
            Some("Wrong account, email or password."),
        );
    };
    if user.disabled {
        audit_failure(
            &state,
            SignInMethod::Password,
            &email,
            &account_slug,
            Some(client),
            "user disabled",
        );
        return error_page(
            StatusCode::FORBIDDEN,
            "This user is disabled. Ask your administrator.",
        );
    }
    state
        .limiter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear(&user_key);
    finish(
        &state,
        SignInMethod::Password,
        &form.attempt,
        &attempt,
        &account,
        &user.id,
        &user.name,
    )
    .await
}

/// How a user proved who they are, for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SignInMethod {
    Password,
    Oidc,
}

impl SignInMethod {
    fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Oidc => "oidc",
        }
    }
}

/// A failed sign-in for the audit log. The email is what was typed (bounded: it may be an
/// attacker's garbage); the reason is never "no such user" versus "wrong password", which
/// would tell whoever reads the log less than it tells an attacker who reads the page.
pub(crate) fn audit_failure(
    state: &Shared,
    method: SignInMethod,
    who: &str,
    account: &str,
    client: Option<IpAddr>,
    reason: &str,
) {
    let who: String = who.chars().take(254).collect();
    let account: String = account.chars().take(64).collect();
    state.audit.record(
        AuditEvent::now(AuditKind::SignIn, "failure", &who, &account).detail(serde_json::json!({
            "method": method.as_str(),
            "client": client.map(|ip| ip.to_string()),
            "reason": reason,
        })),
    );
}

/// Checks a posted form: the CSRF cookie equals the form's field and is the one the attempt
/// was signed with; the attempt's signature; its age.
#[allow(clippy::result_large_err)] // the refusal is the HTTP answer, built once per bad form
pub(crate) fn check_form(
    state: &Shared,
    headers: &HeaderMap,
    attempt_field: &str,
    csrf: &str,
) -> Result<Attempt, Response> {
    let cookie_csrf = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let csrf_ok = !csrf.is_empty() && bool::from(cookie_csrf.as_bytes().ct_eq(csrf.as_bytes()));
    let Some(attempt) = verify_attempt(state, attempt_field) else {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in form is not valid. Start again from the Ember app.",
        ));
    };
    let csrf_hash = hex::encode(Sha256::digest(csrf.as_bytes()));
    if !csrf_ok || !bool::from(csrf_hash.as_bytes().ct_eq(attempt.csrf.as_bytes())) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "The sign-in form could not be verified (cookies must be enabled). Start again from the Ember app.",
        ));
    }
    check_attempt_age(state, &attempt)?;
    Ok(attempt)
}

#[allow(clippy::result_large_err)] // as above
pub(crate) fn check_attempt_age(state: &Shared, attempt: &Attempt) -> Result<(), Response> {
    let age = now_unix() - attempt.issued_at;
    if age < 0 || age as u64 > state.config.sign_in.attempt_lifetime_secs {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired. Start again from the Ember app.",
        ));
    }
    Ok(())
}

/// The end of every successful sign-in (password or OIDC): record the attempt as used, store a
/// one-time code for the app's challenge, and send the browser to the app with the code.
pub(crate) async fn finish(
    state: &Shared,
    method: SignInMethod,
    attempt_field: &str,
    attempt: &Attempt,
    account: &AccountInfo,
    user_id: &str,
    user_name: &str,
) -> Response {
    let code = crypto::random_hex32();
    let attempt_id = hex::encode(Sha256::digest(attempt_field.as_bytes()));
    let issued = crate::store::SignInCode {
        challenge: attempt.challenge.clone(),
        account_id: account.id.clone(),
        user_id: user_id.to_owned(),
        expires_at: now_unix() + crate::redeem::CODE_LIFETIME_SECS,
    };
    match state
        .store
        .complete_sign_in(&attempt_id, &code, &issued)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                StatusCode::CONFLICT,
                "This sign-in was already completed. Start again from the Ember app.",
            );
        }
        Err(e) => {
            warn!(error = %e, "cannot store a sign-in code");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The portal cannot write its database. Try again shortly.",
            );
        }
    }
    info!(user = %user_id, "signed in");
    state.audit.record(
        AuditEvent::now(AuditKind::SignIn, "success", user_id, &account.slug)
            .account(&account.id)
            .detail(serde_json::json!({ "method": method.as_str() })),
    );
    let location = sign_in::callback_url(&attempt.state, &code, user_name, &account.slug);
    let mut response = (
        StatusCode::SEE_OTHER,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed in</title></head><body><main><h1>Signed in</h1><p>Return to the Ember app. If it did not open, <a href=\"{}\">open it here</a>.</p></main></body></html>",
            escape(&location)
        )),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    // The sign-in cookies have done their job.
    for expired in [
        "ember_csrf=; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=0",
        "ember_oidc=; Path=/sign-in; HttpOnly; SameSite=Lax; Max-Age=0",
    ] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, HeaderValue::from_static(expired));
    }
    response
}
/// An argon2id hash of a random password nobody knows, to spend the same time on unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Y3Z0Q0pJvH0m8m5q3y7gkqj6m4H0nq3wq8r8mZ8kG3o";

pub(crate) fn verify_attempt(state: &Shared, field: &str) -> Option<Attempt> {
    let (payload, signature) = field.split_once('.')?;
    if !crypto::verify_signature(&state.signing_key, payload.as_bytes(), signature) {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn form_page(
    oidc: &[crate::config::OidcConfig],
    status: StatusCode,
    attempt: &str,
    csrf: &str,
    account: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let described = if error.is_empty() {
        ""
    } else {
        " aria-describedby=\"error\""
    };
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in to Ember</title></head>
<body>
<main>
<h1>Sign in to Ember</h1>
{error}
<form method="post" action="/sign-in">
<input type="hidden" name="attempt" value="{attempt}">
<input type="hidden" name="csrf" value="{csrf}">
<p><label for="account">Account</label><br><input id="account" name="account" type="text" required autocomplete="organization" value="{account}"></p>
<p><label for="email">Email</label><br><input id="email" name="email" type="email" required autocomplete="username" value="{email}"{described}></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" required autocomplete="current-password"{described}></p>
<p><button type="submit">Sign in</button></p>
</form>
{providers}</main>
</body>
</html>
"#,
        providers = oidc
            .iter()
            .enumerate()
            .filter(|(_, p)| account.is_empty() || p.account == account)
            .map(|(i, p)| format!(
                "<form method=\"post\" action=\"/sign-in/oidc\"><input type=\"hidden\" name=\"attempt\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"provider\" value=\"{i}\"><p><button type=\"submit\">Sign in with {}</button></p></form>\n",
                escape(attempt),
                escape(csrf),
                escape(&p.name)
            ))
            .collect::<String>(),
        attempt = escape(attempt),
        csrf = escape(csrf),
        account = escape(account),
        email = escape(email),
    );
    with_page_headers((status, Html(body)).into_response())
}

pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in problem</title></head><body><main><h1>Sign-in problem</h1><p role=\"alert\">{}</p></main></body></html>",
        escape(message)
    );
    with_page_headers((status, Html(body)).into_response())
}

fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_parses_so_unknown_users_cost_a_full_verification() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!crypto::verify_password("anything", DUMMY_HASH));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
