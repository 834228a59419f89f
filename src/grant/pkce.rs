//! Proof Key for Code Exchange (RFC 7636), S256 only.

use std::fmt;

use base64::Engine as _;
use rand::RngCore as _;
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::secret::SecretString;

/// A PKCE `code_verifier` (RFC 7636 §4.1): 43–128 unreserved characters. Redacted when printed.
#[derive(Clone)]
pub struct PkceVerifier(SecretString);

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

impl PkceVerifier {
    /// 32 random bytes, base64url: 43 characters (RFC 7636 §4.1 recommendation).
    pub fn generate() -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(bytes.as_mut());
        PkceVerifier(SecretString::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
        ))
    }

    /// A given verifier, checked against RFC 7636 §4.1.
    ///
    /// # Errors
    /// [`Error::Config`] when it is not 43–128 characters of `[A-Za-z0-9-._~]`.
    pub fn new(verifier: impl Into<String>) -> Result<Self> {
        let v: String = verifier.into();
        let ok_len = (43..=128).contains(&v.len());
        let ok_chars = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if ok_len && ok_chars {
            Ok(PkceVerifier(SecretString::new(v)))
        } else {
            Err(Error::config(
                "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]",
            ))
        }
    }

    /// The verifier, for the token request.
    pub fn secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// `code_challenge` = BASE64URL(SHA256(verifier)) (RFC 7636 §4.2, method `S256`).
    pub fn challenge(&self) -> String {
        let digest = sha2::Sha256::digest(self.secret().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b_vector() {
        let v = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").expect("valid");
        assert_eq!(v.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn pkce_generated_verifiers_are_valid_and_unique() {
        let a = PkceVerifier::generate();
        let b = PkceVerifier::generate();
        assert_eq!(a.secret().len(), 43);
        assert!(PkceVerifier::new(a.secret()).is_ok());
        assert_ne!(a.secret(), b.secret());
        assert!(!format!("{a:?}").contains(a.secret()));
    }

    #[test]
    fn pkce_invalid_verifiers_refused() {
        assert!(PkceVerifier::new("short").is_err());
        assert!(PkceVerifier::new("a".repeat(129)).is_err());
        assert!(PkceVerifier::new(format!("{}!", "a".repeat(43))).is_err());
        assert!(PkceVerifier::new("a".repeat(128)).is_ok());
    }
}
