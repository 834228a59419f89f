//! Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0).
//!
//! [`AuthorizationServer`] fetches the metadata of one issuer: first the RFC 8414 §3.1 well-known
//! URI (path inserted after the host), then OpenID discovery (path appended). The document's
//! `issuer` must equal the configured issuer exactly (RFC 8414 §3.3, the mix-up defence). The
//! result is cached for a TTL and fetched at most once at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::transport::{expect_json, HttpTransport, RetryPolicy};

/// RFC 8705 §5 `mtls_endpoint_aliases`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MtlsEndpointAliases {
    /// Token endpoint for mTLS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Revocation endpoint for mTLS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// Introspection endpoint for mTLS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// Device authorization endpoint for mTLS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// Pushed authorization request endpoint for mTLS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// UserInfo endpoint for mTLS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// Other aliases, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Authorization server metadata (RFC 8414 §2, OpenID Connect Discovery §3, RFC 8628 §4,
/// RFC 8705 §3.3/§5, RFC 9449 §5.1, RFC 9126 §5, RFC 9207 §3). Unknown members are kept in
/// [`extra`](ServerMetadata::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)] // each field is the RFC member of the same name
pub struct ServerMetadata {
    pub issuer: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub response_types_supported: Option<Vec<String>>,
    #[serde(default)]
    pub response_modes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    pub service_documentation: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    #[serde(default)]
    pub introspection_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    #[serde(default)]
    pub require_pushed_authorization_requests: Option<bool>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: Option<bool>,
    #[serde(default)]
    pub mtls_endpoint_aliases: Option<MtlsEndpointAliases>,
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub subject_types_supported: Option<Vec<String>>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    pub claims_supported: Option<Vec<String>>,
    #[serde(default)]
    pub authorization_details_types_supported: Option<Vec<String>>,
    /// draft-ietf-oauth-client-id-metadata-document: the server accepts HTTPS URLs as
    /// `client_id`s and fetches their metadata document.
    #[serde(default)]
    pub client_id_metadata_document_supported: Option<bool>,
    /// draft-ietf-oauth-identity-assertion-authz-grant: the authorization grant profiles the
    /// server accepts (`urn:ietf:params:oauth:grant-profile:id-jag` for ID-JAGs).
    #[serde(default)]
    pub authorization_grant_profiles_supported: Option<Vec<String>>,
    /// Other members, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Endpoints that have an mTLS alias (RFC 8705 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `token_endpoint`
    Token,
    /// `revocation_endpoint`
    Revocation,
    /// `introspection_endpoint`
    Introspection,
    /// `device_authorization_endpoint`
    DeviceAuthorization,
    /// `pushed_authorization_request_endpoint`
    PushedAuthorizationRequest,
    /// `userinfo_endpoint`
    Userinfo,
}

impl ServerMetadata {
    /// The URL of `endpoint`; with `mtls`, its `mtls_endpoint_aliases` entry when present
    /// (RFC 8705 §5), else the plain one.
    pub fn endpoint(&self, endpoint: Endpoint, mtls: bool) -> Option<&str> {
        let alias = self.mtls_endpoint_aliases.as_ref().filter(|_| mtls);
        fn pick<'a>(
            plain: &'a Option<String>,
            alias: Option<&'a Option<String>>,
        ) -> Option<&'a str> {
            alias.and_then(|a| a.as_deref()).or(plain.as_deref())
        }
        match endpoint {
            Endpoint::Token => pick(&self.token_endpoint, alias.map(|a| &a.token_endpoint)),
            Endpoint::Revocation => pick(
                &self.revocation_endpoint,
                alias.map(|a| &a.revocation_endpoint),
            ),
            Endpoint::Introspection => pick(
                &self.introspection_endpoint,
                alias.map(|a| &a.introspection_endpoint),
            ),
            Endpoint::DeviceAuthorization => pick(
                &self.device_authorization_endpoint,
                alias.map(|a| &a.device_authorization_endpoint),
            ),
            Endpoint::PushedAuthorizationRequest => pick(
                &self.pushed_authorization_request_endpoint,
                alias.map(|a| &a.pushed_authorization_request_endpoint),
            ),
            Endpoint::Userinfo => {
                pick(&self.userinfo_endpoint, alias.map(|a| &a.userinfo_endpoint))
            }
        }
    }

    /// The URL of `endpoint` for a client that presents a certificate (RFC 8705 §5): its
    /// `mtls_endpoint_aliases` entry, else the advertised endpoint if it is `https` (a server
    /// may accept certificates on its ordinary endpoints).
    ///
    /// # Errors
    /// [`Error::Discovery`] when there is no such endpoint, or when there is no alias and the
    /// advertised endpoint is not `https`, so it could never see the certificate (name the
    /// alias with [`AgentBuilder::patch_metadata`](crate::AgentBuilder::patch_metadata)).
    pub fn mtls_endpoint(&self, endpoint: Endpoint) -> Result<&str> {
        let has_alias = self.mtls_endpoint_aliases.as_ref().is_some_and(|a| {
            match endpoint {
                Endpoint::Token => &a.token_endpoint,
                Endpoint::Revocation => &a.revocation_endpoint,
                Endpoint::Introspection => &a.introspection_endpoint,
                Endpoint::DeviceAuthorization => &a.device_authorization_endpoint,
                Endpoint::PushedAuthorizationRequest => &a.pushed_authorization_request_endpoint,
                Endpoint::Userinfo => &a.userinfo_endpoint,
            }
            .is_some()
        });
        let Some(url) = self.endpoint(endpoint, true) else {
            return Err(Error::Discovery(format!(
                "the server advertises no {endpoint:?} endpoint"
            )));
        };
        if has_alias || url.starts_with("https://") {
            return Ok(url);
        }
        Err(Error::Discovery(format!(
            "no mtls_endpoint_aliases entry for the {endpoint:?} endpoint, and the advertised \
             one ({}) is not https, so it cannot see the client certificate; name the alias \
             with AgentBuilder::patch_metadata",
            Url::parse(url).map_or_else(
                |_| "not a URL".to_owned(),
                |u| u.origin().ascii_serialization()
            )
        )))
    }

    /// Does the server advertise PKCE with `S256` (`code_challenge_methods_supported`)?
    pub fn supports_pkce_s256(&self) -> bool {
        self.code_challenge_methods_supported
            .as_ref()
            .is_some_and(|v| v.iter().any(|m| m == "S256"))
    }

    /// Does the server list `grant` in `grant_types_supported`? Absent, RFC 8414 §2 says
    /// `authorization_code` and `implicit`.
    pub fn supports_grant(&self, grant: &str) -> bool {
        match &self.grant_types_supported {
            Some(v) => v.iter().any(|g| g == grant),
            None => grant == "authorization_code",
        }
    }

    /// Does the server take ID-JAGs as JWT bearer grants? `Some(true)` when it lists the ID-JAG
    /// profile in `authorization_grant_profiles_supported`, `Some(false)` when it lists profiles
    /// without it or does not list the JWT bearer grant in `grant_types_supported`, `None` when
    /// it says nothing either way.
    pub fn supports_id_jag(&self) -> Option<bool> {
        const PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
        const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
        if let Some(p) = &self.authorization_grant_profiles_supported {
            return Some(p.iter().any(|v| v == PROFILE));
        }
        match &self.grant_types_supported {
            Some(g) if !g.iter().any(|v| v == JWT_BEARER) => Some(false),
            _ => None,
        }
    }

    /// Does the server list `alg` in `dpop_signing_alg_values_supported`?
    pub fn supports_dpop_alg(&self, alg: &str) -> bool {
        self.dpop_signing_alg_values_supported
            .as_ref()
            .is_some_and(|v| v.iter().any(|a| a == alg))
    }

    /// Parse and validate a metadata document fetched for `expected_issuer`.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] for malformed JSON or wrong types, [`Error::Discovery`] when
    /// `issuer` differs from `expected_issuer`.
    pub fn from_json(body: &[u8], expected_issuer: &str) -> Result<Self> {
        let md: ServerMetadata = serde_json::from_slice(body).map_err(|e| {
            Error::invalid(format!(
                "server metadata: {}",
                crate::error::sanitize(&e.to_string(), 200)
            ))
        })?;
        md.validate(expected_issuer)?;
        Ok(md)
    }

    fn validate(&self, expected_issuer: &str) -> Result<()> {
        if self.issuer != expected_issuer {
            return Err(Error::Discovery(format!(
                "issuer mismatch: expected `{expected_issuer}`, metadata says `{}`",
                crate::error::sanitize(&self.issuer, 200)
            )));
        }
        Ok(())
    }
}

/// The well-known URLs for `issuer`, in the order the MCP authorization specification gives:
/// RFC 8414 §3.1 (path inserted), then OpenID Discovery with the path inserted and, for an
/// issuer with a path, appended (OpenID Connect Discovery §4).
pub(crate) fn well_known_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let at = |p: String| {
        let mut u = issuer.clone();
        u.set_path(&p);
        u
    };
    let mut urls = vec![
        at(format!("/.well-known/oauth-authorization-server{path}")),
        at(format!("/.well-known/openid-configuration{path}")),
    ];
    if !path.is_empty() {
        urls.push(at(format!("{path}/.well-known/openid-configuration")));
    }
    urls
}

/// Validate an issuer identifier (RFC 8414 §2: https, no query, no fragment).
pub(crate) fn parse_issuer(issuer: &str) -> Result<Url> {
    let url = Url::parse(issuer).map_err(|e| Error::config(format!("issuer is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config("issuer must not have a query or fragment"));
    }
    Ok(url)
}

struct Cached {
    at: Instant,
    metadata: Arc<ServerMetadata>,
}

/// A discovered authorization server: its issuer, metadata cache and transport.
///
/// Cheap to clone. [`metadata`](Self::metadata) serves the cached document until the TTL
/// passes; concurrent callers then share one fetch.
#[derive(Clone)]
pub struct AuthorizationServer {
    inner: Arc<AsInner>,
}

/// A change applied to every discovered metadata document (endpoint overrides).
pub type MetadataPatch = Arc<dyn Fn(&mut ServerMetadata) + Send + Sync>;

struct AsInner {
    issuer: String,
    issuer_url: Url,
    transport: HttpTransport,
    ttl: Duration,
    cache: ArcSwapOption<Cached>,
    fetch: tokio::sync::Mutex<()>,
    patch: Option<MetadataPatch>,
}

impl std::fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("issuer", &self.inner.issuer)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// A handle for `issuer`; nothing is fetched until [`metadata`](Self::metadata).
    ///
    /// # Errors
    /// [`Error::Config`] when `issuer` is not a valid issuer identifier, [`Error::InsecureUrl`]
    /// when it is not HTTPS (loopback excepted).
    pub fn new(issuer: &str, transport: HttpTransport) -> Result<Self> {
        let issuer_url = parse_issuer(issuer)?;
        transport.check(&issuer_url)?;
        Ok(AuthorizationServer {
            inner: Arc::new(AsInner {
                issuer: issuer.to_owned(),
                issuer_url,
                transport,
                ttl: Duration::from_secs(3600),
                cache: ArcSwapOption::empty(),
                fetch: tokio::sync::Mutex::new(()),
                patch: None,
            }),
        })
    }

    /// A handle whose metadata is already known (no discovery request). The document's issuer
    /// must still equal `issuer`.
    ///
    /// # Errors
    /// As [`new`](Self::new), plus [`Error::Discovery`] on an issuer mismatch.
    pub fn from_metadata(metadata: ServerMetadata, transport: HttpTransport) -> Result<Self> {
        let issuer = metadata.issuer.clone();
        let this = Self::new(&issuer, transport)?;
        this.inner.cache.store(Some(Arc::new(Cached {
            at: Instant::now(),
            metadata: Arc::new(metadata),
        })));
        Ok(this)
    }

    /// The authorization server of a resource that publishes no RFC 9728 metadata (MCP
    /// 2025-03-26): the resource's origin. Its metadata is read from the origin's RFC 8414
    /// well-known URL, and its `issuer` must be on that origin (the origin vouches for it, as
    /// nothing else can); without a document, the 2025-03-26 default endpoints `/authorize`,
    /// `/token` and `/register` on the origin are used.
    ///
    /// # Errors
    /// [`Error::Discovery`] for an `issuer` on another origin; transport and parse errors.
    pub(crate) async fn legacy(resource: &Url, transport: HttpTransport) -> Result<Self> {
        let origin = resource.origin().ascii_serialization();
        let mut url = resource.clone();
        url.set_path("/.well-known/oauth-authorization-server");
        url.set_query(None);
        let ctx = crate::error::ErrorContext::new("server metadata request", &url);
        let resp = transport
            .execute(RetryPolicy::Idempotent, || get_json(&url))
            .await
            .map_err(|e| e.with_context(&ctx))?;
        let md = if resp.status().is_success() {
            let body = expect_json(&resp, "server metadata").map_err(|e| e.with_context(&ctx))?;
            let md: ServerMetadata = serde_json::from_slice(body).map_err(|e| {
                Error::invalid(format!(
                    "server metadata: {}",
                    crate::error::sanitize(&e.to_string(), 200)
                ))
            })?;
            let same_origin =
                Url::parse(&md.issuer).is_ok_and(|u| u.origin().ascii_serialization() == origin);
            if !same_origin {
                return Err(Error::Discovery(format!(
                    "metadata at {origin} names issuer `{}` on another origin",
                    crate::error::sanitize(&md.issuer, 200)
                )));
            }
            md
        } else if resp.status() == http::StatusCode::NOT_FOUND {
            tracing::info!(target: "agent_oauth", %origin,
                "no metadata: using the default endpoints of MCP 2025-03-26");
            ServerMetadata {
                issuer: origin.clone(),
                authorization_endpoint: Some(format!("{origin}/authorize")),
                token_endpoint: Some(format!("{origin}/token")),
                registration_endpoint: Some(format!("{origin}/register")),
                code_challenge_methods_supported: Some(vec!["S256".into()]),
                ..ServerMetadata::default()
            }
        } else {
            return Err(Error::Http {
                status: resp.status().as_u16(),
                body: String::new(),
                retry_after: None,
                context: Some(Box::new(ctx)),
            });
        };
        Self::from_metadata(md, transport)
    }

    /// Set how long fetched metadata is used before it is fetched again (default one hour).
    pub fn with_ttl(self, ttl: Duration) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|arc| AsInner {
            issuer: arc.issuer.clone(),
            issuer_url: arc.issuer_url.clone(),
            transport: arc.transport.clone(),
            ttl,
            cache: ArcSwapOption::new(arc.cache.load_full()),
            fetch: tokio::sync::Mutex::new(()),
            patch: arc.patch.clone(),
        });
        AuthorizationServer {
            inner: Arc::new(AsInner { ttl, ..inner }),
        }
    }

    /// Apply `patch` to every document discovered from now on, after its issuer is checked
    /// and before it is used (endpoint overrides, such as a missing `mtls_endpoint_aliases`).
    /// Metadata already held is left as it is.
    pub fn with_metadata_patch(self, patch: MetadataPatch) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|arc| AsInner {
            issuer: arc.issuer.clone(),
            issuer_url: arc.issuer_url.clone(),
            transport: arc.transport.clone(),
            ttl: arc.ttl,
            cache: ArcSwapOption::new(arc.cache.load_full()),
            fetch: tokio::sync::Mutex::new(()),
            patch: None,
        });
        AuthorizationServer {
            inner: Arc::new(AsInner {
                patch: Some(patch),
                ..inner
            }),
        }
    }

    /// The patch applied to discovered metadata, if any.
    #[cfg(feature = "mtls")]
    pub(crate) fn metadata_patch(&self) -> Option<MetadataPatch> {
        self.inner.patch.clone()
    }

    /// The configured issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The transport used for this server.
    pub fn transport(&self) -> &HttpTransport {
        &self.inner.transport
    }

    fn fresh(&self) -> Option<Arc<ServerMetadata>> {
        let cached = self.inner.cache.load();
        cached
            .as_ref()
            .filter(|c| c.at.elapsed() < self.inner.ttl)
            .map(|c| c.metadata.clone())
    }

    /// The server's metadata, from cache or discovered now.
    ///
    /// # Errors
    /// [`Error::Discovery`] when no well-known document exists or its issuer differs; transport
    /// and parse errors as they occur.
    pub async fn metadata(&self) -> Result<Arc<ServerMetadata>> {
        if let Some(md) = self.fresh() {
            return Ok(md);
        }
        let _guard = self.inner.fetch.lock().await;
        if let Some(md) = self.fresh() {
            return Ok(md);
        }
        let md = Arc::new(self.discover().await?);
        self.inner.cache.store(Some(Arc::new(Cached {
            at: Instant::now(),
            metadata: md.clone(),
        })));
        Ok(md)
    }

    /// Forget the cached metadata; the next call fetches it again.
    pub fn invalidate(&self) {
        self.inner.cache.store(None);
    }

    async fn discover(&self) -> Result<ServerMetadata> {
        let urls = well_known_urls(&self.inner.issuer_url);
        let mut last = None;
        for url in urls {
            let ctx = crate::error::ErrorContext::new("server metadata request", &url);
            let resp = self
                .inner
                .transport
                .execute(RetryPolicy::Idempotent, || get_json(&url))
                .await
                .map_err(|e| e.with_context(&ctx))?;
            if resp.status().is_success() {
                let body =
                    expect_json(&resp, "server metadata").map_err(|e| e.with_context(&ctx))?;
                let mut md = ServerMetadata::from_json(body, &self.inner.issuer)?;
                if let Some(patch) = &self.inner.patch {
                    patch(&mut md);
                }
                return Ok(md);
            }
            tracing::debug!(target: "agent_oauth", url = %url, status = resp.status().as_u16(),
                "well-known metadata not found");
            last = Some(resp.status().as_u16());
        }
        Err(Error::Discovery(format!(
            "no metadata for issuer `{}` at RFC 8414 or OpenID well-known URLs (last status {})",
            self.inner.issuer,
            last.unwrap_or(0)
        )))
    }
}

pub(crate) fn get_json(url: &Url) -> Result<crate::transport::HttpRequest> {
    http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|e| Error::config(format!("cannot build request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_well_known_urls_in_mcp_order() {
        let urls = |issuer: &str| -> Vec<String> {
            well_known_urls(&Url::parse(issuer).expect("url"))
                .into_iter()
                .map(String::from)
                .collect()
        };
        assert_eq!(
            urls("https://as.example.com"),
            [
                "https://as.example.com/.well-known/oauth-authorization-server",
                "https://as.example.com/.well-known/openid-configuration",
            ]
        );
        // RFC 8414 §3.1 example first, then OpenID with the path inserted, then appended.
        assert_eq!(
            urls("https://as.example.com/issuer1"),
            [
                "https://as.example.com/.well-known/oauth-authorization-server/issuer1",
                "https://as.example.com/.well-known/openid-configuration/issuer1",
                "https://as.example.com/issuer1/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn discovery_issuer_must_match_exactly() {
        let doc =
            br#"{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/t"}"#;
        assert!(ServerMetadata::from_json(doc, "https://as.example.com").is_ok());
        let err = ServerMetadata::from_json(doc, "https://as.example.com/").expect_err("slash");
        assert!(matches!(err, Error::Discovery(_)));
        let err = ServerMetadata::from_json(doc, "https://evil.example.com").expect_err("mixup");
        assert!(err.to_string().contains("issuer mismatch"));
    }

    #[test]
    fn discovery_metadata_fields_typed_and_extra_kept() {
        // RFC 8414 §3.2 example, plus RFC 8705 and RFC 9449 members and an unknown one.
        let doc = br#"{
          "issuer": "https://server.example.com",
          "authorization_endpoint": "https://server.example.com/authorize",
          "token_endpoint": "https://server.example.com/token",
          "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
          "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
          "userinfo_endpoint": "https://server.example.com/userinfo",
          "jwks_uri": "https://server.example.com/jwks.json",
          "registration_endpoint": "https://server.example.com/register",
          "scopes_supported": ["openid", "profile", "email", "address", "phone", "offline_access"],
          "response_types_supported": ["code", "code token"],
          "service_documentation": "http://server.example.com/service_documentation.html",
          "ui_locales_supported": ["en-US", "en-GB", "en-CA", "fr-FR", "fr-CA"],
          "dpop_signing_alg_values_supported": ["ES256"],
          "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.example.com/token",
                                    "custom_endpoint": "https://mtls.example.com/c"}
        }"#;
        let md = ServerMetadata::from_json(doc, "https://server.example.com").expect("md");
        assert!(md.supports_dpop_alg("ES256"));
        assert!(!md.supports_dpop_alg("RS256"));
        assert!(md.extra.contains_key("ui_locales_supported"));
        assert_eq!(
            md.endpoint(Endpoint::Token, false),
            Some("https://server.example.com/token")
        );
        assert_eq!(
            md.endpoint(Endpoint::Token, true),
            Some("https://mtls.example.com/token")
        );
        assert_eq!(md.endpoint(Endpoint::Revocation, true), None);
        assert_eq!(
            md.endpoint(Endpoint::Userinfo, true),
            Some("https://server.example.com/userinfo")
        );
        let aliases = md.mtls_endpoint_aliases.as_ref().expect("aliases");
        assert!(aliases.extra.contains_key("custom_endpoint"));
    }

    #[test]
    fn discovery_wrong_types_are_typed_errors() {
        for doc in [
            &br#"{"issuer": 5}"#[..],
            br#"{"token_endpoint": "x"}"#,
            br#"{"issuer":"https://a","scopes_supported":"openid"}"#,
            br#"{"issuer":"https://a","require_pushed_authorization_requests":"yes"}"#,
            b"not json",
            b"[]",
        ] {
            let err = ServerMetadata::from_json(doc, "https://a").expect_err("bad");
            assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        }
    }

    #[test]
    fn discovery_issuer_identifier_validated() {
        assert!(parse_issuer("https://a.example/x").is_ok());
        assert!(parse_issuer("https://a.example/?q=1").is_err());
        assert!(parse_issuer("https://a.example/#f").is_err());
        assert!(parse_issuer("not a url").is_err());
    }

    #[test]
    fn hardening_14_mtls_endpoint_needs_an_alias_or_https() {
        let md = |doc: &str| {
            ServerMetadata::from_json(doc.as_bytes(), "https://as.example").expect("metadata")
        };
        let aliased = md(
            r#"{"issuer":"https://as.example","token_endpoint":"http://as.example/t",
            "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.as.example/t"}}"#,
        );
        assert_eq!(
            aliased.mtls_endpoint(Endpoint::Token).expect("endpoint"),
            "https://mtls.as.example/t"
        );
        let https =
            md(r#"{"issuer":"https://as.example","token_endpoint":"https://as.example/t"}"#);
        assert_eq!(
            https.mtls_endpoint(Endpoint::Token).expect("endpoint"),
            "https://as.example/t"
        );
        // No alias for this endpoint (others have one) and a plain http endpoint.
        let http = md(
            r#"{"issuer":"https://as.example","token_endpoint":"http://as.example/t",
            "revocation_endpoint":"http://as.example/r",
            "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.as.example/t"}}"#,
        );
        let err = http.mtls_endpoint(Endpoint::Revocation).expect_err("http");
        assert!(matches!(err, Error::Discovery(_)), "{err:?}");
        assert!(err.to_string().contains("mtls_endpoint_aliases"), "{err}");
        assert!(http.mtls_endpoint(Endpoint::Introspection).is_err());
        // Without mTLS nothing changes.
        assert_eq!(
            http.endpoint(Endpoint::Revocation, false),
            Some("http://as.example/r")
        );
    }
}
