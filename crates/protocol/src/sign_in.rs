//! The browser sign-in, PKCE-style (ARCHITECTURE §4), as the app, the service and the portal
//! all see it.
//!
//! 1. The app makes a [`Verifier`] (32 random bytes) that never leaves it except, over IPC, to
//!    its own tunnel service. The browser opens [`sign_in_url`], which carries only `state` and
//!    the verifier's [`challenge`] (SHA-256, base64url): anyone reading the command line of
//!    `xdg-open` learns nothing they can use.
//! 2. After the user authenticates, the portal sends the browser to
//!    `ember://sign-in-callback?state=…&code=…&actor=…&account=…`, parsed by [`Callback::parse`].
//!    The code is one-time and short-lived; on its own it is worth nothing.
//! 3. The app hands code and verifier to its service, which posts a [`RedeemRequest`] to the
//!    portal's [`REDEEM_PATH`] together with the device's WireGuard public key. The portal checks
//!    the verifier against the challenge, burns the code and answers a [`RedeemResponse`] with a
//!    token bound to that device key.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::SecretToken;

/// Where the service redeems a code (`POST`, JSON [`RedeemRequest`] → [`RedeemResponse`]).
pub const REDEEM_PATH: &str = "/sign-in/redeem";

/// The deep link's host: `ember://sign-in-callback?…`.
pub const CALLBACK_HOST: &str = "sign-in-callback";

/// A verifier is base64url of 32 bytes: 43 characters.
const VERIFIER_LEN: usize = 43;
/// Codes and `state` are hex of 32 bytes.
const HEX32_LEN: usize = 64;

/// The secret half of the exchange. It wipes itself and never prints itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier(SecretToken);

impl Verifier {
    /// A verifier from 32 bytes the caller drew from a cryptographic random source.
    pub fn from_random_bytes(bytes: &[u8; 32]) -> Self {
        Self(SecretToken::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        ))
    }

    /// What the browser URL carries instead of the verifier.
    pub fn challenge(&self) -> String {
        challenge(self.0.expose())
    }

    /// The verifier for the IPC request to the service and the redeem request to the portal.
    pub fn secret(&self) -> &SecretToken {
        &self.0
    }
}

/// `base64url(SHA-256(verifier))`, without padding (RFC 7636's `S256`).
pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` has the shape of a verifier (the portal checks before hashing).
pub fn is_verifier(verifier: &str) -> bool {
    verifier.len() == VERIFIER_LEN
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `challenge` has the shape of a challenge (43 base64url characters).
pub fn is_challenge(challenge: &str) -> bool {
    is_verifier(challenge)
}

/// Whether `value` is hex of 32 bytes (`state`, the one-time code).
pub fn is_hex32(value: &str) -> bool {
    value.len() == HEX32_LEN && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `{portal}/sign-in?as=client&state=S&challenge=C`, the page the browser opens.
pub fn sign_in_url(
    portal_url: &str,
    state: &str,
    challenge: &str,
) -> Result<url::Url, url::ParseError> {
    let mut base = url::Url::parse(portal_url)?;
    // `join` replaces the last path segment unless the base ends with a slash.
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let mut page = base.join("sign-in")?;
    page.query_pairs_mut()
        .append_pair("as", "client")
        .append_pair("state", state)
        .append_pair("challenge", challenge);
    Ok(page)
}

/// The portal's redirect back to the app, as the portal builds it.
pub fn callback_url(state: &str, code: &str, actor: &str, account: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("state", state)
        .append_pair("code", code)
        .append_pair("actor", actor)
        .append_pair("account", account)
        .finish();
    format!("ember://{CALLBACK_HOST}?{query}")
}

/// A parsed `ember://sign-in-callback` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub state: String,
    /// One-time; worth nothing without the verifier.
    pub code: SecretToken,
    pub actor: Option<String>,
    pub account: Option<String>,
}

/// Why a deep link is no sign-in callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("not a sign-in callback")]
    NotACallback,
    #[error("the `{0}` parameter is missing or malformed")]
    Malformed(&'static str),
}

impl Callback {
    pub fn parse(link: &url::Url) -> Result<Self, CallbackError> {
        // `ember://sign-in-callback?…`: the host is the action.
        if link.scheme() != "ember" || link.host_str() != Some(CALLBACK_HOST) {
            return Err(CallbackError::NotACallback);
        }
        let mut state = None;
        let mut code = None;
        let mut actor = None;
        let mut account = None;
        for (key, value) in link.query_pairs() {
            let slot = match key.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "actor" => &mut actor,
                "account" => &mut account,
                _ => continue,
            };
            // A repeated parameter is a forged or mangled link, not something to guess about.
            if slot.replace(value.into_owned()).is_some() {
                return Err(CallbackError::Malformed("repeated parameter"));
            }
        }
        let state = state
            .filter(|s| is_hex32(s))
            .ok_or(CallbackError::Malformed("state"))?;
        let code = code
            .filter(|c| is_hex32(c))
            .map(SecretToken::new)
            .ok_or(CallbackError::Malformed("code"))?;
        Ok(Self {
            state,
            code,
            actor: actor.map(|a| a.chars().take(128).collect()),
            account: account.map(|a| a.chars().take(128).collect()),
        })
    }
}

/// What the service posts to [`REDEEM_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemRequest {
    pub code: SecretToken,
    pub verifier: SecretToken,
    /// The device's WireGuard public key (standard base64): the token works only with it.
    pub public_key: String,
}

/// The portal's answer to a good [`RedeemRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemResponse {
    pub token: SecretToken,
    /// Unix seconds.
    pub expires_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_rfc_7636_s256_of_the_verifier() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = Verifier::from_random_bytes(&[7; 32]);
        assert!(is_verifier(verifier.secret().expose()));
        assert!(is_challenge(&verifier.challenge()));
        assert_ne!(verifier.challenge(), verifier.secret().expose());
    }

    #[test]
    fn the_sign_in_url_carries_state_and_challenge_but_no_secret() {
        let verifier = Verifier::from_random_bytes(&[1; 32]);
        let state = "ab".repeat(32);
        let url = sign_in_url(
            "https://portal.example.com/base",
            &state,
            &verifier.challenge(),
        )
        .unwrap();
        assert_eq!(url.path(), "/base/sign-in");
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            query,
            [
                ("as".to_owned(), "client".to_owned()),
                ("state".to_owned(), state),
                ("challenge".to_owned(), verifier.challenge()),
            ]
        );
        assert!(!url.as_str().contains(verifier.secret().expose()));
    }

    #[test]
    fn a_callback_round_trips_and_forged_ones_are_refused() {
        let (state, code) = ("1".repeat(64), "2".repeat(64));
        let link = url::Url::parse(&callback_url(&state, &code, "Ada", "acme")).unwrap();
        let callback = Callback::parse(&link).unwrap();
        assert_eq!(callback.state, state);
        assert_eq!(callback.code.expose(), code);
        assert_eq!(callback.actor.as_deref(), Some("Ada"));
        for (link, expected) in [
            (
                format!("ember://other?state={state}&code={code}"),
                CallbackError::NotACallback,
            ),
            (
                format!("ember://sign-in-callback?code={code}"),
                CallbackError::Malformed("state"),
            ),
            (
                format!("ember://sign-in-callback?state={state}&code=zz"),
                CallbackError::Malformed("code"),
            ),
            (
                format!("ember://sign-in-callback?state={state}&state={state}&code={code}"),
                CallbackError::Malformed("repeated parameter"),
            ),
        ] {
            let link = url::Url::parse(&link).unwrap();
            assert_eq!(Callback::parse(&link).unwrap_err(), expected, "{link}");
        }
    }
}
