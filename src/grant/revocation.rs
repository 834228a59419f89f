//! Token revocation (RFC 7009) and introspection (RFC 7662).

use serde::Deserialize;

use super::client::{EndpointCall, OAuthClient};
use crate::discovery::Endpoint;
use crate::error::Result;
use crate::transport::{json_body, RetryPolicy};

/// An introspection response (RFC 7662 §2.2). Unknown members are in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)] // each field is the RFC member of the same name
pub struct Introspection {
    pub active: bool,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<serde_json::Value>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub jti: Option<String>,
    /// Confirmation (`jkt` for DPoP, `x5t#S256` for mTLS).
    #[serde(default)]
    pub cnf: Option<serde_json::Value>,
    /// Other members.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn token_form(token: &str, hint: Option<&str>) -> Vec<(String, String)> {
    let mut f = vec![("token".to_owned(), token.to_owned())];
    if let Some(h) = hint {
        f.push(("token_type_hint".to_owned(), h.to_owned()));
    }
    f
}

impl OAuthClient {
    /// Revoke a token (RFC 7009 §2.1). `hint` is `access_token` or `refresh_token`. The server
    /// answers 200 for unknown tokens too.
    ///
    /// # Errors
    /// [`Error::OAuth`](crate::Error::OAuth) (e.g. `unsupported_token_type`), transport errors.
    pub async fn revoke(&self, token: &str, hint: Option<&str>) -> Result<()> {
        self.call(
            EndpointCall {
                endpoint: Endpoint::Revocation,
                operation: "revocation request".to_owned(),
                params: token_form(token, hint),
                policy: RetryPolicy::Idempotent,
                dpop_override: None,
                authenticate: true,
            },
            |_| Ok(()),
        )
        .await
    }

    /// Introspect a token (RFC 7662 §2.1).
    ///
    /// # Errors
    /// OAuth, transport and parse errors.
    pub async fn introspect(&self, token: &str, hint: Option<&str>) -> Result<Introspection> {
        self.call(
            EndpointCall {
                endpoint: Endpoint::Introspection,
                operation: "introspection request".to_owned(),
                params: token_form(token, hint),
                policy: RetryPolicy::Idempotent,
                dpop_override: None,
                authenticate: true,
            },
            |resp| json_body(resp, "introspection response"),
        )
        .await
    }
}
