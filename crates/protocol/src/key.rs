//! [`WireGuardKey`]: a WireGuard key (public, private or preshared) — 32 bytes, standard base64
//! on the wire. Parsed here, once, with one grammar, by the portal, the client and the gateway.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireGuardKey([u8; 32]);

impl WireGuardKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    pub fn to_base64(self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

/// Only the first bytes of the base64 form: enough to tell keys apart in a log, and nothing
/// of a private or preshared key that matters.
impl fmt::Debug for WireGuardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WireGuardKey({}…)", &self.to_base64()[..4])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a WireGuard key (standard base64 of 32 bytes)")]
pub struct BadKey;

/// Standard base64 of exactly 32 bytes; surrounding spaces allowed.
impl FromStr for WireGuardKey {
    type Err = BadKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| BadKey)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| BadKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_anything_else_is_refused() {
        let key = WireGuardKey::from_bytes([7; 32]);
        assert_eq!(key.to_base64().parse::<WireGuardKey>(), Ok(key));
        assert_eq!(format!(" {} ", key.to_base64()).parse(), Ok(key));
        for bad in ["", "AAAA", "not base64!", &"A".repeat(44)] {
            assert_eq!(bad.parse::<WireGuardKey>(), Err(BadKey), "{bad}");
        }
    }

    #[test]
    fn debug_shows_no_whole_key() {
        let key = WireGuardKey::from_bytes([7; 32]);
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
