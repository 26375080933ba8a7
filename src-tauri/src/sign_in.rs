//! The app's half of the browser sign-in (ARCHITECTURE §4, [`ember_protocol::sign_in`]): a
//! fresh `state` and PKCE verifier, the portal page to open, and the check a returning deep
//! link must pass.
//!
//! The verifier never leaves the app except, over IPC, to its own tunnel service; the page the
//! browser opens (visible to every local user on the `xdg-open` command line) carries only its
//! hash, and the deep link only a one-time code.

use std::time::{Duration, Instant};

use ember_protocol::SecretToken;
use ember_protocol::sign_in::{self as protocol, Callback, Verifier};
use rand::RngCore as _;

/// A deep link older than this no longer completes a sign-in.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub struct PendingSignIn {
    state: String,
    verifier: Verifier,
    /// The portal this sign-in went to: the code is redeemed there and the token kept for it.
    portal_url: String,
    started: Instant,
}

impl PendingSignIn {
    /// Starts a sign-in against `portal_url` and returns it with the page to open.
    pub fn begin(portal_url: &str, now: Instant) -> Result<(Self, url::Url), url::ParseError> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let pending = Self {
            state: random_hex(),
            verifier: Verifier::from_random_bytes(&secret),
            portal_url: portal_url.to_owned(),
            started: now,
        };
        let page =
            protocol::sign_in_url(portal_url, &pending.state, &pending.verifier.challenge())?;
        Ok((pending, page))
    }

    /// Whether a callback carrying `state` belongs to this sign-in (constant-time compare).
    pub fn accepts(&self, state: &str, now: Instant) -> bool {
        use subtle::ConstantTimeEq as _;
        now.saturating_duration_since(self.started) <= SIGN_IN_TIMEOUT
            && bool::from(self.state.as_bytes().ct_eq(state.as_bytes()))
    }

    /// Checks an `ember://sign-in-callback` link against this sign-in; what the service needs
    /// to redeem it.
    pub fn complete(&self, link: &url::Url, now: Instant) -> Result<Completed, CallbackError> {
        let callback = Callback::parse(link).map_err(|e| match e {
            protocol::CallbackError::NotACallback => CallbackError::NotACallback,
            protocol::CallbackError::Malformed(what) => CallbackError::Malformed(what),
        })?;
        if !self.accepts(&callback.state, now) {
            return Err(CallbackError::NotPending);
        }
        Ok(Completed {
            portal_url: self.portal_url.clone(),
            code: callback.code,
            verifier: self.verifier.secret().clone(),
            actor: callback.actor,
            account: callback.account,
        })
    }
}

/// A callback that belongs to the pending sign-in: the service redeems `code` with `verifier`
/// at `portal_url`.
#[derive(Debug)]
pub struct Completed {
    pub portal_url: String,
    pub code: SecretToken,
    pub verifier: SecretToken,
    pub actor: Option<String>,
    pub account: Option<String>,
}

/// Why a deep link did not complete a sign-in. None of these are acted on; they are logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("not a sign-in callback")]
    NotACallback,
    #[error("the `{0}` parameter is missing or malformed")]
    Malformed(&'static str),
    /// No sign-in is pending, it is older than ten minutes, or `state` does not match.
    #[error("no pending sign-in matches this link")]
    NotPending,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A deep link for the log: scheme, host and path, never the query (it carries the code).
pub fn redact(link: &url::Url) -> String {
    format!(
        "{}://{}{}",
        link.scheme(),
        link.host_str().unwrap_or(""),
        link.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_the_portal_sign_in_page_with_fresh_state_and_only_the_challenge() {
        let now = Instant::now();
        let (a, url) = PendingSignIn::begin("https://portal.example.com/base/", now).unwrap();
        let (b, _) = PendingSignIn::begin("https://portal.example.com/base/", now).unwrap();
        assert_eq!(url.path(), "/base/sign-in");
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(query[0], ("as".into(), "client".into()));
        assert_eq!(query[1].1, a.state);
        assert_eq!(query[2], ("challenge".into(), a.verifier.challenge()));
        assert!(!url.as_str().contains(a.verifier.secret().expose()));
        assert_eq!(a.state.len(), 64);
        assert_ne!(a.state, b.state);
        assert_ne!(a.verifier, b.verifier);

        let (_, url) = PendingSignIn::begin("https://portal.example.com/base", now).unwrap();
        assert_eq!(url.path(), "/base/sign-in");
    }

    #[test]
    fn accepts_only_the_matching_state_within_ten_minutes() {
        let now = Instant::now();
        let (pending, _) = PendingSignIn::begin("http://127.0.0.1:8080", now).unwrap();
        let state = pending.state.clone();
        assert!(pending.accepts(&state, now + Duration::from_secs(60)));
        assert!(!pending.accepts(&state[1..], now));
        assert!(!pending.accepts("", now));
        assert!(!pending.accepts(&state, now + SIGN_IN_TIMEOUT + Duration::from_secs(1)));
    }

    fn callback(state: &str, code: &str) -> url::Url {
        url::Url::parse(&protocol::callback_url(state, code, "Ada", "acme")).unwrap()
    }

    #[test]
    fn a_matching_callback_yields_the_code_and_the_verifier_for_its_portal() {
        let now = Instant::now();
        let (pending, _) = PendingSignIn::begin("http://127.0.0.1:8080", now).unwrap();
        let code = "ab".repeat(32);
        let completed = pending
            .complete(&callback(&pending.state.clone(), &code), now)
            .unwrap();
        assert_eq!(completed.code.expose(), code);
        assert_eq!(&completed.verifier, pending.verifier.secret());
        assert_eq!(completed.portal_url, "http://127.0.0.1:8080");
        assert_eq!(completed.actor.as_deref(), Some("Ada"));
        assert_eq!(completed.account.as_deref(), Some("acme"));
    }

    #[test]
    fn forged_stale_or_malformed_callbacks_are_refused() {
        let now = Instant::now();
        let (pending, _) = PendingSignIn::begin("http://127.0.0.1:8080", now).unwrap();
        let state = pending.state.clone();
        let code = "cd".repeat(32);
        let wrong_state = "0".repeat(64);
        let cases = [
            (
                callback(&wrong_state, &code),
                now,
                CallbackError::NotPending,
            ),
            (
                callback(&state, &code),
                now + SIGN_IN_TIMEOUT + Duration::from_secs(1),
                CallbackError::NotPending,
            ),
            (
                callback(&state, "zz"),
                now,
                CallbackError::Malformed("code"),
            ),
            (
                url::Url::parse(&format!("ember://other?state={state}&code={code}")).unwrap(),
                now,
                CallbackError::NotACallback,
            ),
        ];
        for (link, at, expected) in cases {
            assert_eq!(pending.complete(&link, at).unwrap_err(), expected, "{link}");
        }
    }

    #[test]
    fn redaction_drops_the_query() {
        let link = url::Url::parse("ember://sign-in-callback?state=s&code=secret").unwrap();
        assert_eq!(redact(&link), "ember://sign-in-callback");
    }
}
