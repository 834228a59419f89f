//! Protected resource metadata (RFC 9728).
//!
//! A resource names the authorization servers that issue its tokens. The document lives at the
//! well-known URI with the resource's path inserted (§3.1), or wherever a 401's
//! `WWW-Authenticate: … resource_metadata="…"` points (§5.1). Its `resource` must match the
//! resource it was fetched for (§3.3), and a metadata URL on another origin than the resource
//! is refused unless the caller's [`MetadataPolicy`] allows it (an SSRF defence).

use serde::{Deserialize, Serialize};
use url::Url;

use crate::challenge::Challenge;
use crate::error::{sanitize, Error, Result};
use crate::transport::{expect_json, HttpTransport, RetryPolicy};

/// Protected resource metadata (RFC 9728 §2). Unknown members are kept in
/// [`extra`](ResourceMetadata::extra).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)] // each field is the RFC member of the same name
pub struct ResourceMetadata {
    pub resource: String,
    #[serde(default)]
    pub authorization_servers: Option<Vec<String>>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub bearer_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub resource_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_documentation: Option<String>,
    #[serde(default)]
    pub resource_policy_uri: Option<String>,
    #[serde(default)]
    pub resource_tos_uri: Option<String>,
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: Option<bool>,
    #[serde(default)]
    pub authorization_details_types_supported: Option<Vec<String>>,
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    pub dpop_bound_access_tokens_required: Option<bool>,
    /// Other members, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ResourceMetadata {
    /// Parse a document and check that its `resource` covers `requested` (see
    /// [`resource_matches`]).
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] for malformed JSON or wrong types; [`Error::Discovery`] when the
    /// document is for another resource.
    pub fn from_json(body: &[u8], requested: &Url) -> Result<Self> {
        let md: ResourceMetadata = serde_json::from_slice(body).map_err(|e| {
            Error::invalid(format!(
                "resource metadata: {}",
                sanitize(&e.to_string(), 200)
            ))
        })?;
        let resource = Url::parse(&md.resource).map_err(|_| {
            Error::Discovery(format!(
                "resource metadata `resource` is not a URL: `{}`",
                sanitize(&md.resource, 200)
            ))
        })?;
        if !resource_matches(&resource, requested) {
            return Err(Error::Discovery(format!(
                "resource metadata is for `{}`, not for `{}`",
                sanitize(&md.resource, 200),
                requested.origin().ascii_serialization()
            )));
        }
        Ok(md)
    }

    /// The listed authorization servers (empty when none).
    pub fn authorization_servers(&self) -> &[String] {
        self.authorization_servers.as_deref().unwrap_or(&[])
    }
}

/// Does metadata for `resource` apply to a request to `requested`?
///
/// RFC 9728 §3.3 asks for the identical URL. APIs serve many paths under one resource, so
/// this also accepts a `resource` on the same origin whose path is a segment-wise prefix of the
/// requested path (`https://api.example/v1` covers `https://api.example/v1/invoices/42`, not
/// `https://api.example/v10`). Query and fragment of `requested` are ignored.
pub fn resource_matches(resource: &Url, requested: &Url) -> bool {
    // The origin compared part by part: `Url::origin` allocates.
    let same_origin = resource.scheme() == requested.scheme()
        && resource.host() == requested.host()
        && resource.port_or_known_default() == requested.port_or_known_default();
    if !same_origin || resource.query().is_some() {
        return false;
    }
    let r = resource.path().trim_end_matches('/');
    let p = requested.path();
    r.is_empty()
        || p == r
        || p.trim_end_matches('/') == r
        || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/'))
}

/// The RFC 9728 §3.1 well-known URL for `resource`: `/.well-known/oauth-protected-resource`
/// inserted between host and path (query kept, trailing slash of the path dropped).
pub fn resource_metadata_url(resource: &Url) -> Url {
    let mut url = resource.clone();
    let path = resource.path().trim_end_matches('/');
    url.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
    url.set_fragment(None);
    url
}

/// Which `resource_metadata` URLs from a challenge the agent may fetch.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum MetadataPolicy {
    /// Only URLs on the same origin as the resource (default).
    #[default]
    SameOrigin,
    /// Same origin, or one of these origins (e.g. `https://auth.example.com`).
    AllowOrigins(Vec<String>),
}

impl MetadataPolicy {
    /// Check a `resource_metadata` URL announced by `resource`.
    ///
    /// # Errors
    /// [`Error::Discovery`] when the URL is on an origin the policy does not allow, or is not a
    /// URL.
    pub fn check(&self, metadata_url: &str, resource: &Url) -> Result<Url> {
        let url = Url::parse(metadata_url).map_err(|_| {
            Error::Discovery(format!(
                "resource_metadata is not an absolute URL: `{}`",
                sanitize(metadata_url, 200)
            ))
        })?;
        if url.origin() == resource.origin() {
            return Ok(url);
        }
        let origin = url.origin().ascii_serialization();
        match self {
            MetadataPolicy::AllowOrigins(list)
                if list.iter().any(|o| o.trim_end_matches('/') == origin) =>
            {
                Ok(url)
            }
            _ => Err(Error::Discovery(format!(
                "resource_metadata on another origin ({origin}) than the resource ({}) is refused",
                resource.origin().ascii_serialization()
            ))),
        }
    }
}

/// The `resource_metadata` URL of the first challenge that has one (RFC 9728 §5.1).
pub fn resource_metadata_from_challenges(challenges: &[Challenge]) -> Option<&str> {
    challenges.iter().find_map(Challenge::resource_metadata)
}

/// Fetch and validate the metadata for a request to `requested`, from `metadata_url` or, when
/// `None`, the well-known URL derived from `requested`.
///
/// # Errors
/// Transport errors, [`Error::InvalidResponse`] for a malformed document, [`Error::Discovery`] when
/// it is missing (404) or for another resource, [`Error::Http`] (status only) for any other
/// status. An agent following a 401 wraps each of these in [`Error::ResourceDiscovery`].
pub async fn fetch_resource_metadata(
    transport: &HttpTransport,
    requested: &Url,
    metadata_url: Option<&Url>,
) -> Result<ResourceMetadata> {
    let url = metadata_url
        .cloned()
        .unwrap_or_else(|| resource_metadata_url(requested));
    fetch_at(transport, requested, &url).await?.ok_or_else(|| {
        Error::Discovery(format!(
            "no protected resource metadata at {}",
            url.origin().ascii_serialization()
        ))
    })
}

/// Find the metadata for a request to `requested` the way the MCP authorization specification
/// orders it: the challenge's `resource_metadata` when there is one (a 404 there is an error),
/// else the well-known URL with the path inserted, then the root well-known URL.
///
/// `Ok(None)` when neither well-known URL has a document (404): the resource predates RFC 9728
/// (MCP 2025-03-26), and its origin is its authorization server.
///
/// # Errors
/// As [`fetch_resource_metadata`], except that a missing well-known document is `Ok(None)`.
pub async fn discover_resource_metadata(
    transport: &HttpTransport,
    requested: &Url,
    challenge_url: Option<&Url>,
) -> Result<Option<ResourceMetadata>> {
    if let Some(url) = challenge_url {
        return fetch_resource_metadata(transport, requested, Some(url))
            .await
            .map(Some);
    }
    let path_inserted = resource_metadata_url(requested);
    if let Some(md) = fetch_at(transport, requested, &path_inserted).await? {
        return Ok(Some(md));
    }
    let mut root = requested.clone();
    root.set_path("/.well-known/oauth-protected-resource");
    root.set_query(None);
    root.set_fragment(None);
    if root == path_inserted {
        return Ok(None);
    }
    fetch_at(transport, requested, &root).await
}

/// The document at `url` for `requested`; `None` on 404.
async fn fetch_at(
    transport: &HttpTransport,
    requested: &Url,
    url: &Url,
) -> Result<Option<ResourceMetadata>> {
    let ctx = crate::error::ErrorContext::new("resource metadata request", url);
    let resp = transport
        .execute(RetryPolicy::Idempotent, || {
            super::server_metadata::get_json(url)
        })
        .await
        .map_err(|e| e.with_context(&ctx))?;
    if resp.status() == http::StatusCode::NOT_FOUND {
        tracing::debug!(target: "agent_oauth", url = %url, "no protected resource metadata");
        return Ok(None);
    }
    if !resp.status().is_success() {
        // Any other status (403, 500, a redirect): the status is kept (a 5xx is retryable),
        // the body (often an HTML page) says nothing about the metadata and is dropped.
        return Err(Error::Http {
            status: resp.status().as_u16(),
            body: String::new(),
            retry_after: None,
            context: Some(Box::new(ctx)),
        });
    }
    let body = expect_json(&resp, "resource metadata").map_err(|e| e.with_context(&ctx))?;
    ResourceMetadata::from_json(body, requested).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn resource_metadata_well_known_insertion() {
        assert_eq!(
            resource_metadata_url(&url("https://resource.example.com")).as_str(),
            "https://resource.example.com/.well-known/oauth-protected-resource"
        );
        // RFC 9728 §3.1 example
        assert_eq!(
            resource_metadata_url(&url("https://resource.example.com/resource1")).as_str(),
            "https://resource.example.com/.well-known/oauth-protected-resource/resource1"
        );
        assert_eq!(
            resource_metadata_url(&url("https://r.example/mcp/")).as_str(),
            "https://r.example/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn resource_metadata_resource_must_match() {
        let doc = br#"{"resource":"https://resource.example.com",
            "authorization_servers":["https://as1.example.com","https://as2.example.net"],
            "bearer_methods_supported":["header","body"],
            "scopes_supported":["profile","email","phone"],
            "resource_documentation":"https://resource.example.com/resource_documentation.html",
            "dpop_bound_access_tokens_required": true}"#;
        let md =
            ResourceMetadata::from_json(doc, &url("https://resource.example.com/x")).expect("md");
        assert_eq!(md.authorization_servers().len(), 2);
        assert_eq!(md.dpop_bound_access_tokens_required, Some(true));
        let err = ResourceMetadata::from_json(doc, &url("https://other.example.com/"))
            .expect_err("other");
        assert!(matches!(err, Error::Discovery(_)));
        let not_md = br#"{"name":"some app","version":1}"#;
        assert!(ResourceMetadata::from_json(not_md, &url("https://resource.example.com")).is_err());
    }

    #[test]
    fn resource_metadata_prefix_matching_is_segment_wise() {
        let r = url("https://api.example/v1");
        assert!(resource_matches(&r, &url("https://api.example/v1")));
        assert!(resource_matches(&r, &url("https://api.example/v1/")));
        assert!(resource_matches(
            &r,
            &url("https://api.example/v1/invoices?x=1")
        ));
        assert!(!resource_matches(&r, &url("https://api.example/v10")));
        assert!(!resource_matches(&r, &url("http://api.example/v1")));
        assert!(!resource_matches(&r, &url("https://api.example:444/v1")));
        assert!(resource_matches(
            &url("https://api.example/"),
            &url("https://api.example/a")
        ));
    }

    #[test]
    fn resource_metadata_cross_origin_refused_unless_allowed() {
        let resource = url("https://api.example/mcp");
        let same = MetadataPolicy::SameOrigin;
        assert!(same
            .check(
                "https://api.example/.well-known/oauth-protected-resource/mcp",
                &resource
            )
            .is_ok());
        let err = same
            .check("http://169.254.169.254/latest/meta-data", &resource)
            .expect_err("ssrf");
        assert!(err.to_string().contains("another origin"));
        let allow = MetadataPolicy::AllowOrigins(vec!["https://meta.example/".into()]);
        assert!(allow.check("https://meta.example/prm", &resource).is_ok());
        assert!(allow.check("https://evil.example/prm", &resource).is_err());
        assert!(same.check("/relative", &resource).is_err());
    }
}
