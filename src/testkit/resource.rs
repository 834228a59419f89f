//! The protected resource at `/api`: RFC 6750 Bearer, RFC 9449 DPoP, RFC 9728 metadata.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use url::Url;

use super::dpop::{self, Expect, ProofError};
use super::grants::host_url;
use super::http_util::add_nonce;
use super::state::{bump, now, Inner, Shared};

/// A refusal of the resource.
struct Refusal {
    status: StatusCode,
    /// `WWW-Authenticate` challenges, in order.
    challenges: Vec<String>,
    nonce: Option<String>,
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Shared {
    fn metadata_url(&self) -> String {
        self.endpoint("/.well-known/oauth-protected-resource/api")
    }

    /// RFC 9728 protected resource metadata.
    pub(crate) fn resource_metadata(&self) -> Value {
        json!({
            "resource": self.resource(),
            "authorization_servers": [self.issuer],
            "scopes_supported": self.config.scopes,
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256"],
            "dpop_bound_access_tokens_required": self.config.resource_dpop_required,
            "resource_name": "agent-oauth testkit resource",
        })
    }

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
            quote(&self.metadata_url())
        ));
        format!("{scheme} {}", params.join(", "))
    }

    /// Challenges for an unauthenticated or refused request: DPoP first, then Bearer unless
    /// the resource requires DPoP.
    fn both(&self, error: Option<(&str, &str)>, extra: &[(&str, &str)]) -> Vec<String> {
        let mut v = vec![self.challenge("DPoP", error, extra)];
        if !self.config.resource_dpop_required {
            v.push(self.challenge("Bearer", error, extra));
        }
        v
    }

    fn refuse(&self, status: StatusCode, challenges: Vec<String>) -> Refusal {
        Refusal {
            status,
            challenges,
            nonce: None,
        }
    }

    /// Any request to `/api` or below.
    pub(crate) fn resource_request(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Response {
        bump(&self.counters.resource_requests);
        match self.resource_check(method, path, headers) {
            Ok((body, nonce)) => {
                let mut h = HeaderMap::new();
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                add_nonce(&mut h, nonce.as_deref());
                (StatusCode::OK, h, Json(body)).into_response()
            }
            Err(r) => {
                bump(&self.counters.resource_rejections);
                let mut h = HeaderMap::new();
                for c in &r.challenges {
                    if let Ok(v) = HeaderValue::from_str(c) {
                        h.append(header::WWW_AUTHENTICATE, v);
                    }
                }
                add_nonce(&mut h, r.nonce.as_deref());
                let body = json!({ "error": error_of(&r) });
                (r.status, h, Json(body)).into_response()
            }
        }
    }

    fn resource_check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(Value, Option<String>), Refusal> {
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = auth.next() else {
            return Err(self.refuse(StatusCode::UNAUTHORIZED, self.both(None, &[])));
        };
        let bad_request = |d: &str| {
            self.refuse(
                StatusCode::BAD_REQUEST,
                self.both(Some(("invalid_request", d)), &[]),
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
            return Err(self.refuse(StatusCode::UNAUTHORIZED, self.both(None, &[])));
        };
        let invalid = |d: &str| {
            self.refuse(
                StatusCode::UNAUTHORIZED,
                vec![self.challenge(scheme, Some(("invalid_token", d)), &[])],
            )
        };
        let t = now();
        let mut guard = self.inner();
        let inner: &mut Inner = &mut guard;
        let claims = self
            .active_access(inner, token)
            .ok_or_else(|| invalid("the access token is invalid, expired or revoked"))?;
        let resource = self.resource();
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == resource,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(resource.as_str())),
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
                return Err(self.refuse(
                    StatusCode::UNAUTHORIZED,
                    vec![
                        self.challenge(
                            "DPoP",
                            Some((
                                "invalid_token",
                                "DPoP-bound access token presented as a Bearer token",
                            )),
                            &[],
                        ),
                        self.challenge(
                            "Bearer",
                            Some((
                                "invalid_token",
                                "DPoP-bound access token presented as a Bearer token",
                            )),
                            &[],
                        ),
                    ],
                ))
            }
            ("Bearer", None) if self.config.resource_dpop_required => {
                return Err(self.refuse(
                    StatusCode::UNAUTHORIZED,
                    vec![self.challenge(
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
                    challenges: vec![self.challenge("DPoP", Some((code, d)), &[])],
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

        let scope = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if path.starts_with("/api/admin") && !scope.split(' ').any(|s| s == "admin") {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                challenges: vec![self.challenge(
                    scheme,
                    Some((
                        "insufficient_scope",
                        "the request requires higher privileges than provided by the access token",
                    )),
                    &[("scope", "admin")],
                )],
                nonce,
            });
        }
        let mut body = Map::new();
        body.insert("ok".into(), json!(true));
        body.insert(
            "sub".into(),
            claims.get("sub").cloned().unwrap_or(Value::Null),
        );
        body.insert(
            "client_id".into(),
            claims.get("client_id").cloned().unwrap_or(Value::Null),
        );
        body.insert("scope".into(), json!(scope));
        body.insert("path".into(), json!(path));
        body.insert("method".into(), json!(method.as_str()));
        body.insert(
            "act".into(),
            claims.get("act").cloned().unwrap_or(Value::Null),
        );
        body.insert("jkt".into(), jkt.map(Value::String).unwrap_or(Value::Null));
        body.insert(
            "aud".into(),
            claims.get("aud").cloned().unwrap_or(Value::Null),
        );
        Ok((Value::Object(body), nonce))
    }
}

/// The `error` code of a refusal's first challenge, for the JSON body.
fn error_of(r: &Refusal) -> Value {
    r.challenges
        .first()
        .and_then(|c| c.split("error=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map_or(Value::Null, |e| json!(e))
}
