//! The first half of the browser sign-in (ARCHITECTURE §4): fresh `state` and `nonce`, the
//! portal URL to open, and the check a returning deep link must pass.

use std::time::{Duration, Instant};

use ember_protocol::SecretToken;
use ember_protocol::deep_link::SignInCallback as Callback;
pub use ember_protocol::deep_link::{CallbackError, redact};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

/// A deep link older than this no longer completes a sign-in.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub struct PendingSignIn {
    state: String,
    /// Stays in the app; the portal binds the token to it, so the URL alone is no credential.
    nonce: String,
    started: Instant,
}

impl PendingSignIn {
    /// Starts a sign-in against `portal_url` and returns it with the page to open.
    pub fn begin(portal_url: &str, now: Instant) -> Result<(Self, url::Url), url::ParseError> {
        let pending = Self {
            state: random_hex(),
            nonce: random_hex(),
            started: now,
        };
        let mut base = url::Url::parse(portal_url)?;
        // `join` replaces the last path segment unless the base ends with a slash.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut page = base.join("sign-in")?;
        page.query_pairs_mut()
            .append_pair("as", "client")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce);
        Ok((pending, page))
    }

    /// Whether a callback carrying `state` belongs to this sign-in (constant-time compare).
    pub fn accepts(&self, state: &str, now: Instant) -> bool {
        use subtle::ConstantTimeEq as _;
        now.saturating_duration_since(self.started) <= SIGN_IN_TIMEOUT
            && bool::from(self.state.as_bytes().ct_eq(state.as_bytes()))
    }

    /// Checks an `ember://sign-in-callback` link against this sign-in and derives the token
    /// from the nonce and the link's `fragment` (the rule is in `crates/portal/README.md`).
    pub fn complete(&self, link: &url::Url, now: Instant) -> Result<SignedIn, CallbackError> {
        let callback = Callback::parse(link)?;
        if !self.accepts(&callback.state, now) {
            return Err(CallbackError::NotPending);
        }
        let nonce = hex::decode(&self.nonce).map_err(|_| CallbackError::Malformed("nonce"))?;
        let fragment =
            hex::decode(&callback.fragment).map_err(|_| CallbackError::Malformed("fragment"))?;
        if fragment.len() != 32 {
            return Err(CallbackError::Malformed("fragment"));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&nonce)
            .map_err(|_| CallbackError::Malformed("nonce"))?;
        mac.update(&fragment);
        Ok(SignedIn {
            token: SecretToken::new(hex::encode(mac.finalize().into_bytes())),
            actor: callback.actor,
            account: callback.account,
        })
    }
}

/// What a completed sign-in yields.
#[derive(Debug)]
pub struct SignedIn {
    pub token: SecretToken,
    pub actor: Option<String>,
    pub account: Option<String>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_the_portal_sign_in_page_with_fresh_state_and_nonce() {
        let now = Instant::now();
        let (a, url) = PendingSignIn::begin("https://portal.example.com/base/", now).unwrap();
        let (b, _) = PendingSignIn::begin("https://portal.example.com/base/", now).unwrap();
        assert_eq!(url.path(), "/base/sign-in");
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(query[0], ("as".into(), "client".into()));
        assert_eq!(query[1].1, a.state);
        assert_eq!(query[2].1, a.nonce);
        assert_eq!(a.state.len(), 64);
        assert_ne!(a.state, b.state);
        assert_ne!(a.state, a.nonce);

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

    fn callback(state: &str, fragment: &str) -> url::Url {
        url::Url::parse(&format!(
            "ember://sign-in-callback?state={state}&fragment={fragment}&actor=Ada&account=acme"
        ))
        .unwrap()
    }

    #[test]
    fn a_matching_callback_yields_the_token_the_portal_derives() {
        let now = Instant::now();
        let (mut pending, _) = PendingSignIn::begin("http://127.0.0.1:8080", now).unwrap();
        pending.nonce = "00".repeat(31) + "01";
        let fragment = "ab".repeat(32);
        let signed_in = pending
            .complete(&callback(&pending.state.clone(), &fragment), now)
            .unwrap();
        // The same computation, spelled out independently of `complete`.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&hex::decode(&pending.nonce).unwrap()).unwrap();
        mac.update(&[0xab; 32]);
        assert_eq!(
            signed_in.token.expose(),
            hex::encode(mac.finalize().into_bytes())
        );
        assert_eq!(signed_in.actor.as_deref(), Some("Ada"));
        assert_eq!(signed_in.account.as_deref(), Some("acme"));
    }

    #[test]
    fn forged_stale_or_malformed_callbacks_are_refused() {
        let now = Instant::now();
        let (pending, _) = PendingSignIn::begin("http://127.0.0.1:8080", now).unwrap();
        let state = pending.state.clone();
        let fragment = "cd".repeat(32);
        let wrong_state = "0".repeat(64);
        let cases = [
            (
                callback(&wrong_state, &fragment),
                now,
                CallbackError::NotPending,
            ),
            (
                callback(&state, &fragment),
                now + SIGN_IN_TIMEOUT + Duration::from_secs(1),
                CallbackError::NotPending,
            ),
            (
                callback(&state, "zz"),
                now,
                CallbackError::Malformed("fragment"),
            ),
            (
                url::Url::parse(&format!("ember://sign-in-callback?fragment={fragment}")).unwrap(),
                now,
                CallbackError::Malformed("state"),
            ),
            (
                url::Url::parse(&format!(
                    "ember://sign-in-callback?state={state}&state={state}&fragment={fragment}"
                ))
                .unwrap(),
                now,
                CallbackError::Malformed("repeated parameter"),
            ),
            (
                url::Url::parse(&format!("ember://other?state={state}&fragment={fragment}"))
                    .unwrap(),
                now,
                CallbackError::NotACallback,
            ),
        ];
        for (link, at, expected) in cases {
            assert_eq!(pending.complete(&link, at).unwrap_err(), expected, "{link}");
        }
    }
}
