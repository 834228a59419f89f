#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::error::{Error, VerificationError};
fn b64(data: impl AsRef<[u8]>) -> String {
    crate::jose::jwk::b64(data.as_ref())
}
use crate::jose::{sign_compact, verify_jwt, RingSigner, Signer, Validation};

/// RFC 7515 §A.1–A.3 payload (with its CR LF line breaks), base64url.
const RFC7515_PAYLOAD: &str =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

/// RFC 7515 §A.2.1 RSA key (public part; the private members below sign PS256 tests).
const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const RSA_D: &str = "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
const RSA_P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
const RSA_Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
const RSA_DP: &str = "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0";
const RSA_DQ: &str = "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU";
const RSA_QI: &str = "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U";
const RS256_SIG: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/// RFC 7515 §A.3.1 EC P-256 key and §A.3.1 signature.
const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const ES256_SIG: &str =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/// RFC 8037 §A.2 public key and §A.4 JWS.
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const ED_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/// RFC 7515 §A.1 HS256 example (the `typ` + `alg` header with CR LF).
const HS256_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn rsa_key() -> VerifyingJwk {
    VerifyingJwk::from_json(&json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"})).unwrap()
}

fn ec_key() -> VerifyingJwk {
    VerifyingJwk::from_json(&json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y})).unwrap()
}

fn ed_key() -> VerifyingJwk {
    VerifyingJwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X})).unwrap()
}

fn refused(r: crate::error::Result<Vec<u8>>) -> VerificationError {
    match r {
        Err(Error::Verification(v)) => v,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

fn rfc7515_payload() -> Vec<u8> {
    crate::jose::b64_decode(RFC7515_PAYLOAD).unwrap()
}

#[test]
fn jwks_rfc7515_a3_es256_vector_verifies() {
    let jws = format!("eyJhbGciOiJFUzI1NiJ9.{RFC7515_PAYLOAD}.{ES256_SIG}");
    let payload = verify_compact(&jws, &ec_key(), &JwsAlgorithm::ALL).unwrap();
    assert_eq!(payload, rfc7515_payload());
    assert!(payload.starts_with(b"{\"iss\":\"joe\",\r\n"));
    // One changed payload byte and the signature no longer holds.
    let tampered = jws.replacen("eyJpc3MiOiJqb2Ui", "eyJpc3MiOiJqb2Uj", 1);
    assert_eq!(
        refused(verify_compact(&tampered, &ec_key(), &JwsAlgorithm::ALL)),
        VerificationError::BadSignature
    );
    // Not allowed by the caller: refused before the key is touched.
    assert_eq!(
        refused(verify_compact(&jws, &ec_key(), &[JwsAlgorithm::Rs256])),
        VerificationError::AlgorithmNotAllowed("ES256".into())
    );
}

#[test]
fn jwks_rfc7515_a2_rs256_vector_verifies() {
    let jws = format!("eyJhbGciOiJSUzI1NiJ9.{RFC7515_PAYLOAD}.{RS256_SIG}");
    assert_eq!(
        verify_compact(&jws, &rsa_key(), &JwsAlgorithm::ALL).unwrap(),
        rfc7515_payload()
    );
    // The same signature under a PS256 header is not a PSS signature.
    let ps = format!(
        "{}.{RFC7515_PAYLOAD}.{RS256_SIG}",
        b64(br#"{"alg":"PS256"}"#)
    );
    assert_eq!(
        refused(verify_compact(&ps, &rsa_key(), &JwsAlgorithm::ALL)),
        VerificationError::BadSignature
    );
    // An RSA key cannot check an ES256 token, nor an EC key an RS256 one.
    assert!(matches!(
        refused(verify_compact(&jws, &ec_key(), &JwsAlgorithm::ALL)),
        VerificationError::KeyMismatch(_)
    ));
}

#[test]
fn jwks_rfc8037_a4_ed25519_vector_verifies() {
    let payload = verify_compact(ED_JWS, &ed_key(), &JwsAlgorithm::ALL).unwrap();
    assert_eq!(payload, b"Example of Ed25519 signing");
    let other = format!("{}A", &ED_JWS[..ED_JWS.len() - 1]);
    assert!(verify_compact(&other, &ed_key(), &JwsAlgorithm::ALL).is_err());
    assert!(matches!(
        refused(verify_compact(ED_JWS, &ec_key(), &JwsAlgorithm::ALL)),
        VerificationError::KeyMismatch(_)
    ));
}

#[test]
fn jwks_ps256_signed_with_rfc7515_rsa_key_verifies() {
    let dec = |s: &str| crate::jose::b64_decode(s).unwrap();
    let (n, e) = (dec(RSA_N), dec("AQAB"));
    let components = ring::rsa::KeyPairComponents {
        public_key: ring::rsa::PublicKeyComponents { n: &n, e: &e },
        d: dec(RSA_D),
        p: dec(RSA_P),
        q: dec(RSA_Q),
        dP: dec(RSA_DP),
        dQ: dec(RSA_DQ),
        qInv: dec(RSA_QI),
    };
    let pair = ring::signature::RsaKeyPair::from_components(&components).unwrap();
    let input = format!("{}.{}", b64(br#"{"alg":"PS256"}"#), b64(br#"{"a":1}"#));
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PSS_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let jws = format!("{input}.{}", b64(&sig));
    assert_eq!(
        verify_compact(&jws, &rsa_key(), &JwsAlgorithm::ALL).unwrap(),
        br#"{"a":1}"#
    );
    // A JWK that says it is for RS256 does not verify PS256.
    let rs_only =
        VerifyingJwk::from_json(&json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "alg": "RS256"}))
            .unwrap();
    assert!(matches!(
        refused(verify_compact(&jws, &rs_only, &JwsAlgorithm::ALL)),
        VerificationError::KeyMismatch(_)
    ));
}

#[test]
fn jwks_none_and_hmac_are_never_allowed() {
    // RFC 7515 §A.1 (HS256) and §A.5 (unsecured JWS).
    assert_eq!(
        refused(verify_compact(HS256_JWS, &ec_key(), &JwsAlgorithm::ALL)),
        VerificationError::AlgorithmNotAllowed("HS256".into())
    );
    let unsecured = format!("eyJhbGciOiJub25lIn0.{RFC7515_PAYLOAD}.");
    assert_eq!(
        refused(verify_compact(&unsecured, &ec_key(), &JwsAlgorithm::ALL)),
        VerificationError::AlgorithmNotAllowed("none".into())
    );
    for alg in ["HS384", "HS512", "None", "ES384", "RS512", ""] {
        let jws = format!(
            "{}.{RFC7515_PAYLOAD}.AAAA",
            b64(json!({"alg": alg}).to_string())
        );
        assert!(
            matches!(
                refused(verify_compact(&jws, &rsa_key(), &JwsAlgorithm::ALL)),
                VerificationError::AlgorithmNotAllowed(_)
            ),
            "{alg}"
        );
    }
}

#[test]
fn jwks_malformed_tokens_are_typed_errors() {
    let ok_header = b64(br#"{"alg":"ES256"}"#);
    let cases = [
        String::new(),
        "a.b".into(),
        "a.b.c.d".into(),
        format!("!!.{RFC7515_PAYLOAD}.{ES256_SIG}"),
        format!("{}.{RFC7515_PAYLOAD}.{ES256_SIG}", b64("[1]")),
        format!("{}.{RFC7515_PAYLOAD}.{ES256_SIG}", b64("{}")),
        format!("{}.{RFC7515_PAYLOAD}.{ES256_SIG}", b64(r#"{"alg":5}"#)),
        format!("{ok_header}.%%.{ES256_SIG}"),
        format!("{ok_header}.{RFC7515_PAYLOAD}.%%"),
        format!(
            "{}.{RFC7515_PAYLOAD}.{ES256_SIG}",
            b64(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#)
        ),
        format!(
            "{}.{RFC7515_PAYLOAD}.{ES256_SIG}",
            b64(r#"{"alg":"ES256","kid":7}"#)
        ),
        format!("{ok_header}.{}.{ES256_SIG}", "A".repeat(MAX_JWS_LEN)),
    ];
    for token in &cases {
        assert!(
            matches!(
                refused(verify_compact(token, &ec_key(), &JwsAlgorithm::ALL)),
                VerificationError::Malformed(_)
            ),
            "{}",
            &token[..token.len().min(80)]
        );
    }
    // An empty signature is no signature.
    assert_eq!(
        refused(verify_compact(
            &format!("{ok_header}.{RFC7515_PAYLOAD}."),
            &ec_key(),
            &JwsAlgorithm::ALL
        )),
        VerificationError::BadSignature
    );
}

#[test]
fn jwks_unusable_jwks_members_refused() {
    let bad = [
        json!({"kty": "RSA", "n": b64([0xc5; 128]), "e": "AQAB"}), // 1024 bits
        json!({"kty": "RSA", "n": RSA_N}),
        json!({"kty": "RSA", "n": RSA_N, "e": ""}),
        json!({"kty": "EC", "crv": "P-384", "x": EC_X, "y": EC_Y}),
        json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": b64([7; 32])}), // off the curve
        json!({"kty": "EC", "crv": "P-256", "x": EC_X}),
        json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": EC_Y}),
        json!({"kty": "OKP", "crv": "X25519", "x": ED_X}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "use": "enc"}),
        json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "key_ops": ["sign"]}),
        json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": 3}),
        json!({"crv": "P-256", "x": EC_X, "y": EC_Y}),
        json!(["EC"]),
    ];
    for jwk in &bad {
        assert!(VerifyingJwk::from_json(jwk).is_err(), "{jwk}");
    }
    // Private members are ignored, `use: sig` and `key_ops: [verify]` accepted.
    let k = VerifyingJwk::from_json(&json!({
        "kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "d": "secret", "use": "sig",
        "key_ops": ["verify"], "kid": "k1", "alg": "ES256"
    }))
    .unwrap();
    assert_eq!(
        (k.kid(), k.alg(), k.kty()),
        (Some("k1"), Some("ES256"), "EC")
    );
    assert!(!format!("{k:?}").contains("secret"));
}

/// A JWT signed by a fresh ES256 key with `kid`, and that key as a JWK.
fn es256_jwt(kid: &str, claims: &serde_json::Value) -> (String, VerifyingJwk) {
    let signer = RingSigner::generate().unwrap();
    let header = b64(json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"}).to_string());
    let jwt = sign_compact(&header, claims.to_string().as_bytes(), &signer).unwrap();
    let mut jwk: serde_json::Value = serde_json::from_str(&signer.public_jwk().to_json()).unwrap();
    jwk["kid"] = kid.into();
    (jwt, VerifyingJwk::from_json(&jwk).unwrap())
}

fn now() -> i64 {
    crate::clock::unix_secs(std::time::SystemTime::now())
}

fn claim_error(token: &str, keys: &[VerifyingJwk], v: &Validation) -> VerificationError {
    match verify_jwt(token, keys, v) {
        Err(Error::Verification(e)) => e,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

#[test]
fn jwks_claims_issuer_window_and_audience_checked() {
    let iss = "https://as.example";
    let t = now();
    let v = Validation::new(iss);
    let (good, key) = es256_jwt("k1", &json!({"iss": iss, "exp": t + 60, "aud": ["a", "b"]}));
    let keys = [key];
    let jwt = verify_jwt(&good, &keys, &v).unwrap();
    assert_eq!(jwt.kid(), Some("k1"));
    assert_eq!(jwt.alg(), Some("ES256"));
    assert_eq!(jwt.claim("iss"), Some(&json!(iss)));
    assert!(verify_jwt(&good, &keys, &v.clone().audience("b")).is_ok());
    assert_eq!(
        claim_error(&good, &keys, &v.clone().audience("c")),
        VerificationError::AudienceMismatch("c".into())
    );
    assert_eq!(
        claim_error(&good, &keys, &Validation::new("https://other.example")),
        VerificationError::IssuerMismatch {
            expected: "https://other.example".into(),
            found: Some(iss.into())
        }
    );
    let cases = [
        (
            json!({"iss": iss, "exp": t - 120}),
            VerificationError::Expired,
        ),
        (
            json!({"iss": iss, "exp": t + 60, "nbf": t + 120}),
            VerificationError::NotYetValid,
        ),
        (
            json!({"iss": iss, "exp": t + 60, "iat": t + 120}),
            VerificationError::NotYetValid,
        ),
        (
            json!({"exp": t + 60}),
            VerificationError::IssuerMismatch {
                expected: iss.into(),
                found: None,
            },
        ),
        (
            json!({"iss": iss}),
            VerificationError::InvalidClaim("`exp` is missing".into()),
        ),
        (
            json!({"iss": iss, "exp": "soon"}),
            VerificationError::InvalidClaim("`exp` is not a number".into()),
        ),
        (
            json!({"iss": iss, "exp": t + 60, "aud": 5}),
            VerificationError::InvalidClaim("`aud` is not a string or an array of strings".into()),
        ),
    ];
    for (claims, want) in cases {
        let (jwt, key) = es256_jwt("k", &claims);
        assert_eq!(claim_error(&jwt, &[key], &v), want, "{claims}");
    }
    // Within the leeway both ways: expired 30 s ago and valid from 30 s from now is accepted
    // with the default 60 s, refused with none.
    let (skewed, key) = es256_jwt("k", &json!({"iss": iss, "exp": t - 30, "nbf": t + 30}));
    let keys = [key];
    assert!(verify_jwt(&skewed, &keys, &v).is_ok());
    assert_eq!(
        claim_error(&skewed, &keys, &v.clone().leeway(std::time::Duration::ZERO)),
        VerificationError::Expired
    );
}

#[test]
fn jwks_key_selection_by_kid_and_algorithm() {
    let iss = "https://as.example";
    let claims = json!({"iss": iss, "exp": now() + 60});
    let (jwt, key) = es256_jwt("k1", &claims);
    let (_, other) = es256_jwt("k2", &claims);
    let v = Validation::new(iss);
    // Found by kid among several keys.
    assert!(verify_jwt(&jwt, &[other.clone(), key.clone(), rsa_key()], &v).is_ok());
    // Unknown kid.
    assert_eq!(
        claim_error(&jwt, std::slice::from_ref(&other), &v),
        VerificationError::UnknownKey(Some("k1".into()))
    );
    // Same kid, other key: the signature fails.
    let (_, impostor) = es256_jwt("k1", &claims);
    assert_eq!(
        claim_error(&jwt, &[impostor], &v),
        VerificationError::BadSignature
    );
    // The kid names an RSA key: mismatch, not a search through other keys.
    let rsa_k1 =
        VerifyingJwk::from_json(&json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "k1"}))
            .unwrap();
    assert!(matches!(
        claim_error(&jwt, &[rsa_k1, other.clone()], &v),
        VerificationError::KeyMismatch(_)
    ));
    // Without kid: any key that fits the algorithm.
    let signer = RingSigner::generate().unwrap();
    let no_kid = sign_compact(
        &b64(br#"{"alg":"ES256"}"#),
        claims.to_string().as_bytes(),
        &signer,
    )
    .unwrap();
    let jwk: serde_json::Value = serde_json::from_str(&signer.public_jwk().to_json()).unwrap();
    let signer_key = VerifyingJwk::from_json(&jwk).unwrap();
    assert!(verify_jwt(&no_kid, &[other.clone(), signer_key], &v).is_ok());
    assert_eq!(
        claim_error(&no_kid, &[rsa_key(), ed_key()], &v),
        VerificationError::UnknownKey(None)
    );
    // A payload that is not a JSON object, however well signed.
    let arr = sign_compact(&b64(br#"{"alg":"ES256"}"#), b"[1]", &signer).unwrap();
    assert!(matches!(
        claim_error(&arr, &[VerifyingJwk::from_json(&jwk).unwrap()], &v),
        VerificationError::Malformed(_)
    ));
    // An algorithm taken off the list is refused even with the right key.
    assert_eq!(
        claim_error(&jwt, &[key], &v.clone().algorithms([JwsAlgorithm::EdDsa])),
        VerificationError::AlgorithmNotAllowed("ES256".into())
    );
}
