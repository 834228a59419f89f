//! Mutual TLS (RFC 8705): client identities, extra trust roots, certificate-bound tokens.
//!
//! A [`ClientIdentity`] is a certificate chain and its private key. Build an
//! [`HttpTransport`](crate::HttpTransport) that presents it with
//! [`HttpTransport::with_identity`](crate::HttpTransport::with_identity) or
//! [`HttpTransport::with_tls`](crate::HttpTransport::with_tls) (which also takes extra
//! [`TrustRoots`] for a private PKI), and authenticate with
//! [`ClientAuth::tls_client_auth`](crate::ClientAuth::tls_client_auth) (RFC 8705 §2.1, a PKI
//! certificate matched by subject) or
//! [`ClientAuth::self_signed_tls_client_auth`](crate::ClientAuth::self_signed_tls_client_auth)
//! (RFC 8705 §2.2, a certificate registered in the client's JWK set, see
//! [`ClientIdentity::self_signed`] and [`ClientIdentity::public_jwk`]).
//!
//! Server certificate verification is always on: extra roots are added to the built-in ones
//! (or replace them, see [`TrustRoots::without_builtin`]), never disable the check.
//!
//! # Certificate-bound tokens and rotation
//!
//! Tokens issued over mTLS are bound to the certificate (RFC 8705 §3): their `cnf.x5t#S256`
//! is [`ClientIdentity::thumbprint`], and a resource accepts them only over a connection that
//! presents the same certificate. A transport's identity is fixed when it is built; to rotate
//! the certificate, build a new transport (a new connection pool) and drop every token bound to
//! the old identity (key token caches by thumbprint so that this is a lookup). Sending an old
//! token over the new certificate fails with `invalid_token`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls::pki_types::pem::{PemObject as _, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::token::TokenSet;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The encoding of a [`ClientIdentity`]'s private key, as told by its PEM label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormat {
    /// `PRIVATE KEY`: PKCS#8 (RFC 5958), any algorithm.
    Pkcs8,
    /// `EC PRIVATE KEY`: SEC1 (RFC 5915).
    Sec1,
    /// `RSA PRIVATE KEY`: PKCS#1 (RFC 8017).
    Pkcs1,
}

impl KeyFormat {
    fn label(self) -> &'static str {
        match self {
            KeyFormat::Pkcs8 => "PRIVATE KEY",
            KeyFormat::Sec1 => "EC PRIVATE KEY",
            KeyFormat::Pkcs1 => "RSA PRIVATE KEY",
        }
    }
}

/// A TLS client certificate chain and its private key (RFC 8705).
///
/// The private key is kept in memory that is zeroized on drop, and never printed: `Debug` shows
/// the certificate thumbprint only. Cheap to clone (`Arc` inside).
#[derive(Clone)]
pub struct ClientIdentity {
    inner: Arc<IdentityInner>,
}

struct IdentityInner {
    /// Leaf first.
    chain: Vec<CertificateDer<'static>>,
    key: Zeroizing<Vec<u8>>,
    format: KeyFormat,
    thumbprint: String,
    spki: Option<Vec<u8>>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("x5t#S256", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

fn crypto(msg: impl Into<String>) -> Error {
    Error::Crypto(msg.into())
}

impl ClientIdentity {
    /// An identity from a PEM certificate chain (leaf first, then intermediates) and a PEM
    /// private key: `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` (SEC1) or `RSA PRIVATE KEY`
    /// (PKCS#1). The key must be the leaf certificate's.
    ///
    /// # Errors
    /// [`Error::Crypto`] when there is no certificate, not exactly one unencrypted private key,
    /// the key cannot be used for TLS, or it does not match the leaf certificate.
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str) -> Result<Self> {
        let (chain, no_keys) = parse_pem(cert_chain_pem.as_bytes())?;
        if !no_keys.is_empty() {
            return Err(crypto(
                "the certificate chain PEM holds a private key; pass it as the key",
            ));
        }
        let (no_certs, mut keys) = parse_pem(key_pem.as_bytes())?;
        if !no_certs.is_empty() {
            return Err(crypto("the private key PEM holds certificates"));
        }
        Self::assemble(chain, keys.pop().filter(|_| keys.is_empty()), key_pem)
    }

    /// An identity from one PEM bundle holding the certificate chain (leaf first) and the
    /// private key, in any order, as [`from_pem`](Self::from_pem) accepts them.
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem).
    pub fn from_pem_bundle(pem: &str) -> Result<Self> {
        let (chain, mut keys) = parse_pem(pem.as_bytes())?;
        Self::assemble(chain, keys.pop().filter(|_| keys.is_empty()), pem)
    }

    /// A fresh self-signed certificate for `self_signed_tls_client_auth` (RFC 8705 §2.2): a new
    /// P-256 key, subject `CN=<subject_cn>`, extended key usage `clientAuth`, valid from an hour
    /// ago for one year. Register [`public_jwk`](Self::public_jwk) (which carries the
    /// certificate in `x5c`) in the client's `jwks`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when generation fails.
    pub fn self_signed(subject_cn: &str) -> Result<Self> {
        Self::self_signed_with_validity(subject_cn, Duration::from_secs(365 * 24 * 3600))
    }

    /// As [`self_signed`](Self::self_signed), valid from an hour ago until `validity` from now.
    ///
    /// # Errors
    /// [`Error::Crypto`] when generation fails.
    pub fn self_signed_with_validity(subject_cn: &str, validity: Duration) -> Result<Self> {
        let rc = |e: rcgen::Error| crypto(format!("cannot generate certificate: {e}"));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rc)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, subject_cn);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + validity.min(Duration::from_secs(100 * 365 * 24 * 3600));
        let cert = params.self_signed(&key).map_err(rc)?;
        let key_der = Zeroizing::new(key.serialize_der());
        Self::assemble(
            vec![cert.der().clone()],
            Some((KeyFormat::Pkcs8, key_der)),
            "",
        )
    }

    fn assemble(
        chain: Vec<CertificateDer<'static>>,
        key: Option<(KeyFormat, Zeroizing<Vec<u8>>)>,
        pem: &str,
    ) -> Result<Self> {
        let Some(leaf) = chain.first() else {
            return Err(crypto("no CERTIFICATE in the PEM"));
        };
        let Some((format, key)) = key else {
            return Err(if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                crypto("encrypted private keys are not supported; decrypt the key first")
            } else {
                crypto(
                    "expected exactly one PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY in the PEM",
                )
            });
        };
        let thumbprint = B64URL.encode(sha2::Sha256::digest(leaf.as_ref()));
        // Load the key as the TLS stack will, and check it belongs to the leaf certificate.
        let signing =
            rustls::crypto::ring::sign::any_supported_type(&private_key_der(format, &key))
                .map_err(|_| crypto("the private key is malformed or of an unsupported type"))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), Arc::clone(&signing));
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(crypto(
                    "the private key does not match the leaf certificate",
                ))
            }
            Err(_) => return Err(crypto("the leaf certificate is malformed")),
        }
        let spki = signing.public_key().map(|s| s.as_ref().to_vec());
        Ok(ClientIdentity {
            inner: Arc::new(IdentityInner {
                chain,
                key,
                format,
                thumbprint,
                spki,
            }),
        })
    }

    /// The certificate thumbprint `x5t#S256`: base64url (no padding) of the SHA-256 of the leaf
    /// certificate's DER (RFC 8705 §3.1). Tokens bound to this identity carry it in
    /// `cnf.x5t#S256`; use it to key cached tokens so that a new identity never reuses them.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// How the private key was encoded.
    pub fn key_format(&self) -> KeyFormat {
        self.inner.format
    }

    /// The certificate chain, leaf first, as DER.
    pub fn certificate_chain_der(&self) -> impl Iterator<Item = &[u8]> {
        self.inner.chain.iter().map(|c| c.as_ref())
    }

    /// The leaf certificate as PEM (for registration: `tls_client_auth` subject, or
    /// out-of-band trust of a self-signed certificate).
    pub fn certificate_pem(&self) -> String {
        pem_encode("CERTIFICATE", self.inner.chain[0].as_ref())
    }

    /// The public key of a P-256 identity as a JWK with the certificate chain in `x5c` and
    /// `x5t#S256`: what the client registers in `jwks` for `self_signed_tls_client_auth`
    /// (RFC 8705 §2.2).
    ///
    /// # Errors
    /// [`Error::Config`] when the key is not a P-256 key.
    pub fn public_jwk(&self) -> Result<serde_json::Value> {
        use p256::pkcs8::DecodePublicKey as _;
        let key = self
            .inner
            .spki
            .as_deref()
            .and_then(|spki| p256::PublicKey::from_public_key_der(spki).ok())
            .ok_or_else(|| Error::config("public_jwk supports P-256 identities only"))?;
        let mut jwk = serde_json::to_value(key.to_jwk())
            .map_err(|e| crypto(format!("cannot encode JWK: {e}")))?;
        jwk["x5c"] = self
            .inner
            .chain
            .iter()
            .map(|c| serde_json::Value::from(B64.encode(c.as_ref())))
            .collect();
        jwk["x5t#S256"] = self.inner.thumbprint.clone().into();
        Ok(jwk)
    }

    /// The identity for reqwest (PEM with the chain and the key; the buffer is zeroized).
    pub(crate) fn to_reqwest_identity(&self) -> Result<reqwest::Identity> {
        let mut pem = Zeroizing::new(String::new());
        for cert in &self.inner.chain {
            pem.push_str(&pem_encode("CERTIFICATE", cert.as_ref()));
        }
        let key = Zeroizing::new(pem_encode(self.inner.format.label(), &self.inner.key));
        pem.push_str(&key);
        reqwest::Identity::from_pem(pem.as_bytes())
            .map_err(|_| crypto("the TLS stack refused the client identity"))
    }
}

/// Extra trust anchors for server certificates, for authorization servers and resources behind
/// a private PKI. They are added to the built-in (webpki) roots unless
/// [`without_builtin`](Self::without_builtin) is used. Verification itself is never disabled.
#[derive(Clone)]
pub struct TrustRoots {
    certs: Vec<CertificateDer<'static>>,
    builtin: bool,
}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoots")
            .field("extra", &self.certs.len())
            .field("builtin", &self.builtin)
            .finish()
    }
}

impl Default for TrustRoots {
    fn default() -> Self {
        Self::new()
    }
}

impl TrustRoots {
    /// The built-in roots only.
    pub fn new() -> Self {
        TrustRoots {
            certs: Vec::new(),
            builtin: true,
        }
    }

    /// The built-in roots plus every certificate in `pem`.
    ///
    /// # Errors
    /// As [`add_pem`](Self::add_pem).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let mut roots = Self::new();
        roots.add_pem(pem)?;
        Ok(roots)
    }

    /// Trust every certificate in `pem` as a root.
    ///
    /// # Errors
    /// [`Error::Crypto`] when `pem` holds no certificate or is malformed.
    pub fn add_pem(&mut self, pem: &str) -> Result<&mut Self> {
        let (certs, _) = parse_pem(pem.as_bytes())?;
        if certs.is_empty() {
            return Err(crypto("no CERTIFICATE in the trust root PEM"));
        }
        self.certs.extend(certs);
        Ok(self)
    }

    /// Trust the added roots only, not the built-in ones (a fully private PKI).
    pub fn without_builtin(mut self) -> Self {
        self.builtin = false;
        self
    }

    /// Number of extra roots.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// No extra roots?
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The extra roots for reqwest, and whether the built-in roots stay.
    pub(crate) fn to_reqwest(&self) -> Result<(Vec<reqwest::Certificate>, bool)> {
        let certs = self
            .certs
            .iter()
            .map(|c| {
                reqwest::Certificate::from_der(c.as_ref())
                    .map_err(|_| crypto("the TLS stack refused a trust root"))
            })
            .collect::<Result<_>>()?;
        Ok((certs, self.builtin))
    }
}

/// The `cnf.x5t#S256` of a JWT access token (RFC 8705 §3.1): the thumbprint of the certificate
/// the token is bound to. `None` for opaque tokens and tokens without that confirmation.
///
/// The token is decoded **without verifying its signature**: the value is for the client's own
/// bookkeeping (checking that the server bound the token to the expected certificate), never for
/// an authorization decision.
pub fn cnf_x5t_s256(token: &TokenSet) -> Option<String> {
    token.unverified_cnf()?.x5t_s256
}

type KeyItem = (KeyFormat, Zeroizing<Vec<u8>>);

/// Certificates and private keys of a PEM text, by label. Other sections are ignored.
fn parse_pem(pem: &[u8]) -> Result<(Vec<CertificateDer<'static>>, Vec<KeyItem>)> {
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = item.map_err(|_| crypto("malformed PEM"))?;
        let der = Zeroizing::new(der);
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der.to_vec())),
            SectionKind::PrivateKey => keys.push((KeyFormat::Pkcs8, der)),
            SectionKind::EcPrivateKey => keys.push((KeyFormat::Sec1, der)),
            SectionKind::RsaPrivateKey => keys.push((KeyFormat::Pkcs1, der)),
            _ => {}
        }
    }
    Ok((certs, keys))
}

/// A borrowed rustls view of the key (the borrow keeps the only copy in zeroized memory).
fn private_key_der(format: KeyFormat, der: &[u8]) -> PrivateKeyDer<'_> {
    match format {
        KeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        KeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        KeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = Zeroizing::new(B64.encode(der));
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}
