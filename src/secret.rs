//! A string that must never leak.
//!
//! [`SecretString`] zeroizes its memory on drop, prints as `[redacted]` in `Debug` and
//! `Display`, has no `PartialEq` (compare with [`SecretString::ct_eq`], constant time) and gives its
//! value out only through [`SecretString::expose_secret`], which is easy to grep for.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string: client secret, access token, refresh token, key material.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(Zeroizing::new(value.into()))
    }

    /// The secret value. Every use is a place where it can leak: keep it to the wire.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &SecretString) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// A short, non-reversible fingerprint for logs and audit events: the first 8 bytes of
    /// SHA-256, base64url. Enough to correlate, useless to an attacker.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.expose_secret())
    }
}

/// 16 random bytes (128 bits), base64url: for `jti`, `state`, nonces.
pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The fingerprint of a secret value (see [`SecretString::fingerprint`]).
pub(crate) fn fingerprint(value: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..8])
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_redacted_in_debug_and_display() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose_secret(), "hunter2");
    }

    #[test]
    fn secret_ct_eq_and_fingerprint() {
        let a = SecretString::new("abc");
        assert!(a.ct_eq(&SecretString::new("abc")));
        assert!(!a.ct_eq(&SecretString::new("abd")));
        assert!(!a.ct_eq(&SecretString::new("abcd")));
        let fp = a.fingerprint();
        assert_eq!(fp.len(), 11);
        assert!(!fp.contains("abc"));
        assert_ne!(fp, SecretString::new("abd").fingerprint());
    }
}
