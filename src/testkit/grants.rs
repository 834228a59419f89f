//! The embedded server's token endpoint: client credentials, authorization code, refresh with
//! rotation and reuse detection, and device code grants.

use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use url::Url;

use super::client_auth::authenticate;
use super::config::TestClient;
use super::dpop::{self, Expect, Proof, ProofError};
use super::http_util::{is_form, OAuthErr, Params};
use super::jose::sha256_b64;
use super::state::{bump, now, secs, DeviceStatus, Inner, NewAccess, RefreshRecord, Shared, USER};
use crate::Scope;

pub(crate) const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub(super) const AT_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(super) const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Outcome of a request that gets a JSON answer.
pub(crate) type Answer = Result<Value, OAuthErr>;

pub(super) fn form(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthErr> {
    if !is_form(headers) {
        return Err(OAuthErr::invalid_request(
            "only application/x-www-form-urlencoded content-type bodies are supported",
        ));
    }
    Ok(Params::parse(body))
}

/// Check that `scope` only holds values known to the server and allowed to the client.
pub(crate) fn check_scope(
    shared: &Shared,
    client: &TestClient,
    scope: &Scope,
) -> Result<(), OAuthErr> {
    let allowed = Scope::parse(&client.scope);
    for v in scope.iter() {
        if !shared.config.scopes.iter().any(|s| s == v) {
            return Err(OAuthErr::invalid_scope(format!(
                "requested scope {v} is not recognized"
            )));
        }
        if !allowed.contains(v) {
            return Err(OAuthErr::invalid_scope(format!(
                "requested scope {v} is not allowed for this client"
            )));
        }
    }
    Ok(())
}

/// `resource` parameters (RFC 8707): absolute URIs without fragment.
pub(crate) fn resources(params: &Params) -> Result<Vec<String>, OAuthErr> {
    let mut out = Vec::new();
    for r in params.all("resource") {
        match Url::parse(r) {
            Ok(u) if u.fragment().is_none() => {
                if !out.iter().any(|o: &String| o == r) {
                    out.push(r.to_owned());
                }
            }
            _ => {
                return Err(OAuthErr::invalid_target(
                    "resource must be an absolute URI without a fragment",
                ))
            }
        }
    }
    Ok(out)
}

fn token_type(jkt: &Option<String>) -> &'static str {
    if jkt.is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}

pub(super) fn token_response(
    access: (String, i64),
    jkt: &Option<String>,
    scope: &Scope,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("access_token".into(), json!(access.0));
    m.insert("token_type".into(), json!(token_type(jkt)));
    m.insert("expires_in".into(), json!(access.1));
    if !scope.is_empty() {
        m.insert("scope".into(), json!(scope.to_string()));
    }
    m
}

/// What every grant handler is given: the authenticated client, the form, and the thumbprint of
/// the DPoP key that signed the request's proof.
pub(super) struct TokenRequest<'a> {
    pub(super) client: &'a TestClient,
    pub(super) params: &'a Params,
    pub(super) jkt: Option<String>,
}

impl Shared {
    /// Everything the token endpoint does after latency and fault injection.
    pub(crate) fn token(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let params = form(headers, body)?;
        let mut inner = self.inner();
        let inner = &mut *inner;
        let grant_type = params.required("grant_type")?;
        // The JWT bearer grant may come without client authentication (RFC 7523 §3.1).
        let anonymous = grant_type == JWT_BEARER
            && !headers.contains_key(http::header::AUTHORIZATION)
            && ![
                "client_id",
                "client_secret",
                "client_assertion",
                "client_assertion_type",
            ]
            .iter()
            .any(|p| params.has(p));
        let client = if anonymous {
            None
        } else {
            Some(authenticate(
                self,
                inner,
                headers,
                &params,
                &self.endpoint("/token"),
            )?)
        };
        if !matches!(
            grant_type,
            "client_credentials"
                | "authorization_code"
                | "refresh_token"
                | DEVICE_CODE
                | TOKEN_EXCHANGE
                | JWT_BEARER
        ) {
            return Err(OAuthErr::unsupported_grant_type(
                "unsupported grant_type requested",
            ));
        }
        let proof = self.token_proof(inner, headers)?;
        let jkt = proof.map(|p| p.jkt);
        let Some(client) = client else {
            return self.jwt_bearer(inner, None, &params, jkt);
        };
        if grant_type == JWT_BEARER {
            return self.jwt_bearer(inner, Some(&client), &params, jkt);
        }
        let req = TokenRequest {
            client: &client,
            params: &params,
            jkt,
        };
        match grant_type {
            "client_credentials" => self.client_credentials(inner, req),
            "authorization_code" => self.authorization_code(inner, req),
            "refresh_token" => self.refresh(inner, req),
            DEVICE_CODE => self.device_code(inner, req),
            _ => self.token_exchange(inner, req),
        }
    }

    fn token_proof(
        &self,
        inner: &mut Inner,
        headers: &HeaderMap,
    ) -> Result<Option<Proof>, OAuthErr> {
        let Ok(url) = Url::parse(&self.endpoint("/token")) else {
            return Err(OAuthErr::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "bad issuer",
            ));
        };
        let mut urls = vec![url];
        urls.extend(host_url(headers, "/token"));
        let expect = Expect {
            method: "POST",
            urls: &urls,
            access_token: None,
            nonce_required: self.config.require_dpop_nonce,
            now: now(),
        };
        let Inner {
            as_nonces,
            as_replay,
            ..
        } = inner;
        match dpop::verify_request(headers, &expect, as_nonces, as_replay) {
            Ok(p) => Ok(p),
            Err(ProofError::Invalid(d)) => Err(OAuthErr::invalid_dpop_proof(d)),
            Err(ProofError::UseNonce) => {
                bump(&self.counters.nonce_challenges);
                Err(OAuthErr::use_dpop_nonce(
                    "Authorization server requires nonce in DPoP proof",
                ))
            }
        }
    }

    pub(super) fn ttl(&self) -> i64 {
        secs(self.config.access_token_ttl)
    }

    fn client_credentials(&self, inner: &mut Inner, req: TokenRequest<'_>) -> Answer {
        let (client, params, jkt) = (req.client, req.params, req.jkt);
        if client.auth.is_public() {
            return Err(OAuthErr::unauthorized_client(
                "public clients cannot use the client_credentials grant",
            ));
        }
        let scope = Scope::parse(params.one("scope")?.unwrap_or_default());
        check_scope(self, client, &scope)?;
        let aud = resources(params)?;
        let grant_id = Shared::new_grant(inner);
        let access = self.issue_access(
            inner,
            NewAccess {
                grant_id,
                sub: &client.client_id,
                client_id: &client.client_id,
                scope: &scope,
                aud,
                jkt: jkt.clone(),
                act: None,
                ttl: self.ttl(),
            },
        );
        bump(&self.counters.client_credentials);
        Ok(Value::Object(token_response(access, &jkt, &scope)))
    }

    /// Issue the first tokens of a user grant (code or device flow).
    #[allow(clippy::too_many_arguments)]
    fn user_grant(
        &self,
        inner: &mut Inner,
        grant_id: u64,
        client: &TestClient,
        scope: &Scope,
        granted_resources: Vec<String>,
        requested: Vec<String>,
        jkt: Option<String>,
    ) -> Answer {
        if !requested
            .iter()
            .all(|r| granted_resources.is_empty() || granted_resources.contains(r))
        {
            return Err(OAuthErr::invalid_target(
                "resource was not part of the authorization",
            ));
        }
        let aud = if requested.is_empty() {
            granted_resources.clone()
        } else {
            requested
        };
        let access = self.issue_access(
            inner,
            NewAccess {
                grant_id,
                sub: USER,
                client_id: &client.client_id,
                scope,
                aud,
                jkt: jkt.clone(),
                act: None,
                ttl: self.ttl(),
            },
        );
        let t = now();
        let refresh = Shared::new_refresh(
            inner,
            RefreshRecord {
                grant_id,
                client_id: client.client_id.clone(),
                sub: USER.to_owned(),
                scope: scope.clone(),
                resources: granted_resources,
                iat: t,
                exp: t.saturating_add(secs(self.config.refresh_token_ttl)),
                consumed: false,
                jkt: if client.auth.is_public() {
                    jkt.clone()
                } else {
                    None
                },
            },
        );
        let mut m = token_response(access, &jkt, scope);
        m.insert("refresh_token".into(), json!(refresh));
        Ok(Value::Object(m))
    }

    fn authorization_code(&self, inner: &mut Inner, req: TokenRequest<'_>) -> Answer {
        let (client, params, jkt) = (req.client, req.params, req.jkt);
        let code = params.required("code")?;
        let verifier = params.one("code_verifier")?;
        let redirect_uri = params.one("redirect_uri")?;
        let requested = resources(params)?;
        let t = now();
        let Some(rec) = inner.codes.get(code) else {
            return Err(OAuthErr::invalid_grant("grant request is invalid"));
        };
        if rec.client_id != client.client_id {
            return Err(OAuthErr::invalid_grant("client mismatch"));
        }
        if rec.exp <= t {
            return Err(OAuthErr::invalid_grant("authorization code is expired"));
        }
        let Some(verifier) = verifier else {
            return Err(OAuthErr::invalid_grant("PKCE verification failed"));
        };
        if !valid_verifier(verifier) || sha256_b64(verifier.as_bytes()) != rec.code_challenge {
            return Err(OAuthErr::invalid_grant("PKCE verification failed"));
        }
        match redirect_uri {
            Some(r) if r == rec.redirect_uri => {}
            None if !rec.redirect_uri_sent => {}
            _ => {
                return Err(OAuthErr::invalid_grant(
                    "authorization code redirect_uri mismatch",
                ))
            }
        }
        if let Some(grant_id) = rec.grant_id {
            self.revoke_grant(inner, grant_id);
            return Err(OAuthErr::invalid_grant(
                "authorization code already consumed",
            ));
        }
        if let Some(want) = &rec.dpop_jkt {
            if jkt.as_ref() != Some(want) {
                return Err(OAuthErr::invalid_grant(
                    "DPoP proof key thumbprint does not match dpop_jkt",
                ));
            }
        }
        let scope = rec.scope.clone();
        let granted = rec.resources.clone();
        let grant_id = Shared::new_grant(inner);
        if let Some(rec) = inner.codes.get_mut(code) {
            rec.grant_id = Some(grant_id);
        }
        let answer = self.user_grant(inner, grant_id, client, &scope, granted, requested, jkt)?;
        bump(&self.counters.authorization_code);
        Ok(answer)
    }

    fn refresh(&self, inner: &mut Inner, req: TokenRequest<'_>) -> Answer {
        let (client, params, jkt) = (req.client, req.params, req.jkt);
        let token = params.required("refresh_token")?;
        let requested_scope = params.one("scope")?.map(Scope::parse);
        let requested = resources(params)?;
        let t = now();
        let Some(rec) = inner.refresh.get(token).cloned() else {
            return Err(OAuthErr::invalid_grant("grant request is invalid"));
        };
        if rec.client_id != client.client_id {
            return Err(OAuthErr::invalid_grant("client mismatch"));
        }
        if !Shared::grant_active(inner, rec.grant_id) {
            return Err(OAuthErr::invalid_grant("grant request is invalid"));
        }
        if rec.consumed {
            // Reuse of a rotated refresh token: treat as stolen, revoke the whole grant.
            self.revoke_grant(inner, rec.grant_id);
            return Err(OAuthErr::invalid_grant("grant request is invalid"));
        }
        if rec.exp <= t {
            return Err(OAuthErr::invalid_grant("refresh token is expired"));
        }
        if let Some(bound) = &rec.jkt {
            if jkt.as_ref() != Some(bound) {
                return Err(OAuthErr::invalid_grant("failed jkt verification"));
            }
        }
        let scope = match requested_scope {
            Some(s) if !s.is_subset(&rec.scope) => {
                return Err(OAuthErr::invalid_scope(
                    "refresh token missing requested scope",
                ))
            }
            Some(s) => s,
            None => rec.scope.clone(),
        };
        if !requested.iter().all(|r| rec.resources.contains(r)) {
            return Err(OAuthErr::invalid_target(
                "resource was not part of the grant",
            ));
        }
        let aud = if requested.is_empty() {
            rec.resources.clone()
        } else {
            requested
        };
        let refresh = if self.config.rotate_refresh_tokens {
            if let Some(r) = inner.refresh.get_mut(token) {
                r.consumed = true;
            }
            Shared::new_refresh(
                inner,
                RefreshRecord {
                    iat: t,
                    ..rec.clone()
                },
            )
        } else {
            token.to_owned()
        };
        let access = self.issue_access(
            inner,
            NewAccess {
                grant_id: rec.grant_id,
                sub: &rec.sub,
                client_id: &client.client_id,
                scope: &scope,
                aud,
                jkt: jkt.clone(),
                act: None,
                ttl: self.ttl(),
            },
        );
        let mut m = token_response(access, &jkt, &scope);
        m.insert("refresh_token".into(), json!(refresh));
        bump(&self.counters.refresh_token);
        Ok(Value::Object(m))
    }

    fn device_code(&self, inner: &mut Inner, req: TokenRequest<'_>) -> Answer {
        let (client, params, jkt) = (req.client, req.params, req.jkt);
        let code = params.required("device_code")?;
        let requested = resources(params)?;
        let interval = self.config.device_interval;
        let Some(rec) = inner.devices.get_mut(code) else {
            return Err(OAuthErr::invalid_grant("grant request is invalid"));
        };
        if rec.client_id != client.client_id {
            return Err(OAuthErr::invalid_grant("client mismatch"));
        }
        if rec.exp <= now() {
            return Err(OAuthErr::new(
                StatusCode::BAD_REQUEST,
                "expired_token",
                "device code is expired",
            ));
        }
        let too_fast = rec.last_poll.is_some_and(|p| p.elapsed() < interval);
        rec.last_poll = Some(Instant::now());
        if too_fast && rec.status != DeviceStatus::Consumed {
            return Err(OAuthErr::new(
                StatusCode::BAD_REQUEST,
                "slow_down",
                "you are polling too quickly",
            ));
        }
        match rec.status {
            DeviceStatus::Pending => Err(OAuthErr::new(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                "authorization request is still pending as the end-user hasn't yet completed the user interaction steps",
            )),
            DeviceStatus::Denied => Err(OAuthErr::new(
                StatusCode::BAD_REQUEST,
                "access_denied",
                "end-user denied the authorization request",
            )),
            DeviceStatus::Consumed => Err(OAuthErr::invalid_grant("device code already consumed")),
            DeviceStatus::Approved => {
                rec.status = DeviceStatus::Consumed;
                let scope = rec.scope.clone();
                let granted = rec.resources.clone();
                let grant_id = Shared::new_grant(inner);
                let answer = self.user_grant(inner, grant_id, client, &scope, granted, requested, jkt)?;
                bump(&self.counters.device_code);
                Ok(answer)
            }
        }
    }
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `ABCD-EFGH` from consonants that avoid ambiguity (like oidc-provider's default charset).
pub(super) fn user_code() -> String {
    const CHARSET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut out = String::with_capacity(9);
    for (i, b) in rand::random::<[u8; 8]>().iter().enumerate() {
        if i == 4 {
            out.push('-');
        }
        let idx = usize::from(*b) % CHARSET.len();
        out.push(char::from(CHARSET.get(idx).copied().unwrap_or(b'B')));
    }
    out
}

pub(super) fn normalize_user_code(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// `http://<Host header><path>`, an alternative spelling of an endpoint URL.
pub(crate) fn host_url(headers: &HeaderMap, path: &str) -> Option<Url> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
    Url::parse(&format!("http://{host}{path}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_look_right() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert_eq!(c.as_bytes().get(4), Some(&b'-'));
        assert_eq!(normalize_user_code(&c.to_lowercase()), c.replace('-', ""));
    }

    #[test]
    fn verifier_format() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&format!("{}!", "a".repeat(43))));
    }
}
