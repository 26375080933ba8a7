//! Where the user's portal token lives between runs: the OS keychain (Secret Service on Linux,
//! Credential Manager on Windows, Keychain on macOS) through `keyring`.
//!
//! Signing in never depends on the keychain working: when it is locked or missing, the token
//! is kept in memory for this run and the user is told once (ARCHITECTURE §4).

use std::sync::Mutex;

use ember_protocol::SecretToken;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const SERVICE: &str = "dev.ember.client";
const ACCOUNT: &str = "portal-token";

/// A token together with the portal that issued it: the token is only ever sent to that portal
/// (ARCHITECTURE §4). Kept in the keychain as JSON; an entry without a portal (an older app) does
/// not decode and the user signs in again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptToken {
    pub portal_url: String,
    pub token: SecretToken,
}

#[derive(Debug, thiserror::Error)]
#[error("the keychain is not available: {0}")]
pub struct StoreError(pub String);

/// A place that keeps one token across runs.
pub trait TokenStore: Send + Sync + std::fmt::Debug + 'static {
    fn load(&self) -> Result<Option<KeptToken>, StoreError>;
    fn save(&self, token: &KeptToken) -> Result<(), StoreError>;
    /// Deleting what is not there is not an error.
    fn delete(&self) -> Result<(), StoreError>;
}

/// The OS keychain.
#[derive(Debug, Default)]
pub struct Keychain;

impl Keychain {
    fn entry(&self) -> Result<keyring::Entry, StoreError> {
        keyring::Entry::new(SERVICE, ACCOUNT).map_err(|e| StoreError(e.to_string()))
    }
}

impl TokenStore for Keychain {
    fn load(&self) -> Result<Option<KeptToken>, StoreError> {
        match self.entry()?.get_password() {
            // The string holds the token: wiped when dropped, whether it decodes or not.
            Ok(json) => Ok(decode(&Zeroizing::new(json))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(StoreError(e.to_string())),
        }
    }

    fn save(&self, token: &KeptToken) -> Result<(), StoreError> {
        let json =
            Zeroizing::new(serde_json::to_string(token).map_err(|e| StoreError(e.to_string()))?);
        self.entry()?
            .set_password(&json)
            .map_err(|e| StoreError(e.to_string()))
    }

    fn delete(&self) -> Result<(), StoreError> {
        match self.entry()?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(StoreError(e.to_string())),
        }
    }
}

/// The kept token in a keychain entry; `None` for an entry this app cannot use.
fn decode(json: &str) -> Option<KeptToken> {
    match serde_json::from_str(json) {
        Ok(kept) => Some(kept),
        Err(_) => {
            tracing::info!("The keychain holds a token without its portal; signing in again");
            None
        }
    }
}

/// Where a token ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    InKeychain,
    /// Only until the app quits. `notice` is set the first time, for the user.
    ThisRunOnly {
        notice: Option<String>,
    },
}

/// The token of the signed-in user, kept in a [`TokenStore`] when it works and in memory
/// otherwise.
#[derive(Debug)]
pub struct TokenVault {
    store: Box<dyn TokenStore>,
    in_memory: Mutex<Option<KeptToken>>,
    told_user: Mutex<bool>,
}

impl TokenVault {
    pub fn new(store: impl TokenStore) -> Self {
        Self {
            store: Box::new(store),
            in_memory: Mutex::new(None),
            told_user: Mutex::new(false),
        }
    }

    pub fn remember(&self, token: KeptToken) -> Kept {
        let result = self.store.save(&token);
        if let Ok(mut memory) = self.in_memory.lock() {
            *memory = Some(token);
        }
        match result {
            Ok(()) => Kept::InKeychain,
            Err(e) => {
                tracing::warn!("Keeping the token for this run only: {e}");
                let mut told = self.told_user.lock().unwrap_or_else(|p| p.into_inner());
                let notice = (!*told).then(|| {
                    "Ember could not use the system keychain, so you will need to sign in again \
                     the next time you start it."
                        .to_owned()
                });
                *told = true;
                Kept::ThisRunOnly { notice }
            }
        }
    }

    /// The token from this run, else from the keychain.
    pub fn recall(&self) -> Option<KeptToken> {
        if let Some(token) = self.in_memory.lock().ok().and_then(|m| m.clone()) {
            return Some(token);
        }
        match self.store.load() {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!("Cannot read the token from the keychain: {e}");
                None
            }
        }
    }

    /// Forgets the token everywhere (sign-out, revoked, expired).
    pub fn forget(&self) {
        if let Ok(mut memory) = self.in_memory.lock() {
            *memory = None;
        }
        if let Err(e) = self.store.delete() {
            tracing::warn!("Cannot delete the token from the keychain: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keychain that is locked: every call fails.
    #[derive(Debug)]
    struct LockedKeychain;

    impl TokenStore for LockedKeychain {
        fn load(&self) -> Result<Option<KeptToken>, StoreError> {
            Err(StoreError("locked".into()))
        }
        fn save(&self, _: &KeptToken) -> Result<(), StoreError> {
            Err(StoreError("locked".into()))
        }
        fn delete(&self) -> Result<(), StoreError> {
            Err(StoreError("locked".into()))
        }
    }

    #[test]
    fn a_locked_keychain_keeps_the_user_signed_in_for_this_run_and_says_so_once() {
        let vault = TokenVault::new(LockedKeychain);
        let first = vault.remember(kept("t1"));
        assert!(matches!(first, Kept::ThisRunOnly { notice: Some(_) }));
        assert_eq!(
            vault.remember(kept("t2")),
            Kept::ThisRunOnly { notice: None }
        );
        assert_eq!(vault.recall(), Some(kept("t2")));
        vault.forget();
        assert_eq!(vault.recall(), None);
    }

    fn kept(token: &str) -> KeptToken {
        KeptToken {
            portal_url: "https://portal.example.com".into(),
            token: SecretToken::new(token),
        }
    }

    #[test]
    fn a_kept_token_names_its_portal_and_an_entry_without_one_is_not_used() {
        let json = serde_json::to_string(&kept("t")).unwrap();
        assert_eq!(
            json,
            r#"{"portal_url":"https://portal.example.com","token":"t"}"#
        );
        assert_eq!(decode(&json), Some(kept("t")));
        // What an app before portal binding kept: a bare token.
        assert_eq!(decode("0123abcd"), None);
    }

    /// Runs against the real Secret Service when one is reachable. `scripts/test.sh` runs it in
    /// a D-Bus session with an unlocked gnome-keyring and sets `EMBER_REQUIRE_KEYCHAIN=1`, so
    /// there it cannot skip.
    #[test]
    fn the_real_keychain_keeps_deletes_and_tolerates_missing_entries() {
        let required = std::env::var_os("EMBER_REQUIRE_KEYCHAIN").is_some();
        let keychain = Keychain;
        if let Err(e) = keychain.delete() {
            assert!(!required, "the keychain should be available here: {e}");
            eprintln!("SKIPPED: no usable keychain in this environment ({e})");
            return;
        }
        let token = kept("a-token-for-the-keychain-test");
        keychain.save(&token).unwrap();
        assert_eq!(keychain.load().unwrap(), Some(token));
        keychain.delete().unwrap();
        assert_eq!(keychain.load().unwrap(), None);
        keychain.delete().unwrap();
    }
}
