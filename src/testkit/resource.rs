//! The protected resources: RFC 6750 Bearer, RFC 9449 DPoP, RFC 9728 metadata.
//!
//! [`Shared::check_access`] validates a request's access token for any [`Protected`]
//! resource; `/api` is served here and `/mcp` in `mcp.rs`.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use url::Url;

use super::dpop::{self, Expect, ProofError};
use super::grants::host_url;
use super::http_util::add_nonce;
use super::state::{bump, now, Inner, Shared};

/// A protected resource of the server: its identifier and how it challenges.
#[derive(Debug)]
pub(crate) struct Protected {
    /// The resource identifier (RFC 9728 §2), which an access token's `aud` must include.
    pub(crate) resource: String,
    /// Its RFC 9728 metadata, named by every challenge's `resource_metadata` (RFC 9728 §5.1).
    pub(crate) metadata_url: String,
    /// Challenge requests without a usable token with `DPoP` as well as `Bearer`.
    pub(crate) offer_dpop: bool,
    /// Refuse Bearer tokens.
    pub(crate) dpop_required: bool,
    /// The `scope` of the challenges to requests without a valid token.
    pub(crate) challenge_scope: Option<String>,
}

/// A request whose access token the resource accepted.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The access token's claims.
    pub(crate) claims: Map<String, Value>,
    /// The thumbprint of the DPoP key the token is bound to (DPoP requests).
    pub(crate) jkt: Option<String>,
    /// The `DPoP-Nonce` to answer with (DPoP requests).
    pub(crate) nonce: Option<String>,
}

impl Accepted {
    /// The token's `scope` claim (empty when absent).
    pub(crate) fn scope(&self) -> &str {
        self.claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A refusal of a protected resource.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    /// `WWW-Authenticate` challenges, in order.
    challenges: Vec<String>,
    nonce: Option<String>,
}

impl Refusal {
    /// The response: the status, the challenges, any `DPoP-Nonce`, and `{"error": code}`.
    pub(crate) fn response(&self) -> Response {
        let mut h = HeaderMap::new();
        for c in &self.challenges {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append(header::WWW_AUTHENTICATE, v);
            }
        }
        add_nonce(&mut h, self.nonce.as_deref());
        let body = json!({ "error": self.error_code() });
        (self.status, h, Json(body)).into_response()
    }

    /// The `error` code of the first challenge, for the JSON body.
    fn error_code(&self) -> Value {
        self.challenges
            .first()
            .and_then(|c| c.split("error=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map_or(Value::Null, |e| json!(e))
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Protected {
    /// A challenge of `scheme` with an optional error and extra parameters.
    fn challenge(
        &self,
        scheme: &str,
        error: Option<(&str, &str)>,
        extra: &[(&str, &str)],
    ) -> String {
        let mut params = Vec::new();
        if scheme == "DPoP" {
            params.push("algs=\"ES256\"".to_owned());
        }
        if let Some((code, description)) = error {
            params.push(format!("error=\"{}\"", quote(code)));
            params.push(format!("error_description=\"{}\"", quote(description)));
        }
        for (k, v) in extra {
            params.push(format!("{k}=\"{}\"", quote(v)));
        }
        params.push(format!(
            "resource_metadata=\"{}\"",
            quote(&self.metadata_url)
        ));
        format!("{scheme} {}", params.join(", "))
    }

    /// The `scope` parameter of challenges to requests without a valid token.
    fn scope_param(&self) -> Vec<(&str, &str)> {
        self.challenge_scope
            .as_deref()
            .map(|s| ("scope", s))
            .into_iter()
            .collect()
    }

    /// Challenges for an unauthenticated or refused request: DPoP first (when offered or
    /// required), then Bearer unless the resource requires DPoP.
    fn both(&self, error: Option<(&str, &str)>, extra: &[(&str, &str)]) -> Vec<String> {
        let mut v = Vec::new();
        if self.offer_dpop || self.dpop_required {
            v.push(self.challenge("DPoP", error, extra));
        }
        if !self.dpop_required {
            v.push(self.challenge("Bearer", error, extra));
        }
        v
    }
}

impl Shared {
    /// The resource at `/api` and below.
    pub(crate) fn api(&self) -> Protected {
        Protected {
            resource: self.resource(),
            metadata_url: self.endpoint("/.well-known/oauth-protected-resource/api"),
            offer_dpop: true,
            dpop_required: self.config.resource_dpop_required,
            challenge_scope: None,
        }
    }

    /// RFC 9728 protected resource metadata of `rs`.
    pub(crate) fn protected_metadata(
        &self,
        rs: &Protected,
        scopes: &[String],
        name: &str,
    ) -> Value {
        json!({
            "resource": rs.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256"],
            "dpop_bound_access_tokens_required": rs.dpop_required,
            "resource_name": name,
        })
    }

    /// RFC 9728 metadata of `/api`.
    pub(crate) fn resource_metadata(&self) -> Value {
        self.protected_metadata(
            &self.api(),
            &self.config.scopes,
            "agent-oauth testkit resource",
        )
    }

    /// Any request to `/api` or below; `/api/admin` and below need the `admin` scope.
    pub(crate) fn resource_request(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Response {
        bump(&self.counters.resource_requests);
        let required = path.starts_with("/api/admin").then_some("admin");
        match self.check_access(&self.api(), method, path, headers, required) {
            Ok(ok) => {
                let body = json!({
                    "ok": true,
                    "sub": ok.claims.get("sub").cloned().unwrap_or(Value::Null),
                    "client_id": ok.claims.get("client_id").cloned().unwrap_or(Value::Null),
                    "scope": ok.scope(),
                    "path": path,
                    "method": method.as_str(),
                    "act": ok.claims.get("act").cloned().unwrap_or(Value::Null),
                    "jkt": ok.jkt,
                    "aud": ok.claims.get("aud").cloned().unwrap_or(Value::Null),
                });
                let mut h = HeaderMap::new();
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                add_nonce(&mut h, ok.nonce.as_deref());
                (StatusCode::OK, h, Json(body)).into_response()
            }
            Err(r) => {
                bump(&self.counters.resource_rejections);
                r.response()
            }
        }
    }

    /// Check the access token of a request to `rs` at `path`: one `Authorization` header, a
    /// token of this server that is active and whose `aud` includes `rs.resource`, a DPoP
    /// proof for DPoP-bound tokens (RFC 9449 §7), and `required_scope` when given (403
    /// `insufficient_scope` otherwise, RFC 6750 §3.1).
    pub(crate) fn check_access(
        &self,
        rs: &Protected,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        required_scope: Option<&str>,
    ) -> Result<Accepted, Refusal> {
        let refuse = |status: StatusCode, challenges: Vec<String>| Refusal {
            status,
            challenges,
            nonce: None,
        };
        let unauthenticated = || refuse(StatusCode::UNAUTHORIZED, rs.both(None, &rs.scope_param()));
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = auth.next() else {
            return Err(unauthenticated());
        };
        let bad_request = |d: &str| {
            refuse(
                StatusCode::BAD_REQUEST,
                rs.both(Some(("invalid_request", d)), &[]),
            )
        };
        if auth.next().is_some() {
            return Err(bad_request("more than one Authorization header"));
        }
        let value = value
            .to_str()
            .map_err(|_| bad_request("malformed Authorization header"))?;
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad_request("malformed Authorization header"))?;
        let token = token.trim();
        let scheme = if scheme.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else if scheme.eq_ignore_ascii_case("dpop") {
            "DPoP"
        } else {
            return Err(unauthenticated());
        };
        let invalid = |d: &str| {
            refuse(
                StatusCode::UNAUTHORIZED,
                vec![rs.challenge(scheme, Some(("invalid_token", d)), &rs.scope_param())],
            )
        };
        let t = now();
        let mut guard = self.inner();
        let inner: &mut Inner = &mut guard;
        let claims = self
            .active_access(inner, token)
            .ok_or_else(|| invalid("the access token is invalid, expired or revoked"))?;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == rs.resource,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(rs.resource.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid(
                "the access token audience does not include this resource",
            ));
        }
        let bound = claims
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str)
            .map(str::to_owned);

        let mut nonce = None;
        let jkt = match (scheme, bound) {
            ("Bearer", Some(_)) => {
                let error = Some((
                    "invalid_token",
                    "DPoP-bound access token presented as a Bearer token",
                ));
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    vec![
                        rs.challenge("DPoP", error, &[]),
                        rs.challenge("Bearer", error, &[]),
                    ],
                ));
            }
            ("Bearer", None) if rs.dpop_required => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    vec![rs.challenge(
                        "DPoP",
                        Some((
                            "invalid_token",
                            "this resource requires DPoP-bound access tokens",
                        )),
                        &[],
                    )],
                ))
            }
            ("Bearer", None) => None,
            (_, None) => return Err(invalid("the access token is not DPoP-bound")),
            (_, Some(bound)) => {
                let dpop_refusal = |code: &str, d: &str, nonce: Option<String>| Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    challenges: vec![rs.challenge("DPoP", Some((code, d)), &[])],
                    nonce,
                };
                if headers.get("dpop").is_none() {
                    return Err(dpop_refusal(
                        "invalid_dpop_proof",
                        "DPoP proof missing",
                        None,
                    ));
                }
                let mut urls = Vec::new();
                urls.extend(Url::parse(&self.endpoint(path)).ok());
                urls.extend(host_url(headers, path));
                let expect = Expect {
                    method: method.as_str(),
                    urls: &urls,
                    access_token: Some(token),
                    nonce_required: self.config.resource_require_dpop_nonce,
                    now: t,
                };
                let Inner {
                    rs_nonces,
                    rs_replay,
                    ..
                } = inner;
                let current = rs_nonces.current();
                match dpop::verify_request(headers, &expect, rs_nonces, rs_replay) {
                    Ok(Some(p)) if p.jkt == bound => {}
                    Ok(Some(_)) => {
                        return Err(dpop_refusal(
                            "invalid_dpop_proof",
                            "DPoP proof key does not match the access token binding",
                            Some(current),
                        ))
                    }
                    Ok(None) => {
                        return Err(dpop_refusal(
                            "invalid_dpop_proof",
                            "DPoP proof missing",
                            Some(current),
                        ))
                    }
                    Err(ProofError::Invalid(d)) => {
                        return Err(dpop_refusal("invalid_dpop_proof", &d, Some(current)))
                    }
                    Err(ProofError::UseNonce) => {
                        bump(&self.counters.nonce_challenges);
                        return Err(dpop_refusal(
                            "use_dpop_nonce",
                            "Resource server requires nonce in DPoP proof",
                            Some(current),
                        ));
                    }
                }
                nonce = Some(current);
                Some(bound)
            }
        };

        let accepted = Accepted { claims, jkt, nonce };
        if let Some(required) = required_scope {
            if !accepted.scope().split(' ').any(|s| s == required) {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    challenges: vec![rs.challenge(
                        scheme,
                        Some((
                            "insufficient_scope",
                            "the request requires higher privileges than provided by the access token",
                        )),
                        &[("scope", required)],
                    )],
                    nonce: accepted.nonce,
                });
            }
        }
        Ok(accepted)
    }
}
