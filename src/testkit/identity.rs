//! Workload identity and enterprise-managed authorization at the embedded server: JWT bearer
//! grants (RFC 7523) from trusted issuers, SPIFFE JWT-SVID client assertions, and ID-JAGs issued
//! by token exchange when the server plays the enterprise identity provider.

use std::borrow::Cow;
use std::time::Duration;

use p256::ecdsa::SigningKey;
use serde_json::{json, Value};

use super::config::{TestClient, TestClientAuth};
use super::grants::{check_scope, resources, token_response, Answer, TokenRequest};
use super::http_util::{OAuthErr, Params};
use super::jose::{parse_public_jwk, public_jwk, random_token, sign_jwt, Jws};
use super::state::{bump, now, Inner, NewAccess, Shared};
use crate::Scope;

/// `typ` of an ID-JAG's header.
const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
pub(super) const ID_JAG_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A stand-in for a platform that issues workload identities (a Kubernetes API server, a SPIRE
/// server) or an enterprise single sign-on provider: an issuer identifier and an ES256 key.
/// Trust it at a [`TestServer`](super::TestServer) with
/// [`TestServerConfig::with_trusted_issuer`](super::TestServerConfig::with_trusted_issuer).
#[derive(Clone)]
pub struct TestIdentityIssuer {
    issuer: String,
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for TestIdentityIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIdentityIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TestIdentityIssuer {
    /// An issuer named `issuer` with a new random key.
    pub fn new(issuer: impl Into<String>) -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let kid = parse_public_jwk(&public_jwk(key.verifying_key()))
            .map(|k| k.thumbprint)
            .unwrap_or_else(|_| "identity".to_owned());
        TestIdentityIssuer {
            issuer: issuer.into(),
            key,
            kid,
        }
    }

    /// Its issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its public key as a JWK (with `kid`).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = public_jwk(self.key.verifying_key());
        jwk["kid"] = json!(self.kid);
        jwk
    }

    /// A signed JWT for `sub` with audience `aud`, valid for `ttl`: `iss`, `sub`, `aud`,
    /// `iat`, `exp`, a fresh `jti` (what a projected service-account token, a JWT-SVID or an ID
    /// token carries).
    pub fn mint(&self, sub: &str, aud: &str, ttl: Duration) -> String {
        let iat = now();
        self.mint_claims(json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "iat": iat,
            "exp": iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            "jti": random_token(),
        }))
    }

    /// Sign any `claims` (header `{"alg":"ES256","typ":"JWT","kid":...}`).
    pub fn mint_claims(&self, claims: Value) -> String {
        sign_jwt(
            &self.key,
            &json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}),
            &claims,
        )
    }
}

impl Shared {
    /// Verify a JWT signed by one of the trusted issuers: ES256, known issuer, valid signature,
    /// unexpired, already valid. `what` names it in errors.
    fn trusted_jwt(&self, token: &str, what: &str) -> Result<Jws, OAuthErr> {
        let bad = |d: String| OAuthErr::invalid_grant(d);
        let jws = Jws::parse(token).map_err(|e| bad(format!("{what}: {e}")))?;
        if jws.alg() != Some("ES256") {
            return Err(bad(format!("{what}: alg must be ES256")));
        }
        let iss = jws
            .str_claim("iss")
            .ok_or_else(|| bad(format!("{what} has no iss")))?;
        let own = (self.issuer.clone(), self.public_jwk());
        let (_, jwk) = self
            .config
            .trusted_issuers
            .iter()
            .chain(std::iter::once(&own))
            .find(|(i, _)| i == iss)
            .ok_or_else(|| bad(format!("{what}: issuer is not trusted")))?;
        let key = parse_public_jwk(jwk).map_err(|e| bad(format!("trusted key: {e}")))?;
        if !jws.verify(&key.key) {
            return Err(bad(format!("{what}: signature invalid")));
        }
        let t = now();
        let exp = jws
            .num_claim("exp")
            .ok_or_else(|| bad(format!("{what} has no exp")))?;
        if exp <= t {
            return Err(bad(format!("{what} is expired")));
        }
        if jws.num_claim("nbf").is_some_and(|nbf| nbf > t + 5) {
            return Err(bad(format!("{what} is not yet valid")));
        }
        if jws.str_claim("sub").is_none_or(str::is_empty) {
            return Err(bad(format!("{what} has no sub")));
        }
        Ok(jws)
    }

    /// Is this server (its issuer or token endpoint) among the JWT's audiences?
    fn addressed_to_me(&self, jws: &Jws) -> bool {
        let me = [self.issuer.clone(), self.endpoint("/token")];
        crate::jwt::audiences(&jws.claims)
            .iter()
            .any(|a| me.contains(a))
    }

    /// The JWT bearer grant (RFC 7523 §2.1). `client` is `None` when the request carried no
    /// client authentication (workload identity federation: the assertion's `sub` is the
    /// client).
    pub(super) fn jwt_bearer(
        &self,
        inner: &mut Inner,
        client: Option<&TestClient>,
        params: &Params,
        jkt: Option<String>,
    ) -> Answer {
        let assertion = params.required("assertion")?;
        let jws = self.trusted_jwt(assertion, "assertion")?;
        if !self.addressed_to_me(&jws) {
            return Err(OAuthErr::invalid_grant(
                "assertion aud must be the issuer or the token endpoint",
            ));
        }
        let sub = jws.str_claim("sub").unwrap_or_default().to_owned();
        let id_jag = jws.header.get("typ").and_then(Value::as_str) == Some(ID_JAG_TYP);
        let granted = jws.str_claim("scope").map(Scope::parse).unwrap_or_default();
        let workload;
        let client = match client {
            Some(c) => c,
            None if id_jag => {
                return Err(OAuthErr::invalid_client(
                    "an ID-JAG needs the client's authentication",
                ))
            }
            None => {
                workload = TestClient::new(sub.clone(), TestClientAuth::None);
                &workload
            }
        };
        let mut aud = resources(params)?;
        if id_jag {
            if jws.str_claim("client_id") != Some(client.client_id.as_str()) {
                return Err(OAuthErr::invalid_grant(
                    "the ID-JAG was issued to another client",
                ));
            }
            let resource = jws.str_claim("resource").unwrap_or_default();
            if aud.iter().any(|r| r != resource) {
                return Err(OAuthErr::invalid_target(
                    "the ID-JAG is for another resource",
                ));
            }
            aud = vec![resource.to_owned()];
        }
        let scope = match params.one("scope")? {
            Some(s) => Scope::parse(s),
            None => granted.clone(),
        };
        if id_jag && !scope.is_subset(&granted) {
            return Err(OAuthErr::invalid_scope(
                "requested scope exceeds the ID-JAG's scope",
            ));
        }
        check_scope(self, client, &scope)?;
        let grant_id = Shared::new_grant(inner);
        let access = self.issue_access(
            inner,
            NewAccess {
                grant_id,
                sub: &sub,
                client_id: &client.client_id,
                scope: &scope,
                aud,
                jkt: jkt.clone(),
                act: None,
                ttl: self.ttl(),
            },
        );
        bump(&self.counters.jwt_bearer);
        Ok(Value::Object(token_response(access, &jkt, &scope)))
    }

    /// Token exchange at the identity provider: an ID token of a trusted issuer (or this
    /// server) whose `aud` is the requesting client, for an ID-JAG.
    pub(super) fn issue_id_jag(&self, req: TokenRequest<'_>) -> Answer {
        let (client, params) = (req.client, req.params);
        if !self.config.issue_id_jags {
            return Err(OAuthErr::invalid_request(
                "unsupported requested_token_type",
            ));
        }
        if params.required("subject_token_type")? != ID_TOKEN_TYPE {
            return Err(OAuthErr::invalid_request(
                "an ID-JAG is issued for an ID token",
            ));
        }
        let subject = self.trusted_jwt(params.required("subject_token")?, "subject_token")?;
        if !crate::jwt::audiences(&subject.claims).contains(&client.client_id) {
            return Err(OAuthErr::invalid_grant(
                "the ID token was not issued to this client",
            ));
        }
        let audience = params.required("audience")?;
        let resource = params.required("resource")?;
        let scope = Scope::parse(params.one("scope")?.unwrap_or_default());
        check_scope(self, client, &scope)?;
        let iat = now();
        let ttl = self.ttl();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject.str_claim("sub").unwrap_or_default(),
            "aud": audience,
            "resource": resource,
            "client_id": client.client_id,
            "jti": random_token(),
            "iat": iat,
            "exp": iat.saturating_add(ttl),
        });
        if !scope.is_empty() {
            claims["scope"] = json!(scope.to_string());
        }
        let jag = self.sign(&json!({"typ": ID_JAG_TYP}), &claims);
        bump(&self.counters.id_jag);
        let mut m = serde_json::Map::new();
        m.insert("access_token".into(), json!(jag));
        m.insert("issued_token_type".into(), json!(ID_JAG_TYPE));
        m.insert("token_type".into(), json!("N_A"));
        m.insert("expires_in".into(), json!(ttl));
        if !scope.is_empty() {
            m.insert("scope".into(), json!(scope.to_string()));
        }
        Ok(Value::Object(m))
    }

    /// Client authentication with a SPIFFE JWT-SVID: from a trusted issuer, `sub` the client id,
    /// addressed to this server.
    pub(super) fn spiffe_client<'s>(
        &'s self,
        params: &Params,
        body_id: Option<&str>,
    ) -> Result<Cow<'s, TestClient>, OAuthErr> {
        let svid = params.required("client_assertion")?;
        let jws = self
            .trusted_jwt(svid, "client_assertion")
            .map_err(|e| OAuthErr::invalid_client(e.description))?;
        let sub = jws.str_claim("sub").unwrap_or_default();
        if !sub.starts_with("spiffe://") {
            return Err(OAuthErr::invalid_client("a JWT-SVID's sub is a SPIFFE ID"));
        }
        if body_id.is_some_and(|b| b != sub) {
            return Err(OAuthErr::invalid_client(
                "client_id must be the SVID's SPIFFE ID",
            ));
        }
        if !self.addressed_to_me(&jws) {
            return Err(OAuthErr::invalid_client(
                "client_assertion aud must be the issuer or the token endpoint",
            ));
        }
        let client = self
            .client(sub)
            .ok_or_else(|| OAuthErr::invalid_client("client not found"))?;
        match client.auth {
            TestClientAuth::SpiffeJwt => Ok(client),
            _ => Err(OAuthErr::invalid_client(
                "the registered client authentication method does not match",
            )),
        }
    }
}
