//! The first half of the browser sign-in (ARCHITECTURE §4): fresh `state` and `nonce`, the
//! portal URL to open, and the check a returning deep link must pass.

use std::time::{Duration, Instant};

use rand::RngCore as _;

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
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A deep link for the log: scheme, host and path, never the query (it carries secrets).
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

    #[test]
    fn redaction_drops_the_query() {
        let link = url::Url::parse("ember://sign-in-callback?state=s&fragment=secret").unwrap();
        assert_eq!(redact(&link), "ember://sign-in-callback");
    }
}
