//! The `ember://` links the portal sends the browser to, parsed once at the edge.
//!
//! The tray app receives them from whatever process the OS started with the link (any local
//! program can open one), so the parser treats every link as hostile: anything but the exact
//! shape below is refused, never guessed at. It lives here rather than in the app so it can be
//! fuzzed without building the GUI.

use std::fmt;

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

/// `ember://sign-in-callback?state=…&fragment=…&actor=…&account=…`: `state` and `fragment`
/// are 64 hex digits each; `actor` and `account` are display names, cut to 128 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct SignInCallback {
    pub state: String,
    pub fragment: String,
    pub actor: Option<String>,
    pub account: Option<String>,
}

/// The most characters of a display name a link may set.
pub const MAX_NAME_CHARS: usize = 128;

impl SignInCallback {
    pub fn parse(link: &url::Url) -> Result<Self, CallbackError> {
        // `ember://sign-in-callback?…`: the host is the action.
        if link.scheme() != "ember" || link.host_str() != Some("sign-in-callback") {
            return Err(CallbackError::NotACallback);
        }
        let mut state = None;
        let mut fragment = None;
        let mut actor = None;
        let mut account = None;
        for (key, value) in link.query_pairs() {
            let slot = match key.as_ref() {
                "state" => &mut state,
                "fragment" => &mut fragment,
                "actor" => &mut actor,
                "account" => &mut account,
                _ => continue,
            };
            // A repeated parameter is a forged or mangled link, not something to guess about.
            if slot.replace(value.into_owned()).is_some() {
                return Err(CallbackError::Malformed("repeated parameter"));
            }
        }
        let is_hex64 = |v: &String| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
        Ok(Self {
            state: state
                .filter(is_hex64)
                .ok_or(CallbackError::Malformed("state"))?,
            fragment: fragment
                .filter(is_hex64)
                .ok_or(CallbackError::Malformed("fragment"))?,
            actor: actor.map(|a| a.chars().take(MAX_NAME_CHARS).collect()),
            account: account.map(|a| a.chars().take(MAX_NAME_CHARS).collect()),
        })
    }
}

/// `state` and `fragment` are half of a sign-in: never printed.
impl fmt::Debug for SignInCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInCallback")
            .field("actor", &self.actor)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
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
    fn a_callback_gives_its_parts_and_debug_hides_the_secret_half() {
        let state = "a".repeat(64);
        let fragment = "b".repeat(64);
        let link = url::Url::parse(&format!(
            "ember://sign-in-callback?state={state}&fragment={fragment}&actor=Ada&account={}",
            "x".repeat(300)
        ))
        .unwrap();
        let callback = SignInCallback::parse(&link).unwrap();
        assert_eq!(callback.state, state);
        assert_eq!(callback.fragment, fragment);
        assert_eq!(callback.actor.as_deref(), Some("Ada"));
        assert_eq!(callback.account.unwrap().chars().count(), MAX_NAME_CHARS);
        let printed = format!("{:?}", SignInCallback::parse(&link).unwrap());
        assert!(
            !printed.contains("aaaa") && !printed.contains("bbbb"),
            "{printed}"
        );
    }

    #[test]
    fn redaction_drops_the_query() {
        let link = url::Url::parse("ember://sign-in-callback?state=s&fragment=secret").unwrap();
        assert_eq!(redact(&link), "ember://sign-in-callback");
    }
}
