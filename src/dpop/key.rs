//! The DPoP key: a P-256 key pair (or an external [`Signer`]) with its header and thumbprint
//! computed once.

use std::fmt;
use std::sync::Arc;

use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::proof::build_proof;
use crate::error::{Error, Result};
use crate::jose::{b64_decode, header_b64_with_jwk, public_jwk_of, P256Signer, PublicJwk};
use crate::jose::{RingSigner, Signer};
use crate::secret::SecretString;

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
const DPOP_TYP: &str = "dpop+jwt";

/// A DPoP key (RFC 9449): signs proofs with ES256.
///
/// Cheap to clone (shared). The protected header (`typ`, `alg`, `jwk`) and the key's thumbprint
/// (`jkt`, RFC 7638) are computed once when the key is made. By default signing uses ring; a key
/// can also sign with the pure-Rust [`P256Signer`] ([`with_p256_signer`](Self::with_p256_signer))
/// or be held entirely outside the process ([`from_signer`](Self::from_signer)).
///
/// `Debug` prints only the thumbprint and the signing backend.
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    signer: Arc<dyn Signer>,
    /// The private key, when the process holds it (for export). Zeroized on drop by `p256`.
    secret: Option<p256::SecretKey>,
    header_b64: String,
    jkt: String,
    backend: &'static str,
}

/// A private EC JWK as persisted: extra members (`kid`, `use`, `alg`, ...) are ignored.
#[derive(serde::Deserialize, Zeroize, ZeroizeOnDrop)]
struct PrivateEcJwk {
    kty: String,
    crv: String,
    x: Option<String>,
    y: Option<String>,
    d: Option<String>,
}

impl DpopKey {
    /// A fresh P-256 key from the operating system's RNG, signing with ring.
    pub fn generate() -> Self {
        Self::from_secret(p256::SecretKey::random(&mut rand::rngs::OsRng))
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        match RingSigner::from_secret_key(&secret) {
            Ok(signer) => Self::assemble(Arc::new(signer), Some(secret), "ring"),
            // ring accepts every valid P-256 key; should it not, sign in pure Rust.
            Err(_) => Self::assemble(
                Arc::new(P256Signer::from_secret_key(&secret)),
                Some(secret),
                "p256",
            ),
        }
    }

    fn assemble(
        signer: Arc<dyn Signer>,
        secret: Option<p256::SecretKey>,
        backend: &'static str,
    ) -> Self {
        let header_b64 = header_b64_with_jwk(DPOP_TYP, signer.as_ref());
        let jkt = signer.public_jwk().thumbprint();
        DpopKey {
            inner: Arc::new(Inner {
                signer,
                secret,
                header_b64,
                jkt,
                backend,
            }),
        }
    }

    /// Load a P-256 private key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        if pem.contains("BEGIN EC PRIVATE KEY") {
            return Err(Error::Crypto(
                "key is SEC1 (`EC PRIVATE KEY`), not PKCS#8; convert it with \
                 `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            ));
        }
        if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
            return Err(Error::Crypto(
                "encrypted PKCS#8 keys are not supported".into(),
            ));
        }
        let secret = p256::SecretKey::from_pkcs8_pem(pem.trim())
            .map_err(|_| Error::Crypto("not a PKCS#8 PEM P-256 private key".into()))?;
        Ok(Self::from_secret(secret))
    }

    /// Load a P-256 private key from PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|_| Error::Crypto("not a PKCS#8 DER P-256 private key".into()))?;
        Ok(Self::from_secret(secret))
    }

    /// Load a private EC P-256 JWK (`kty` `EC`, `crv` `P-256`, `x`, `y` and `d`).
    ///
    /// The public coordinates `x` and `y`, which RFC 7518 §6.2.2 requires but some tools omit,
    /// are derived from `d` when absent and must match it when present. Other members (`kid`,
    /// `use`, ...) are ignored.
    pub fn from_jwk(jwk_json: &str) -> Result<Self> {
        let jwk: PrivateEcJwk = serde_json::from_str(jwk_json).map_err(|_| {
            Error::Crypto(
                "malformed private JWK (expected string members kty, crv, d, x, y)".into(),
            )
        })?;
        if jwk.kty != "EC" {
            return Err(Error::Crypto("JWK `kty` is not `EC`".into()));
        }
        if jwk.crv != "P-256" {
            return Err(Error::Crypto("JWK `crv` is not `P-256`".into()));
        }
        let d = jwk
            .d
            .as_deref()
            .ok_or_else(|| Error::Crypto("JWK has no private key `d`".into()))?;
        let d = Zeroizing::new(b64_decode(d)?);
        if d.len() != 32 {
            return Err(Error::Crypto("JWK `d` is not 32 bytes".into()));
        }
        let secret = p256::SecretKey::from_slice(&d)
            .map_err(|_| Error::Crypto("JWK `d` is not a valid P-256 scalar".into()))?;
        let coord = |s: &str| -> Result<[u8; 32]> {
            <[u8; 32]>::try_from(b64_decode(s)?.as_slice())
                .map_err(|_| Error::Crypto("JWK coordinate is not 32 bytes".into()))
        };
        match (&jwk.x, &jwk.y) {
            (Some(x), Some(y)) => {
                if PublicJwk::ec_p256(&coord(x)?, &coord(y)?) != public_jwk_of(&secret) {
                    return Err(Error::Crypto(
                        "JWK `x`/`y` do not match its private key `d`".into(),
                    ));
                }
            }
            (None, None) => {}
            _ => return Err(Error::Crypto("JWK has only one of `x` and `y`".into())),
        }
        Ok(Self::from_secret(secret))
    }

    /// Use an external signer (HSM, KMS, platform keystore). It must sign ES256.
    ///
    /// Such a key cannot be exported ([`to_pkcs8_pem`](Self::to_pkcs8_pem) and
    /// [`to_jwk`](Self::to_jwk) fail).
    pub fn from_signer(signer: Arc<dyn Signer>) -> Result<Self> {
        if signer.alg() != "ES256" {
            return Err(Error::config(format!(
                "DPoP signer must use ES256, not `{}`",
                crate::error::sanitize(signer.alg(), 32)
            )));
        }
        signer.public_jwk().verifying_key()?;
        Ok(Self::assemble(signer, None, "external"))
    }

    /// The same key, signing with the pure-Rust [`P256Signer`] instead of ring.
    ///
    /// Proofs are interchangeable; this exists for targets or audits that prefer RustCrypto.
    /// Fails for a key from [`from_signer`](Self::from_signer).
    pub fn with_p256_signer(&self) -> Result<Self> {
        let secret = self.secret()?.clone();
        Ok(Self::assemble(
            Arc::new(P256Signer::from_secret_key(&secret)),
            Some(secret),
            "p256",
        ))
    }

    fn secret(&self) -> Result<&p256::SecretKey> {
        self.inner.secret.as_ref().ok_or_else(|| {
            Error::config("the DPoP key is held by an external signer and cannot be exported")
        })
    }

    /// The private key as PKCS#8 PEM, for persistence.
    pub fn to_pkcs8_pem(&self) -> Result<SecretString> {
        let pem = self
            .secret()?
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|_| Error::Crypto("PKCS#8 encoding failed".into()))?;
        Ok(SecretString::new(pem.as_str()))
    }

    /// The private key as a JWK (`kty`, `crv`, `x`, `y`, `d`), for persistence.
    pub fn to_jwk(&self) -> Result<SecretString> {
        let jwk = self.secret()?.to_jwk_string();
        Ok(SecretString::new(jwk.as_str()))
    }

    /// The public key, as it appears in every proof's header.
    pub fn public_jwk(&self) -> &PublicJwk {
        self.inner.signer.public_jwk()
    }

    /// The key's RFC 7638 thumbprint: the `jkt` of RFC 9449 §6 and §10.
    pub fn thumbprint(&self) -> &str {
        &self.inner.jkt
    }

    /// The signer behind this key.
    pub fn signer(&self) -> &dyn Signer {
        self.inner.signer.as_ref()
    }

    /// A DPoP proof JWT (RFC 9449 §4.2) for one request.
    ///
    /// * `htm` — the HTTP method (`"GET"`, `"POST"`, ...).
    /// * `htu` — the request URL; query, fragment and userinfo are dropped ([`normalize_htu`](crate::dpop::normalize_htu)).
    /// * `iat` — issue time, Unix seconds, in the server's clock where that is known.
    /// * `nonce` — the server's latest `DPoP-Nonce`, if it sent one.
    /// * `ath` — for requests to a resource server, [`ath`](crate::dpop::ath) of the access token.
    ///
    /// Every proof gets a fresh `jti` of 128 random bits. Send it as the `DPoP` header, with
    /// `Authorization: DPoP <token>` for resources; an [`Agent`](crate::Agent) does all of this
    /// itself, this is for requests sent by your own HTTP stack.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an invalid method; signer errors.
    ///
    /// ```
    /// use agent_oauth::dpop::ath;
    /// let key = agent_oauth::DpopKey::generate();
    /// let url = url::Url::parse("https://api.example.com/items?page=2").unwrap();
    /// let iat = std::time::SystemTime::now()
    ///     .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    /// let proof = key.proof("GET", &url, iat, None, Some(&ath("an-access-token"))).unwrap();
    /// assert_eq!(proof.split('.').count(), 3);
    /// ```
    pub fn proof(
        &self,
        htm: &str,
        htu: &url::Url,
        iat: i64,
        nonce: Option<&str>,
        ath: Option<&str>,
    ) -> Result<String> {
        let proof = self.proof_header(htm, htu, iat, nonce, ath)?;
        proof
            .to_str()
            .map(str::to_owned)
            .map_err(|_| Error::Crypto("DPoP proof is not a header value".into()))
    }

    /// [`proof`](Self::proof) as the `DPoP` header's value (its bytes checked once).
    pub(crate) fn proof_header(
        &self,
        htm: &str,
        htu: &url::Url,
        iat: i64,
        nonce: Option<&str>,
        ath: Option<&str>,
    ) -> Result<http::HeaderValue> {
        let proof = build_proof(
            &self.inner.header_b64,
            self.inner.signer.as_ref(),
            htm,
            htu,
            iat,
            nonce,
            ath,
        )?;
        http::HeaderValue::from_maybe_shared(bytes::Bytes::from(proof))
            .map_err(|_| Error::Crypto("DPoP proof is not a header value".into()))
    }

    /// A proof with `iat` from the system clock and `ath` of `access_token` (for resources).
    #[cfg(test)]
    pub(crate) fn proof_for_request(
        &self,
        method: &str,
        url: &url::Url,
        access_token: Option<&crate::token::AccessToken>,
        nonce: Option<&str>,
    ) -> Result<String> {
        let iat = crate::clock::unix_secs(std::time::SystemTime::now());
        let ath = access_token.map(|t| super::proof::ath(t.secret()));
        self.proof(method, url, iat, nonce, ath.as_deref())
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.inner.jkt)
            .field("signer", &self.inner.backend)
            .finish()
    }
}

#[cfg(test)]
mod tests;
