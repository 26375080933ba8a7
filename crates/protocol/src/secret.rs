//! Credentials that cross the wire as plain strings but never print themselves.
//!
//! Each type serialises as the bare string (so the wire format and the golden files stay the
//! same), has a `Debug` that shows only the type name, no `Display`, compares in constant
//! time and wipes its memory on drop. The only way to the text is [`expose`], named so that
//! every use is easy to find in review: a `tracing` field or a `format!` of a message that
//! holds one of these prints `<redacted>`, whatever the log level.
//!
//! [`expose`]: SecretToken::expose

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

macro_rules! secret_string {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(secret: impl Into<String>) -> Self {
                Self(secret.into())
            }

            /// The secret itself, for the one place that has to use it (a header, a key
            /// decoder, a MAC). Never pass it to a log macro.
            #[must_use]
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(secret: String) -> Self {
                Self(secret)
            }
        }

        impl From<&str> for $name {
            fn from(secret: &str) -> Self {
                Self(secret.to_owned())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }
        }

        impl Eq for $name {}

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }
    };
}

secret_string! {
    /// A bearer credential: the client token the portal issues, or a gateway's token.
    #[cfg_attr(feature = "specta", derive(specta::Type))]
    SecretToken
}

secret_string! {
    /// A WireGuard preshared key: standard base64 of 32 random bytes, the same on both ends.
    PresharedKey
}

secret_string! {
    /// An ICE password (`ice-pwd`): whoever knows it can answer the peer's connectivity checks.
    IcePassword
}

secret_string! {
    /// A TURN REST password (`base64(HMAC-SHA1(secret, username))`): whoever knows it can
    /// allocate on the relay until the credential expires.
    RelayPassword
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
    fn no_secret_type_shows_its_value_in_debug_output() {
        let printed = format!(
            "{:?} {:?} {:?} {:#?}",
            PresharedKey::new("psk-hunter2"),
            IcePassword::new("ice-hunter2"),
            RelayPassword::new("turn-hunter2"),
            vec![IcePassword::new("pretty-hunter2")],
        );
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("PresharedKey(<redacted>)"), "{printed}");
    }

    #[test]
    fn serialises_as_a_plain_string_for_the_wire() {
        let token = SecretToken::new("abc");
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"abc\"");
        let back: SecretToken = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back, token);
        let key: PresharedKey = serde_json::from_str("\"a2V5\"").unwrap();
        assert_eq!(key.expose(), "a2V5");
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"a2V5\"");
        assert_ne!(key, PresharedKey::new("a2V6"));
    }
}
