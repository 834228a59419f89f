#![allow(clippy::unwrap_used)]
use super::*;
use base64::Engine as _;
use serde_json::json;

use crate::jose::{sign_compact, verify_jwt, RingSigner, Signer, VerifyingJwk};

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
    let c = unverified_delegation_chain(&t).expect("chain");
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
    assert!(unverified_delegation_chain(&AccessToken::new("opaque")).is_none());
    assert!(unverified_delegation_chain(&AccessToken::new("a.b.c.d")).is_none());
    assert!(unverified_delegation_chain(&AccessToken::new("a.!!.c")).is_none());
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert!(
        unverified_delegation_chain(&AccessToken::new(format!("a.{}.c", e.encode("[1]"))))
            .is_none()
    );
    let huge = format!(
        "a.{}.c",
        e.encode(format!(r#"{{"sub":"{}"}}"#, "x".repeat(64 * 1024)))
    );
    assert!(unverified_delegation_chain(&AccessToken::new(huge)).is_none());
}

/// `claims` signed by a fresh ES256 key, verified with that key.
fn verified(claims: &Value) -> Result<VerifiedChain> {
    let signer = RingSigner::generate().unwrap();
    let header = crate::jose::b64(br#"{"alg":"ES256","kid":"k"}"#);
    let token = sign_compact(&header, claims.to_string().as_bytes(), &signer).unwrap();
    let mut jwk: Value = serde_json::from_str(&signer.public_jwk().to_json()).unwrap();
    jwk["kid"] = "k".into();
    let keys = [VerifyingJwk::from_json(&jwk).unwrap()];
    VerifiedChain::from_verified(verify_jwt(&token, &keys, &Validation::new("https://as"))?)
}

fn exp() -> i64 {
    crate::clock::unix_secs(std::time::SystemTime::now()) + 60
}

#[test]
fn verified_chain_reads_nested_act_outermost_first() {
    let c = verified(&json!({
        "iss": "https://as", "exp": exp(), "sub": "user", "scope": "b a", "aud": ["x", "y"],
        "cnf": {"jkt": "abc"}, "client_id": "svc", "may_act": {"sub": "worker"},
        "act": {"sub": "sub-worker", "iss": "https://as",
                "act": {"client_id": "worker"}},
    }))
    .unwrap();
    assert_eq!(c.issuer, "https://as");
    assert_eq!(c.sub.as_deref(), Some("user"));
    assert_eq!(c.depth(), 2);
    assert_eq!(c.actor_names(), ["sub-worker", "worker"]);
    assert_eq!(
        (c.actors[0].depth, c.actors[0].iss.as_deref()),
        (1, Some("https://as"))
    );
    assert_eq!(
        (c.actors[1].depth, c.actors[1].client_id.as_deref()),
        (2, Some("worker"))
    );
    assert_eq!(c.scope, Scope::parse("a b"));
    assert_eq!(c.aud, ["x", "y"]);
    assert_eq!(c.jkt.as_deref(), Some("abc"));
    assert_eq!(c.client_id.as_deref(), Some("svc"));
    assert!(c.may_act_names("worker"));
    assert!(!c.may_act_names("sub-worker"));
    assert_eq!(c.jwt.kid(), Some("k"));
    // No act: depth 0, nobody may act.
    let plain = verified(&json!({"iss": "https://as", "exp": exp(), "sub": "u"})).unwrap();
    assert_eq!((plain.depth(), plain.may_act_names("u")), (0, false));
}

#[test]
fn verified_chain_refuses_malformed_claims() {
    let mut deep = json!({"sub": "last"});
    for i in 0..MAX_ACT_DEPTH {
        deep = json!({"sub": format!("a{i}"), "act": deep});
    }
    let cases = [
        json!({"act": "worker"}),
        json!({"act": {"sub": 5}}),
        json!({"act": {"sub": "a", "act": [1]}}),
        json!({"may_act": "worker"}),
        json!({"scope": ["read"]}),
        json!({"sub": 1}),
        json!({"cnf": {"jkt": 1}}),
        json!({"cnf": "jkt"}),
        json!({"act": deep}),
    ];
    for extra in cases {
        let mut claims = json!({"iss": "https://as", "exp": exp()});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let err = verified(&claims).expect_err("malformed");
        assert!(
            matches!(err, Error::Verification(VerificationError::InvalidClaim(_))),
            "{extra}: {err:?}"
        );
    }
    // Exactly MAX_ACT_DEPTH actors is accepted.
    let mut ok = json!({"sub": "a0"});
    for i in 1..MAX_ACT_DEPTH {
        ok = json!({"sub": format!("a{i}"), "act": ok});
    }
    let c = verified(&json!({"iss": "https://as", "exp": exp(), "act": ok})).unwrap();
    assert_eq!(c.depth(), MAX_ACT_DEPTH);
}
