//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2, RFC 8705 §2).
//!
//! A [`ClientAuth`] decorates a prepared [`FormRequest`]: a header for `client_secret_basic`,
//! form members for the others. `private_key_jwt` mints a fresh assertion (new `jti`) for every
//! attempt, so a retry never replays a single-use assertion.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use crate::assertion::AssertionSource;
use crate::discovery::ServerMetadata;
use crate::error::{Error, Result};
use crate::secret::SecretString;
use crate::transport::FormRequest;

/// `client_assertion_type` for JWT client assertions (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `client_assertion_type` of a SPIFFE JWT-SVID used as the client assertion
/// (draft-ietf-oauth-spiffe-client-auth).
pub const JWT_SPIFFE_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// How the client proves its identity to the authorization server: one constructor per method
/// (RFC 6749 §2.3, RFC 7523 §2.2, RFC 8705 §2).
#[derive(Clone)]
pub struct ClientAuth(pub(crate) Method);

/// The methods behind [`ClientAuth`].
#[derive(Clone)]
pub(crate) enum Method {
    /// A public client: `client_id` in the body, nothing else (RFC 6749 §2.1).
    None,
    /// A client secret, method picked from the server's `token_endpoint_auth_methods_supported`
    /// (basic preferred, then post).
    Secret(SecretString),
    /// `client_secret_basic` (RFC 6749 §2.3.1).
    SecretBasic(SecretString),
    /// `client_secret_post` (RFC 6749 §2.3.1).
    SecretPost(SecretString),
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9).
    PrivateKeyJwt(AssertionKey),
    /// `tls_client_auth` (RFC 8705 §2.1): PKI certificate; `client_id` in the body.
    TlsClientAuth,
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2); `client_id` in the body.
    SelfSignedTlsClientAuth,
    /// A JWT issued by someone else (a workload identity platform) as `client_assertion`.
    External {
        source: AssertionSource,
        assertion_type: Arc<str>,
    },
    /// Nothing at all: no `client_id`, no credentials (RFC 7523 §3.1 makes client
    /// authentication optional for the JWT bearer grant).
    Omitted,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method_name().unwrap_or("client_secret (auto)"))
    }
}

impl ClientAuth {
    /// A public client.
    pub fn none() -> Self {
        ClientAuth(Method::None)
    }

    /// A client secret; the method is chosen from the server's metadata.
    pub fn client_secret(secret: impl Into<SecretString>) -> Self {
        ClientAuth(Method::Secret(secret.into()))
    }

    /// `client_secret_basic`.
    pub fn client_secret_basic(secret: impl Into<SecretString>) -> Self {
        ClientAuth(Method::SecretBasic(secret.into()))
    }

    /// `client_secret_post`.
    pub fn client_secret_post(secret: impl Into<SecretString>) -> Self {
        ClientAuth(Method::SecretPost(secret.into()))
    }

    /// `private_key_jwt` with `key`.
    pub fn private_key_jwt(key: AssertionKey) -> Self {
        ClientAuth(Method::PrivateKeyJwt(key))
    }

    /// `tls_client_auth` (RFC 8705 §2.1).
    pub fn tls_client_auth() -> Self {
        ClientAuth(Method::TlsClientAuth)
    }

    /// `self_signed_tls_client_auth` (RFC 8705 §2.2).
    pub fn self_signed_tls_client_auth() -> Self {
        ClientAuth(Method::SelfSignedTlsClientAuth)
    }

    /// An externally issued JWT as the client assertion (RFC 7523 §2.2, `client_assertion_type`
    /// [`JWT_BEARER_ASSERTION`]): a workload identity token the authorization server trusts as
    /// the client's credential. The source is read before each request (and renewed before the
    /// assertion expires); `client_id` is sent too.
    pub fn client_assertion(source: AssertionSource) -> Self {
        Self::client_assertion_of_type(source, JWT_BEARER_ASSERTION)
    }

    /// A SPIFFE JWT-SVID as the client assertion (`client_assertion_type`
    /// [`JWT_SPIFFE_ASSERTION`]). The SVID is typically read from the file the SPIFFE helper
    /// rotates ([`AssertionSource::file`]).
    pub fn spiffe_jwt_svid(source: AssertionSource) -> Self {
        Self::client_assertion_of_type(source, JWT_SPIFFE_ASSERTION)
    }

    /// An externally issued assertion with any `client_assertion_type`.
    pub fn client_assertion_of_type(
        source: AssertionSource,
        assertion_type: impl Into<String>,
    ) -> Self {
        ClientAuth(Method::External {
            source,
            assertion_type: assertion_type.into().into(),
        })
    }

    /// No client authentication and no `client_id` at all. Only for grants where the server
    /// identifies the caller from the grant itself: the JWT bearer grant of Workload Identity
    /// Federation, where the workload's assertion is the whole credential (RFC 7523 §3.1).
    pub fn omitted() -> Self {
        ClientAuth(Method::Omitted)
    }

    /// The registered method name (`token_endpoint_auth_method`); `None` for
    /// [`client_secret`](Self::client_secret) until [`resolve`](Self::resolve)d.
    pub fn method_name(&self) -> Option<&'static str> {
        Some(match &self.0 {
            Method::None => "none",
            Method::Secret(_) => return None,
            Method::SecretBasic(_) => "client_secret_basic",
            Method::SecretPost(_) => "client_secret_post",
            Method::PrivateKeyJwt(_) => "private_key_jwt",
            Method::TlsClientAuth => "tls_client_auth",
            Method::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
            Method::External { assertion_type, .. } => {
                if &**assertion_type == JWT_SPIFFE_ASSERTION {
                    "spiffe_jwt"
                } else {
                    "private_key_jwt"
                }
            }
            Method::Omitted => "none",
        })
    }

    /// Obtain what this method sends that must be fetched first (an external assertion), so
    /// that [`apply_prepared`](Self::apply_prepared) stays synchronous.
    pub(crate) async fn prepare(&self) -> Result<Option<SecretString>> {
        match &self.0 {
            Method::External { source, .. } => source.assertion().await.map(Some),
            _ => Ok(None),
        }
    }

    /// The secret this method sends as it is (`client_secret_basic`, `client_secret_post`), so
    /// that a server echoing it can be redacted.
    pub(crate) fn sent_secret(&self) -> Option<&SecretString> {
        match &self.0 {
            Method::SecretBasic(s) | Method::SecretPost(s) => Some(s),
            _ => None,
        }
    }

    /// Does this method send nothing at all ([`omitted`](Self::omitted))?
    pub(crate) fn is_omitted(&self) -> bool {
        matches!(self.0, Method::Omitted)
    }

    /// Does this method authenticate with a TLS client certificate?
    pub fn uses_mtls(&self) -> bool {
        matches!(
            self.0,
            Method::TlsClientAuth | Method::SelfSignedTlsClientAuth
        )
    }

    /// Pick a concrete method for [`client_secret`](Self::client_secret) from the server's
    /// `token_endpoint_auth_methods_supported` (RFC 8414 §2: absent means
    /// `client_secret_basic`). Other variants are returned unchanged.
    ///
    /// # Errors
    /// [`Error::Config`] when the server supports neither secret method.
    pub fn resolve(&self, metadata: &ServerMetadata) -> Result<ClientAuth> {
        let Method::Secret(secret) = &self.0 else {
            return Ok(self.clone());
        };
        let supported = metadata.token_endpoint_auth_methods_supported.as_deref();
        let has = |m: &str| supported.is_none_or(|s| s.iter().any(|x| x == m));
        if has("client_secret_basic") {
            Ok(ClientAuth(Method::SecretBasic(secret.clone())))
        } else if supported.is_some_and(|s| s.iter().any(|x| x == "client_secret_post")) {
            Ok(ClientAuth(Method::SecretPost(secret.clone())))
        } else {
            Err(Error::config(
                "the server supports neither client_secret_basic nor client_secret_post",
            ))
        }
    }

    /// Add this client's credentials to `form`. `audience` is the `aud` of a JWT assertion (the
    /// issuer identifier); `now` its `iat`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when an assertion cannot be signed; [`Error::Config`] for an
    /// unresolved [`client_secret`](Self::client_secret).
    ///
    /// An [external assertion](Self::client_assertion) is the one its source obtained last
    /// ([`Error::Assertion`] when it has none yet or it has expired): the crate's own requests
    /// read the source first.
    pub fn apply(
        &self,
        client_id: &str,
        audience: &str,
        form: &mut FormRequest,
        now: SystemTime,
    ) -> Result<()> {
        let external = match &self.0 {
            Method::External { source, .. } => {
                Some(source.cached().ok_or_else(|| Error::Assertion {
                    origin: source.origin(),
                    reason: "no current assertion (read the source first)".into(),
                })?)
            }
            _ => None,
        };
        self.apply_prepared(client_id, audience, form, now, external.as_ref())
    }

    /// [`apply`](Self::apply) with the external assertion [`prepare`](Self::prepare) obtained.
    pub(crate) fn apply_prepared(
        &self,
        client_id: &str,
        audience: &str,
        form: &mut FormRequest,
        now: SystemTime,
        external: Option<&SecretString>,
    ) -> Result<()> {
        match &self.0 {
            Method::Omitted => {}
            Method::External { assertion_type, .. } => {
                let assertion = external
                    .ok_or_else(|| Error::config("the external client assertion was not read"))?;
                form.param("client_id", client_id);
                form.param("client_assertion_type", &**assertion_type);
                form.param("client_assertion", assertion.expose_secret());
            }
            Method::None | Method::TlsClientAuth | Method::SelfSignedTlsClientAuth => {
                form.param("client_id", client_id);
            }
            Method::Secret(_) => {
                return Err(Error::config("client secret method not resolved"));
            }
            Method::SecretBasic(secret) => {
                let value = basic_auth_header(client_id, secret);
                let value = http::HeaderValue::from_str(value.expose_secret())
                    .map_err(|_| Error::config("client credentials not encodable"))?;
                form.headers
                    .insert(http::header::AUTHORIZATION, sensitive(value));
            }
            Method::SecretPost(secret) => {
                form.param("client_id", client_id);
                form.param("client_secret", secret.expose_secret());
            }
            Method::PrivateKeyJwt(key) => {
                let assertion = key.assertion(client_id, audience, now)?;
                form.param("client_id", client_id);
                form.param("client_assertion_type", JWT_BEARER_ASSERTION);
                form.param("client_assertion", assertion.expose_secret());
            }
        }
        Ok(())
    }
}

fn sensitive(mut v: http::HeaderValue) -> http::HeaderValue {
    v.set_sensitive(true);
    v
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1: both are
/// form-urlencoded before base64).
pub(crate) fn basic_auth_header(client_id: &str, secret: &SecretString) -> SecretString {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = zeroize::Zeroizing::new(format!(
        "{}:{}",
        enc(client_id),
        enc(secret.expose_secret())
    ));
    SecretString::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    ))
}

/// A private key that signs `private_key_jwt` client assertions (RS256, PS256, ES256, EdDSA).
#[derive(Clone)]
pub struct AssertionKey {
    alg: Arc<str>,
    kid: Option<String>,
    lifetime: Duration,
    #[cfg(feature = "josekit")]
    signer: Arc<dyn josekit::jws::JwsSigner>,
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "josekit")]
fn crypto(e: josekit::JoseError) -> Error {
    // josekit's messages describe the failure, not the key material.
    Error::Crypto(crate::error::sanitize(&e.to_string(), 200))
}

impl AssertionKey {
    /// A key from PEM (PKCS#8, or the algorithm's traditional form) for `alg`: one of `ES256`,
    /// `RS256`, `PS256`, `EdDSA`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the PEM does not hold a key of that kind; [`Error::Config`] for an
    /// unsupported algorithm or when the crate was built without the `josekit` feature.
    pub fn from_pem(alg: &str, pem: &str) -> Result<Self> {
        #[cfg(feature = "josekit")]
        {
            use josekit::jws::{EdDSA, ES256, PS256, RS256};
            let signer: Arc<dyn josekit::jws::JwsSigner> = match alg {
                "ES256" => Arc::new(ES256.signer_from_pem(pem).map_err(crypto)?),
                "RS256" => Arc::new(RS256.signer_from_pem(pem).map_err(crypto)?),
                "PS256" => Arc::new(PS256.signer_from_pem(pem).map_err(crypto)?),
                "EdDSA" => Arc::new(EdDSA.signer_from_pem(pem).map_err(crypto)?),
                other => return Err(Error::config(format!("unsupported assertion alg {other}"))),
            };
            Ok(Self::from_signer(alg, signer))
        }
        #[cfg(not(feature = "josekit"))]
        {
            let _ = (alg, pem);
            Err(Error::config("private_key_jwt needs the `josekit` feature"))
        }
    }

    /// A key from a private JWK (JSON). The algorithm is the JWK's `alg`, or follows from
    /// `kty`/`crv` (EC P-256 → ES256, RSA → RS256, OKP Ed25519 → EdDSA). Its `kid` is sent in
    /// the assertion header.
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem).
    pub fn from_jwk(jwk_json: &str) -> Result<Self> {
        #[cfg(feature = "josekit")]
        {
            use josekit::jws::{EdDSA, ES256, PS256, RS256};
            let jwk = josekit::jwk::Jwk::from_bytes(jwk_json.as_bytes()).map_err(crypto)?;
            let alg = match (jwk.algorithm(), jwk.key_type(), jwk.curve()) {
                (Some(a), _, _) => a.to_owned(),
                (None, "EC", Some("P-256")) => "ES256".into(),
                (None, "RSA", _) => "RS256".into(),
                (None, "OKP", Some("Ed25519")) => "EdDSA".into(),
                _ => return Err(Error::config("cannot tell the JWK's algorithm")),
            };
            let signer: Arc<dyn josekit::jws::JwsSigner> = match alg.as_str() {
                "ES256" => Arc::new(ES256.signer_from_jwk(&jwk).map_err(crypto)?),
                "RS256" => Arc::new(RS256.signer_from_jwk(&jwk).map_err(crypto)?),
                "PS256" => Arc::new(PS256.signer_from_jwk(&jwk).map_err(crypto)?),
                "EdDSA" => Arc::new(EdDSA.signer_from_jwk(&jwk).map_err(crypto)?),
                other => return Err(Error::config(format!("unsupported assertion alg {other}"))),
            };
            let key = Self::from_signer(&alg, signer);
            Ok(match jwk.key_id() {
                Some(kid) => key.with_kid(kid),
                None => key,
            })
        }
        #[cfg(not(feature = "josekit"))]
        {
            let _ = jwk_json;
            Err(Error::config("private_key_jwt needs the `josekit` feature"))
        }
    }

    #[cfg(feature = "josekit")]
    fn from_signer(alg: &str, signer: Arc<dyn josekit::jws::JwsSigner>) -> Self {
        AssertionKey {
            alg: alg.into(),
            kid: None,
            lifetime: Duration::from_secs(60),
            signer,
        }
    }

    /// Send `kid` in the assertion header.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Assertion lifetime (`exp - iat`, default 60 s).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The JWS algorithm.
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// Mint one assertion: `iss` = `sub` = client_id, `aud` = audience, fresh `jti`, integer
    /// `iat`, `exp` = `iat` + lifetime (RFC 7523 §3).
    ///
    /// # Errors
    /// [`Error::Crypto`] when signing fails.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<SecretString> {
        #[cfg(feature = "josekit")]
        {
            let iat = crate::clock::unix_secs(now).max(0).unsigned_abs();
            let mut header = josekit::jws::JwsHeader::new();
            header.set_token_type("JWT");
            if let Some(kid) = &self.kid {
                header.set_key_id(kid);
            }
            let mut payload = josekit::jwt::JwtPayload::new();
            payload.set_issuer(client_id);
            payload.set_subject(client_id);
            payload.set_audience(vec![audience]);
            payload.set_jwt_id(crate::secret::random_id());
            // Integer NumericDate (josekit's setters would write floats).
            let claim = |p: &mut josekit::jwt::JwtPayload, name: &str, v: u64| {
                p.set_claim(name, Some(serde_json::Value::from(v)))
                    .map_err(crypto)
            };
            claim(&mut payload, "iat", iat)?;
            claim(
                &mut payload,
                "exp",
                iat.saturating_add(self.lifetime.as_secs()),
            )?;
            let jwt = josekit::jwt::encode_with_signer(&payload, &header, &*self.signer)
                .map_err(crypto)?;
            Ok(SecretString::new(jwt))
        }
        #[cfg(not(feature = "josekit"))]
        {
            let _ = (client_id, audience, now);
            Err(Error::config("private_key_jwt needs the `josekit` feature"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn form() -> FormRequest {
        FormRequest::new(Url::parse("https://as.example/token").expect("url"))
    }

    #[test]
    fn client_auth_basic_encodes_before_base64() {
        // RFC 6749 §2.3.1: id and secret are application/x-www-form-urlencoded first.
        let h = basic_auth_header("my client", &SecretString::new("p@ss:w+rd/é"));
        let b64 = h.expose_secret().strip_prefix("Basic ").expect("basic");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("b64");
        assert_eq!(
            std::str::from_utf8(&raw).expect("utf8"),
            "my+client:p%40ss%3Aw%2Brd%2F%C3%A9"
        );
        let mut f = form();
        ClientAuth::client_secret_basic("s3cret")
            .apply("agent", "https://as.example", &mut f, SystemTime::now())
            .expect("apply");
        assert!(f.params.is_empty());
        let v = f.headers.get(http::header::AUTHORIZATION).expect("auth");
        assert!(v.is_sensitive());
    }

    #[test]
    fn client_auth_post_and_public_and_mtls_put_client_id_in_body() {
        for (auth, secret) in [
            (ClientAuth::client_secret_post("s3cret"), Some("s3cret")),
            (ClientAuth::none(), None),
            (ClientAuth::tls_client_auth(), None),
            (ClientAuth::self_signed_tls_client_auth(), None),
        ] {
            let mut f = form();
            auth.apply("agent", "https://as.example", &mut f, SystemTime::now())
                .expect("apply");
            assert_eq!(f.get("client_id"), Some("agent"));
            assert_eq!(f.get("client_secret"), secret);
            assert!(f.headers.is_empty());
        }
    }

    #[test]
    fn client_auth_secret_resolved_from_metadata() {
        let md = |methods: Option<Vec<&str>>| ServerMetadata {
            issuer: "https://as.example".into(),
            token_endpoint_auth_methods_supported: methods
                .map(|m| m.into_iter().map(str::to_owned).collect()),
            ..Default::default()
        };
        let auth = ClientAuth::client_secret("x");
        assert_eq!(
            auth.resolve(&md(None)).expect("r").method_name(),
            Some("client_secret_basic")
        );
        assert_eq!(
            auth.resolve(&md(Some(vec!["client_secret_post", "private_key_jwt"])))
                .expect("r")
                .method_name(),
            Some("client_secret_post")
        );
        assert!(auth.resolve(&md(Some(vec!["private_key_jwt"]))).is_err());
        assert!(auth
            .apply("a", "b", &mut form(), SystemTime::now())
            .is_err());
    }

    #[test]
    fn client_auth_debug_hides_secret() {
        let dbg = format!("{:?}", ClientAuth::client_secret_post("hunter2"));
        assert!(!dbg.contains("hunter2"));
        assert_eq!(dbg, "client_secret_post");
    }

    #[cfg(feature = "josekit")]
    #[test]
    fn client_auth_private_key_jwt_claims_rfc7523() {
        use josekit::jws::ES256;
        let kp = ES256.generate_key_pair().expect("kp");
        let pem = String::from_utf8(kp.to_pem_private_key()).expect("pem");
        let key = AssertionKey::from_pem("ES256", &pem)
            .expect("key")
            .with_kid("k1");
        let now = SystemTime::now();
        let mut f = form();
        ClientAuth::private_key_jwt(key.clone())
            .apply("agent", "https://as.example", &mut f, now)
            .expect("apply");
        assert_eq!(f.get("client_assertion_type"), Some(JWT_BEARER_ASSERTION));
        let jwt = f.get("client_assertion").expect("assertion").to_owned();
        let verifier = ES256
            .verifier_from_pem(kp.to_pem_public_key())
            .expect("verifier");
        let (payload, header) =
            josekit::jwt::decode_with_verifier(&jwt, &verifier).expect("verify");
        assert_eq!(header.key_id(), Some("k1"));
        assert_eq!(payload.issuer(), Some("agent"));
        assert_eq!(payload.subject(), Some("agent"));
        assert_eq!(payload.audience(), Some(vec!["https://as.example"]));
        let iat = payload.issued_at().expect("iat");
        let exp = payload.expires_at().expect("exp");
        assert_eq!(
            exp.duration_since(iat).expect("order"),
            Duration::from_secs(60)
        );
        let claims = payload.claims_set();
        assert!(claims["iat"].is_u64(), "iat must be an integer");
        // A new assertion (new jti) every time.
        let jti1 = payload.jwt_id().expect("jti").to_owned();
        let second = key
            .assertion("agent", "https://as.example", now)
            .expect("a2");
        let (p2, _) =
            josekit::jwt::decode_with_verifier(second.expose_secret(), &verifier).expect("v2");
        assert_ne!(p2.jwt_id(), Some(jti1.as_str()));
        assert!(jti1.len() >= 22);
    }

    #[cfg(feature = "josekit")]
    #[test]
    fn client_auth_private_key_jwt_algorithms_and_bad_keys() {
        use josekit::jws::{EdDSA, PS256, RS256};
        let rsa = RS256.generate_key_pair(2048).expect("rsa");
        let pem = String::from_utf8(rsa.to_pem_private_key()).expect("pem");
        let k = AssertionKey::from_pem("RS256", &pem).expect("rsa key");
        let jwt = k
            .assertion("c", "https://as", SystemTime::now())
            .expect("sign");
        let v = RS256.verifier_from_pem(rsa.to_pem_public_key()).expect("v");
        josekit::jwt::decode_with_verifier(jwt.expose_secret(), &v).expect("verify");
        let ps = PS256.generate_key_pair(2048).expect("ps");
        let k = AssertionKey::from_pem(
            "PS256",
            &String::from_utf8(ps.to_pem_private_key()).expect("pem"),
        )
        .expect("ps key");
        assert_eq!(k.alg(), "PS256");
        let ed = EdDSA
            .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
            .expect("ed");
        let jwk = ed.to_jwk_private_key();
        let k = AssertionKey::from_jwk(&jwk.to_string()).expect("ed key");
        assert_eq!(k.alg(), "EdDSA");
        k.assertion("c", "https://as", SystemTime::now())
            .expect("sign");
        assert!(AssertionKey::from_pem("ES256", "garbage").is_err());
        assert!(AssertionKey::from_pem("HS256", &pem).is_err());
        assert!(AssertionKey::from_jwk("{}").is_err());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(jwk.parameter("d").and_then(|d| d.as_str()).expect("d")));
    }
}
