//! Client registration at the embedded server: Dynamic Client Registration (RFC 7591) at
//! `/register`, and clients whose `client_id` is the URL of a client ID metadata document
//! given to the server beforehand (the server never fetches one).

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use url::Url;

use super::config::{TestClient, TestClientAuth};
use super::http_util::OAuthErr;
use super::jose::random_token;
use super::state::{lock, now, Shared};
use crate::registration::validate_client_id_metadata_document;

/// The grant types a registration may ask for.
const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "client_credentials",
    "refresh_token",
    super::grants::DEVICE_CODE,
    super::grants::TOKEN_EXCHANGE,
];

fn invalid_metadata(d: impl Into<String>) -> OAuthErr {
    OAuthErr::new(StatusCode::BAD_REQUEST, "invalid_client_metadata", d)
}

fn invalid_redirect(d: impl Into<String>) -> OAuthErr {
    OAuthErr::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", d)
}

/// A list-of-strings member of a registration request, `default` when absent.
fn strings(
    body: &Map<String, Value>,
    name: &str,
    default: &[&str],
) -> Result<Vec<String>, OAuthErr> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid_metadata(format!("{name} must only contain strings")))
            })
            .collect(),
        Some(_) => Err(invalid_metadata(format!("{name} must be an array"))),
    }
}

/// An `https` URI, or an `http` one on a loopback host (RFC 8252 §7.3), without a fragment.
fn acceptable_redirect(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => true,
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")),
        _ => false,
    }
}

/// The first key of a JWK Set, for `private_key_jwt`.
fn first_jwk(jwks: Option<&Value>) -> Option<Value> {
    jwks?.get("keys")?.as_array()?.first().cloned()
}

impl Shared {
    /// `POST /register` (RFC 7591 §3): the client information response, or an error (§3.2.2).
    pub(crate) fn register(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthErr> {
        let json_body = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json_body {
            return Err(OAuthErr::invalid_request(
                "only application/json content-type bodies are supported",
            ));
        }
        let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
            return Err(invalid_metadata("the request body must be a JSON object"));
        };
        if request.contains_key("software_statement") {
            return Err(OAuthErr::new(
                StatusCode::BAD_REQUEST,
                "unapproved_software_statement",
                "software statements are not accepted by this server",
            ));
        }
        for member in ["client_id", "client_secret"] {
            request.remove(member);
        }
        let grant_types = strings(&request, "grant_types", &["authorization_code"])?;
        if let Some(g) = grant_types
            .iter()
            .find(|g| !GRANT_TYPES.contains(&g.as_str()))
        {
            return Err(invalid_metadata(format!("unsupported grant_type {g}")));
        }
        let response_types = strings(&request, "response_types", &["code"])?;
        if response_types.iter().any(|r| r != "code") {
            return Err(invalid_metadata("only the code response type is supported"));
        }
        let redirect_uris = strings(&request, "redirect_uris", &[])?;
        if let Some(bad) = redirect_uris.iter().find(|u| !acceptable_redirect(u)) {
            return Err(invalid_redirect(format!(
                "redirect_uris must be https or loopback http URIs without fragment: {bad}"
            )));
        }
        if redirect_uris.is_empty() && grant_types.iter().any(|g| g == "authorization_code") {
            return Err(invalid_redirect(
                "redirect_uris is required for the authorization_code grant",
            ));
        }
        let scope = match request.get("scope") {
            None | Some(Value::Null) => self.config.scopes.join(" "),
            Some(Value::String(s)) => {
                if let Some(v) = s
                    .split(' ')
                    .filter(|v| !v.is_empty())
                    .find(|v| !self.config.scopes.iter().any(|k| k == v))
                {
                    return Err(invalid_metadata(format!("scope {v} is not recognized")));
                }
                s.clone()
            }
            Some(_) => return Err(invalid_metadata("scope must be a string")),
        };
        let method = match request.get("token_endpoint_auth_method") {
            None | Some(Value::Null) => "client_secret_basic".to_owned(),
            Some(Value::String(m)) => m.clone(),
            Some(_) => {
                return Err(invalid_metadata(
                    "token_endpoint_auth_method must be a string",
                ))
            }
        };
        let secret = random_token();
        let auth = match method.as_str() {
            "none" => TestClientAuth::None,
            "client_secret_basic" => TestClientAuth::SecretBasic(secret.clone()),
            "client_secret_post" => TestClientAuth::SecretPost(secret.clone()),
            "private_key_jwt" => TestClientAuth::PrivateKeyJwt(
                first_jwk(request.get("jwks"))
                    .ok_or_else(|| invalid_metadata("private_key_jwt needs a jwks with a key"))?,
            ),
            other => {
                return Err(invalid_metadata(format!(
                    "unsupported token_endpoint_auth_method {other}"
                )))
            }
        };
        let client_id = format!("dyn-{}", random_token());
        let mut response = request;
        response.insert("client_id".into(), json!(client_id));
        response.insert("client_id_issued_at".into(), json!(now()));
        response.insert("token_endpoint_auth_method".into(), json!(method));
        response.insert("grant_types".into(), json!(grant_types));
        response.insert("response_types".into(), json!(response_types));
        response.insert("redirect_uris".into(), json!(redirect_uris));
        response.insert("scope".into(), json!(scope));
        if matches!(
            auth,
            TestClientAuth::SecretBasic(_) | TestClientAuth::SecretPost(_)
        ) {
            response.insert("client_secret".into(), json!(secret));
            response.insert("client_secret_expires_at".into(), json!(0));
        }
        lock(&self.registered).push(TestClient {
            client_id,
            auth,
            redirect_uris,
            scope,
        });
        Ok(Value::Object(response))
    }

    /// The client a client ID metadata document given to the server describes, when they are
    /// enabled and the document passes [`validate_client_id_metadata_document`]. Its method
    /// is `none`, or `private_key_jwt` with the first key of its `jwks`.
    pub(crate) fn metadata_document_client(&self, client_id: &str) -> Option<TestClient> {
        if !self.config.client_id_metadata_documents || !client_id.starts_with("https://") {
            return None;
        }
        let document = lock(&self.metadata_documents).get(client_id).cloned()?;
        let metadata = match validate_client_id_metadata_document(&document, client_id) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "testkit: client ID metadata document refused");
                return None;
            }
        };
        let auth = match metadata.token_endpoint_auth_method.as_deref() {
            None | Some("none") => TestClientAuth::None,
            Some("private_key_jwt") => {
                TestClientAuth::PrivateKeyJwt(first_jwk(metadata.jwks.as_ref())?)
            }
            Some(_) => return None,
        };
        Some(TestClient {
            client_id: client_id.to_owned(),
            auth,
            redirect_uris: metadata.redirect_uris,
            scope: metadata
                .scope
                .unwrap_or_else(|| self.config.scopes.join(" ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_testkit_redirect_uris_https_or_loopback() {
        for (uri, ok) in [
            ("https://app.example/cb", true),
            ("http://127.0.0.1/cb", true),
            ("http://127.0.0.1:9/cb", true),
            ("http://[::1]/cb", true),
            ("http://localhost/cb", true),
            ("http://app.example/cb", false),
            ("https://app.example/cb#f", false),
            ("com.example.app:/cb", false),
            ("/cb", false),
        ] {
            assert_eq!(acceptable_redirect(uri), ok, "{uri}");
        }
    }
}
