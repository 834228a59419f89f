//! The signing seam: [`Signer`], with a ring-backed default and a pure-Rust alternative.

use std::fmt;

use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use zeroize::Zeroize as _;

use super::jwk::PublicJwk;
use crate::error::{Error, Result};

/// Something that holds a private key and signs JWS signing inputs with it.
///
/// This is the seam for keys the process must not hold: implement it over an HSM, a cloud KMS or
/// a platform keystore and pass it to [`DpopKey::from_signer`](crate::DpopKey::from_signer).
/// The crate ships [`RingSigner`] (the default) and [`P256Signer`] (pure Rust).
pub trait Signer: fmt::Debug + Send + Sync {
    /// The JWS `alg` this signer produces, e.g. `"ES256"`.
    fn alg(&self) -> &str;

    /// The public half of the key, as it goes into a JWS header.
    fn public_jwk(&self) -> &PublicJwk;

    /// Sign `message` (the JWS signing input, RFC 7515 §5.1) and return the JWS signature bytes:
    /// for ES256 the 64-byte fixed-width `r || s` (RFC 7518 §3.4), not DER.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

/// The public JWK of a P-256 secret key.
pub(crate) fn public_jwk_of(secret: &p256::SecretKey) -> PublicJwk {
    let point = secret.public_key().to_encoded_point(false);
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    // An uncompressed encoding of a valid public key always has both coordinates.
    if let (Some(px), Some(py)) = (point.x(), point.y()) {
        x.copy_from_slice(px);
        y.copy_from_slice(py);
    }
    PublicJwk::ec_p256(&x, &y)
}

/// ES256 signer backed by ring (`ECDSA_P256_SHA256_FIXED_SIGNING`), the crate's default.
///
/// Signatures are randomized (fresh nonce from the operating system for every signature).
pub struct RingSigner {
    key_pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    jwk: PublicJwk,
}

impl RingSigner {
    /// A signer over a fresh key from the operating system's RNG.
    pub fn generate() -> Result<Self> {
        Self::from_secret_key(&p256::SecretKey::random(&mut rand::rngs::OsRng))
    }

    /// A signer over an existing P-256 secret key.
    pub(crate) fn from_secret_key(secret: &p256::SecretKey) -> Result<Self> {
        let public = secret.public_key().to_encoded_point(false);
        let mut scalar = secret.to_bytes();
        let rng = ring::rand::SystemRandom::new();
        let key_pair = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar,
            public.as_bytes(),
            &rng,
        );
        scalar.zeroize();
        let key_pair =
            key_pair.map_err(|e| Error::Crypto(format!("ring rejected the P-256 key: {e}")))?;
        Ok(RingSigner {
            key_pair,
            rng,
            jwk: public_jwk_of(secret),
        })
    }
}

impl fmt::Debug for RingSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingSigner")
            .field("alg", &"ES256")
            .field("jkt", &self.jwk.thumbprint())
            .finish_non_exhaustive()
    }
}

impl Signer for RingSigner {
    fn alg(&self) -> &str {
        "ES256"
    }

    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key_pair
            .sign(&self.rng, message)
            .map_err(|_| Error::Crypto("ring ECDSA signing failed".into()))?;
        Ok(sig.as_ref().to_vec())
    }
}

/// ES256 signer in pure Rust (RustCrypto `p256`), for targets without ring or for comparison.
///
/// Signatures are deterministic (RFC 6979).
pub struct P256Signer {
    key: p256::ecdsa::SigningKey,
    jwk: PublicJwk,
}

impl P256Signer {
    /// A signer over a fresh key from the operating system's RNG.
    pub fn generate() -> Self {
        Self::from_secret_key(&p256::SecretKey::random(&mut rand::rngs::OsRng))
    }

    /// A signer over an existing P-256 secret key.
    pub(crate) fn from_secret_key(secret: &p256::SecretKey) -> Self {
        P256Signer {
            key: p256::ecdsa::SigningKey::from(secret),
            jwk: public_jwk_of(secret),
        }
    }
}

impl fmt::Debug for P256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P256Signer")
            .field("alg", &"ES256")
            .field("jkt", &self.jwk.thumbprint())
            .finish_non_exhaustive()
    }
}

impl Signer for P256Signer {
    fn alg(&self) -> &str {
        "ES256"
    }

    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = self
            .key
            .try_sign(message)
            .map_err(|_| Error::Crypto("p256 ECDSA signing failed".into()))?;
        Ok(sig.to_bytes().to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn jose_signers_produce_verifiable_fixed_width_signatures() {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let ring = RingSigner::from_secret_key(&secret).unwrap();
        let pure = P256Signer::from_secret_key(&secret);
        assert_eq!(ring.public_jwk(), pure.public_jwk());
        let vk = ring.public_jwk().verifying_key().unwrap();
        assert_eq!(vk, p256::ecdsa::VerifyingKey::from(secret.public_key()));
        for signer in [&ring as &dyn Signer, &pure] {
            assert_eq!(signer.alg(), "ES256");
            let sig = signer.sign(b"hello").unwrap();
            assert_eq!(sig.len(), 64);
            let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            vk.verify(b"hello", &sig).unwrap();
            assert!(vk.verify(b"hellp", &sig).is_err());
        }
    }

    #[test]
    fn jose_signer_debug_has_no_secret() {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let d = crate::jose::jwk::b64(&secret.to_bytes());
        let ring = format!("{:?}", RingSigner::from_secret_key(&secret).unwrap());
        let pure = format!("{:?}", P256Signer::from_secret_key(&secret));
        for s in [ring, pure] {
            assert!(!s.contains(&d), "{s}");
            assert!(s.contains("jkt"), "{s}");
        }
    }
}
