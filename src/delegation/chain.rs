//! Reading a token's delegation chain (the nested `act` claims of RFC 8693 §4.1), unverified.

use serde_json::{Map, Value};

use crate::token::{AccessToken, Scope};

use super::*;

/// The claims of a JWT access token, decoded WITHOUT verifying its signature, issuer, audience
/// or expiry. Fine for display, audit and tests; never for an authorization decision.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedClaims(Map<String, Value>);

impl UnverifiedClaims {
    /// A claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// Who a token is for and who acts for them (RFC 8693 §4.1 `act`, §4.4 `may_act`), read from
/// [`UnverifiedClaims`]: nothing here is verified.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DelegationChain {
    /// `sub`: the party the token is about (the original subject).
    pub sub: Option<String>,
    /// The `act` chain, outermost first: `actors[0]` is the current actor, each next one the
    /// actor before it. An actor without `sub` is named by its `client_id`, else `""`.
    pub actors: Vec<String>,
    /// `may_act`, as sent.
    pub may_act: Option<Value>,
    /// `scope`.
    pub scope: Scope,
    /// `aud` (a single string becomes one element).
    pub aud: Vec<String>,
    /// `exp` (seconds since the epoch).
    pub exp: Option<i64>,
    /// `cnf.jkt`: the thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
    /// `client_id` (RFC 9068).
    pub client_id: Option<String>,
    /// Every claim.
    pub claims: UnverifiedClaims,
}

/// Decode a JWT access token's payload WITHOUT verification and read its delegation chain.
/// `None` when the token is not a JWT with a JSON object payload, or is over 64 KiB.
pub fn delegation_chain(token: &AccessToken) -> Option<DelegationChain> {
    let claims = crate::jwt::unverified_claims(token.secret()).ok()?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut actors = Vec::new();
    let mut act = claims.get("act");
    while let Some(Value::Object(a)) = act {
        if actors.len() >= MAX_ACT_DEPTH {
            break;
        }
        actors.push(
            text(a.get("sub"))
                .or_else(|| text(a.get("client_id")))
                .unwrap_or_default(),
        );
        act = a.get("act");
    }
    let aud = crate::jwt::audiences(&claims);
    Some(DelegationChain {
        sub: text(claims.get("sub")),
        actors,
        may_act: claims.get("may_act").cloned(),
        scope: claims
            .get("scope")
            .and_then(Value::as_str)
            .map(Scope::parse)
            .unwrap_or_default(),
        aud,
        exp: claims.get("exp").and_then(Value::as_i64),
        jkt: text(claims.get("cnf").and_then(|c| c.get("jkt"))),
        client_id: text(claims.get("client_id")),
        claims: UnverifiedClaims(claims),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(claims: &Value) -> AccessToken {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        AccessToken::new(format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"none"}"#),
            e.encode(claims.to_string())
        ))
    }

    #[test]
    fn delegation_chain_reads_nested_act() {
        let t = jwt(&serde_json::json!({
            "sub": "user", "scope": "b a", "aud": "https://api", "exp": 10,
            "cnf": {"jkt": "abc"}, "client_id": "parent",
            "act": {"sub": "grandchild", "act": {"client_id": "child"}},
            "may_act": {"sub": "x"},
        }));
        let c = delegation_chain(&t).expect("chain");
        assert_eq!(c.sub.as_deref(), Some("user"));
        assert_eq!(c.actors, ["grandchild", "child"]);
        assert_eq!(c.scope, Scope::parse("a b"));
        assert_eq!(c.aud, ["https://api"]);
        assert_eq!(c.exp, Some(10));
        assert_eq!(c.jkt.as_deref(), Some("abc"));
        assert_eq!(c.client_id.as_deref(), Some("parent"));
        assert_eq!(c.may_act, Some(serde_json::json!({"sub": "x"})));
        assert_eq!(c.claims.get("sub"), Some(&Value::from("user")));
    }

    #[test]
    fn delegation_chain_rejects_non_jwt() {
        assert!(delegation_chain(&AccessToken::new("opaque")).is_none());
        assert!(delegation_chain(&AccessToken::new("a.b.c.d")).is_none());
        assert!(delegation_chain(&AccessToken::new("a.!!.c")).is_none());
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert!(delegation_chain(&AccessToken::new(format!("a.{}.c", e.encode("[1]")))).is_none());
        let huge = format!(
            "a.{}.c",
            e.encode(format!(r#"{{"sub":"{}"}}"#, "x".repeat(64 * 1024)))
        );
        assert!(delegation_chain(&AccessToken::new(huge)).is_none());
    }
}
