//! Client authentication (RFC 6749 §2.3, RFC 7523 §2.2).

use std::borrow::Cow;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::config::{TestClient, TestClientAuth};
use super::http_util::{form_decode, OAuthErr, Params};
use super::jose::{parse_public_jwk, Jws};
use super::state::{now, Inner, Shared};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Authenticate the client of a request to `endpoint` (its full URL).
pub(crate) fn authenticate<'s>(
    shared: &'s Shared,
    inner: &mut Inner,
    headers: &HeaderMap,
    params: &Params,
    endpoint: &str,
) -> Result<Cow<'s, TestClient>, OAuthErr> {
    let basic = basic_credentials(headers)?;
    let secret_post = params.has("client_secret");
    let assertion = params.has("client_assertion") || params.has("client_assertion_type");
    let mechanisms =
        usize::from(basic.is_some()) + usize::from(secret_post) + usize::from(assertion);
    if mechanisms > 1 {
        return Err(OAuthErr::invalid_request(
            "client authentication must only be provided using one mechanism",
        ));
    }
    let body_id = params.one("client_id")?;

    if let Some((id, secret)) = basic {
        if body_id.is_some_and(|b| b != id) {
            return Err(OAuthErr::invalid_request(
                "mismatch between client_id in the body and in the Authorization header",
            ));
        }
        let client = shared
            .client(&id)
            .ok_or_else(|| basic_fail("client not found"))?;
        return match &client.auth {
            TestClientAuth::SecretBasic(s) if ct_eq(s, &secret) => Ok(client),
            TestClientAuth::SecretBasic(_) => Err(basic_fail("invalid secret provided")),
            _ => Err(basic_fail(
                "the registered client authentication method does not match",
            )),
        };
    }

    let id = if assertion {
        None
    } else {
        Some(body_id.ok_or_else(|| {
            OAuthErr::invalid_request("no client authentication mechanism provided")
        })?)
    };

    if secret_post {
        let id = id.unwrap_or_default();
        let client = shared
            .client(id)
            .ok_or_else(|| OAuthErr::invalid_client("client not found"))?;
        let secret = params.one("client_secret")?.unwrap_or_default();
        return match &client.auth {
            TestClientAuth::SecretPost(s) if ct_eq(s, secret) => Ok(client),
            TestClientAuth::SecretPost(_) => {
                Err(OAuthErr::invalid_client("invalid secret provided"))
            }
            _ => Err(OAuthErr::invalid_client(
                "the registered client authentication method does not match",
            )),
        };
    }

    if assertion {
        return private_key_jwt(shared, inner, params, body_id, endpoint);
    }

    let id = id.unwrap_or_default();
    let client = shared
        .client(id)
        .ok_or_else(|| OAuthErr::invalid_client("client not found"))?;
    match client.auth {
        TestClientAuth::None => Ok(client),
        _ => Err(OAuthErr::invalid_client(
            "client authentication is required for this client",
        )),
    }
}

fn basic_fail(d: &str) -> OAuthErr {
    let mut e = OAuthErr::invalid_client(d);
    e.basic_challenge = true;
    e
}

/// Constant-time-ish string comparison.
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `Authorization: Basic` credentials, each form-urldecoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthErr> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthErr::invalid_request(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| OAuthErr::invalid_request("malformed Authorization header"))?;
    let Some((scheme, rest)) = value.trim().split_once(' ') else {
        return Err(OAuthErr::invalid_request("malformed Authorization header"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthErr::invalid_request(
            "only the Basic scheme is accepted for client authentication",
        ));
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| basic_fail("invalid Basic credentials"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| basic_fail("invalid Basic credentials"))?;
    let id = form_decode(id).ok_or_else(|| basic_fail("client_id is not form-urlencoded"))?;
    let secret =
        form_decode(secret).ok_or_else(|| basic_fail("client_secret is not form-urlencoded"))?;
    if id.is_empty() {
        return Err(basic_fail("client_id missing"));
    }
    Ok(Some((id, secret)))
}

fn private_key_jwt<'s>(
    shared: &'s Shared,
    inner: &mut Inner,
    params: &Params,
    body_id: Option<&str>,
    endpoint: &str,
) -> Result<Cow<'s, TestClient>, OAuthErr> {
    let ty = params.required("client_assertion_type")?;
    if ty == crate::grant::JWT_SPIFFE_ASSERTION {
        return shared.spiffe_client(params, body_id);
    }
    if ty != JWT_BEARER {
        return Err(OAuthErr::invalid_request(
            "unsupported client_assertion_type",
        ));
    }
    let assertion = params.required("client_assertion")?;
    let jws = Jws::parse(assertion).map_err(OAuthErr::invalid_client)?;
    let iss = jws
        .str_claim("iss")
        .ok_or_else(|| OAuthErr::invalid_client("client_assertion has no iss"))?;
    if body_id.is_some_and(|b| b != iss) {
        return Err(OAuthErr::invalid_request(
            "subject of client_assertion must be the same as client_id",
        ));
    }
    let client = shared
        .client(iss)
        .ok_or_else(|| OAuthErr::invalid_client("client not found"))?;
    let TestClientAuth::PrivateKeyJwt(jwk) = &client.auth else {
        return Err(OAuthErr::invalid_client(
            "the registered client authentication method does not match",
        ));
    };
    let key = parse_public_jwk(jwk)
        .map_err(|_| OAuthErr::invalid_client("the registered client key is unusable"))?;
    if jws.alg() != Some("ES256") {
        return Err(OAuthErr::invalid_client(
            "client_assertion alg must be ES256",
        ));
    }
    if !jws.verify(&key.key) {
        return Err(OAuthErr::invalid_client(
            "client_assertion signature invalid",
        ));
    }
    if jws.str_claim("sub") != Some(iss) {
        return Err(OAuthErr::invalid_client(
            "client_assertion sub must equal iss",
        ));
    }
    let accepted =
        [shared.issuer.as_str(), endpoint, &shared.endpoint("/token")].map(str::to_owned);
    let aud_ok = match jws.claims.get("aud") {
        Some(Value::String(a)) => accepted.contains(a),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|a| accepted.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(OAuthErr::invalid_client(
            "client_assertion aud must be the issuer or the endpoint",
        ));
    }
    let t = now();
    let exp = jws
        .num_claim("exp")
        .ok_or_else(|| OAuthErr::invalid_client("client_assertion has no exp"))?;
    if exp <= t {
        return Err(OAuthErr::invalid_client("client_assertion is expired"));
    }
    if jws.num_claim("nbf").is_some_and(|nbf| nbf > t + 5) {
        return Err(OAuthErr::invalid_client(
            "client_assertion is not yet valid",
        ));
    }
    let jti = jws
        .str_claim("jti")
        .filter(|j| !j.is_empty())
        .ok_or_else(|| OAuthErr::invalid_client("client_assertion has no jti"))?;
    if !inner
        .assertion_replay
        .insert(format!("{iss}:{jti}"), exp, t)
    {
        return Err(OAuthErr::invalid_client("client_assertion jti replayed"));
    }
    Ok(client)
}
