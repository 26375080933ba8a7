use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A bearer credential (the client token the portal issues).
///
/// It serialises as a plain string because it has to cross the IPC socket, but `Debug` never
/// shows it, there is no `Display`, and the memory is wiped on drop.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the one place that has to send it (an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

impl PartialEq for SecretToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretToken {}

impl Drop for SecretToken {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_does_not_contain_the_token() {
        let token = SecretToken::new("hunter2-very-secret");
        let printed = format!("{token:?} {:?}", Some(&token));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn serialises_as_a_plain_string_for_the_wire() {
        let token = SecretToken::new("abc");
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"abc\"");
        let back: SecretToken = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back, token);
    }
}
