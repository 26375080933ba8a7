//! Tokens, passwords, signatures and relay credentials: every secret the portal handles.
//!
//! - Tokens (client and gateway) are 256-bit random values written as 64 lowercase hex
//!   characters. The store only ever sees [`hash_token`] of them.
//! - A client token is never sent in a URL: the sign-in redirect carries a one-time code that
//!   the app's service redeems with a verifier only the app knows ([`crate::redeem`]).
//! - Passwords are hashed with argon2id (default parameters) into PHC strings.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("`{field}` must be 64 lowercase hex characters (32 bytes)")]
    NotHex32 { field: &'static str },
    #[error("cannot hash the password: {0}")]
    PasswordHash(String),
}

/// 32 random bytes as 64 lowercase hex characters.
pub fn random_hex32() -> String {
    hex::encode(random_bytes::<32>())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Standard base64 of 32 random bytes (a WireGuard preshared key).
pub fn random_key_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
}

/// A short random id with a readable prefix: `usr_3f9a0c52d1e94b8a`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random_bytes::<8>()))
}

/// What the store keeps of a token: SHA-256, hex. Tokens are 256-bit random, so a plain
/// hash (no salt, no stretching) cannot be reversed and allows an indexed look-up.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks that `value` is 64 lowercase hex characters and returns the 32 bytes.
pub fn decode_hex32(value: &str, field: &'static str) -> Result<[u8; 32], CryptoError> {
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(CryptoError::NotHex32 { field });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).map_err(|_| CryptoError::NotHex32 { field })?;
    Ok(out)
}

/// HMAC-SHA256 of `message` under `key`, hex.
pub fn sign(key: &[u8], message: &[u8]) -> String {
    let mut mac = hmac_sha256(key);
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a [`sign`] signature.
pub fn verify_signature(key: &[u8], message: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = hmac_sha256(key);
    mac.update(message);
    mac.verify_slice(&signature).is_ok()
}

fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of any length, so this constructor cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| CryptoError::PasswordHash(e.to_string()))
}

/// False for a wrong password and for a stored hash that does not parse.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A password for people to type: 20 characters from an unambiguous alphabet (≈ 100 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    random_bytes::<20>()
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// coturn REST credentials (`use-auth-secret`): username `"<unix expiry>:<id>"`, password
/// `base64(HMAC-SHA1(secret, username))`.
pub fn relay_credentials(secret: &str, id: &str, expires_at: u64) -> (String, String) {
    let username = format!("{expires_at}:{id}");
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_password_is_base64_hmac_sha1_of_the_username() {
        // Reference value computed with: printf '1700000000:dev_1' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let (username, password) = relay_credentials("s3cret", "dev_1", 1_700_000_000);
        assert_eq!(username, "1700000000:dev_1");
        assert_eq!(password, RELAY_REFERENCE);
    }

    const RELAY_REFERENCE: &str = include_str!("../tests/data/relay_reference.txt");

    #[test]
    fn password_verifies_only_with_the_right_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse ", &hash));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn signatures_reject_any_change() {
        let key = random_bytes::<32>();
        let signature = sign(&key, b"payload");
        assert!(verify_signature(&key, b"payload", &signature));
        assert!(!verify_signature(&key, b"payloaD", &signature));
        assert!(!verify_signature(&key, b"payload", "00"));
        assert!(!verify_signature(
            &random_bytes::<32>(),
            b"payload",
            &signature
        ));
    }
}
