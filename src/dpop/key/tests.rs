//! Unit tests of `key`.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::dpop::{ath, normalize_htu};
use crate::jose::b64;
use p256::ecdsa::signature::Verifier as _;

/// RFC 9449 §4.1 / §5 example proof key (public only).
const RFC9449_JWK: &str = r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#;

fn url(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

/// Split a compact JWS and decode header and claims (without verifying).
fn decode(proof: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>) {
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "{proof}");
    let h = serde_json::from_slice(&b64_decode(parts[0]).unwrap()).unwrap();
    let c = serde_json::from_slice(&b64_decode(parts[1]).unwrap()).unwrap();
    (h, c, b64_decode(parts[2]).unwrap())
}

/// Verify `proof` with p256 against the key in its own header, and check that key is `key`'s.
fn verify_with_p256(proof: &str, key: &DpopKey) {
    let (h, _, sig) = decode(proof);
    let jwk = PublicJwk::from_json(&h["jwk"]).unwrap();
    assert_eq!(&jwk, key.public_jwk());
    let dot = proof.rfind('.').unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    jwk.verifying_key()
        .unwrap()
        .verify(&proof.as_bytes()[..dot], &sig)
        .unwrap();
}

/// Verify `proof` with josekit (OpenSSL) against the key in its header and return the
/// header and claims josekit decoded.
#[cfg(feature = "josekit")]
fn verify_with_josekit(proof: &str) -> (serde_json::Value, serde_json::Value) {
    let (h, _, _) = decode(proof);
    let jwk = josekit::jwk::Jwk::from_bytes(h["jwk"].to_string()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (payload, header) = josekit::jws::deserialize_compact(proof, &verifier).unwrap();
    let header = serde_json::Value::Object(header.claims_set().clone());
    (header, serde_json::from_slice(&payload).unwrap())
}

/// The full check of one proof: both verifiers, header and every claim.
fn check_proof(
    key: &DpopKey,
    proof: &str,
    htm: &str,
    htu: &str,
    iat: i64,
    nonce: Option<&str>,
    ath: Option<&str>,
) -> String {
    verify_with_p256(proof, key);
    #[cfg(feature = "josekit")]
    let (h, c) = verify_with_josekit(proof);
    #[cfg(not(feature = "josekit"))]
    let (h, c, _) = decode(proof);
    assert_eq!(h["typ"], "dpop+jwt");
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h.as_object().unwrap().len(), 3, "{h}");
    assert_eq!(PublicJwk::from_json(&h["jwk"]).unwrap(), *key.public_jwk());
    assert_eq!(h["jwk"].as_object().unwrap().len(), 4, "no private members");
    assert_eq!(c["htm"], htm);
    assert_eq!(c["htu"], htu);
    assert_eq!(c["iat"], iat);
    assert_eq!(c.get("nonce").and_then(|v| v.as_str()), nonce);
    assert_eq!(c.get("ath").and_then(|v| v.as_str()), ath);
    let expected = 4 + usize::from(nonce.is_some()) + usize::from(ath.is_some());
    assert_eq!(c.as_object().unwrap().len(), expected, "{c}");
    let jti = c["jti"].as_str().unwrap().to_owned();
    assert!(jti.len() >= 22, "{jti}");
    assert_eq!(b64_decode(&jti).unwrap().len(), 16);
    jti
}

/// htm, request URL, expected htu, nonce, ath.
type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

fn exercise(key: &DpopKey) {
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let a = ath(token);
    let cases: [Case<'_>; 4] = [
        (
            "POST",
            "https://server.example.com/token",
            "https://server.example.com/token",
            None,
            None,
        ),
        (
            "GET",
            "https://resource.example.org:443/protectedresource?q=1#f",
            "https://resource.example.org/protectedresource",
            Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
            Some(&a),
        ),
        (
            "DELETE",
            "http://[::1]:8080/x/y",
            "http://[::1]:8080/x/y",
            Some("n"),
            None,
        ),
        // A caller-supplied nonce with JSON metacharacters must stay valid JSON.
        (
            "PUT",
            "https://a.example/p%20q",
            "https://a.example/p%20q",
            Some("a\"b\\c\n"),
            Some(&a),
        ),
    ];
    for (htm, input, htu, nonce, ath) in cases {
        let proof = key
            .proof(htm, &url(input), 1_700_000_000, nonce, ath)
            .unwrap();
        check_proof(key, &proof, htm, htu, 1_700_000_000, nonce, ath);
    }
    let proof = key
        .proof("GET", &url("https://a.example/"), -5, None, None)
        .unwrap();
    check_proof(key, &proof, "GET", "https://a.example/", -5, None, None);
}

#[test]
fn dpop_proofs_verify_ring_signer() {
    let key = DpopKey::generate();
    assert!(format!("{key:?}").contains("ring"));
    exercise(&key);
}

#[test]
fn dpop_proofs_verify_p256_signer() {
    let key = DpopKey::generate().with_p256_signer().unwrap();
    assert!(format!("{key:?}").contains("p256"));
    exercise(&key);
}

#[test]
fn dpop_proofs_verify_after_pem_and_jwk_round_trip() {
    let key = DpopKey::generate();
    let pem = key.to_pkcs8_pem().unwrap();
    assert!(pem
        .expose_secret()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let from_pem = DpopKey::from_pkcs8_pem(pem.expose_secret()).unwrap();
    let jwk = key.to_jwk().unwrap();
    let from_jwk = DpopKey::from_jwk(jwk.expose_secret()).unwrap();
    for k in [&from_pem, &from_jwk, &from_jwk.with_p256_signer().unwrap()] {
        assert_eq!(k.thumbprint(), key.thumbprint());
        assert_eq!(k.public_jwk(), key.public_jwk());
        exercise(k);
    }
    // DER too, and the exports of an imported key are the same key.
    let der = pem::parse(pem.expose_secret());
    let from_der = DpopKey::from_pkcs8_der(&der).unwrap();
    assert_eq!(from_der.thumbprint(), key.thumbprint());
    assert_eq!(
        DpopKey::from_jwk(from_pem.to_jwk().unwrap().expose_secret())
            .unwrap()
            .thumbprint(),
        key.thumbprint()
    );
}

/// Minimal PEM body decoding for the DER test (no extra dependency).
mod pem {
    use base64::Engine as _;
    pub(super) fn parse(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}

#[test]
fn dpop_proof_for_request_sets_iat_ath_and_nonce() {
    let key = DpopKey::generate();
    let token = crate::token::AccessToken::new("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
    let u = url("https://resource.example.org/protectedresource?x=1#f");
    let proof = key
        .proof_for_request("GET", &u, Some(&token), Some("n-1"))
        .unwrap();
    verify_with_p256(&proof, &key);
    let (_, c, _) = decode(&proof);
    // RFC 9449 §7.1 example ath for this token.
    assert_eq!(c["ath"], "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
    assert_eq!(c["htu"], "https://resource.example.org/protectedresource");
    assert_eq!(c["nonce"], "n-1");
    let now = crate::clock::unix_secs(std::time::SystemTime::now());
    assert!((c["iat"].as_i64().unwrap() - now).abs() <= 2);
    let (_, c, _) = decode(&key.proof_for_request("POST", &u, None, None).unwrap());
    assert!(c.get("ath").is_none() && c.get("nonce").is_none());
}

#[test]
fn dpop_jti_unique_across_1000_proofs_with_every_bit_random() {
    let key = DpopKey::generate();
    let u = url("https://rs.example/r");
    let mut seen = std::collections::HashSet::new();
    // Each of the 128 bits, across the proofs: seen set, seen clear.
    let (mut ones, mut zeros) = ([0u8; 16], [0u8; 16]);
    for _ in 0..1000 {
        let proof = key.proof("GET", &u, 1_700_000_000, None, None).unwrap();
        let (_, c, _) = decode(&proof);
        let jti = c["jti"].as_str().unwrap().to_owned();
        assert_eq!(jti.len(), 22);
        // The base64url of 16 bytes, canonical (the decoder refuses stray low bits).
        let bytes = b64_decode(&jti).unwrap();
        assert_eq!(bytes.len(), 16, "{jti}");
        for (i, b) in bytes.iter().enumerate() {
            ones[i] |= b;
            zeros[i] |= !b;
        }
        assert!(seen.insert(jti));
    }
    assert_eq!((ones, zeros), ([0xff; 16], [0xff; 16]));
    // Spot-check with both verifiers on a couple of them.
    let proof = key.proof("GET", &u, 1, None, None).unwrap();
    check_proof(&key, &proof, "GET", "https://rs.example/r", 1, None, None);
}

#[test]
fn dpop_header_and_thumbprint_cached_and_consistent() {
    let key = DpopKey::generate();
    assert_eq!(key.thumbprint(), key.public_jwk().thumbprint());
    assert_eq!(key.thumbprint().len(), 43);
    let clone = key.clone();
    assert!(std::ptr::eq(key.thumbprint(), clone.thumbprint()));
    let p1 = key
        .proof("GET", &url("https://a.example/"), 1, None, None)
        .unwrap();
    let p2 = key
        .proof("POST", &url("https://b.example/"), 2, None, None)
        .unwrap();
    assert_eq!(p1.split('.').next(), p2.split('.').next());
    assert_eq!(
        normalize_htu(&url("https://a.example/?x")),
        "https://a.example/"
    );
}

#[test]
fn dpop_josekit_keys_interoperate() {
    #[cfg(feature = "josekit")]
    {
        use josekit::jwk::KeyPair as _;
        let kp = josekit::jws::ES256.generate_key_pair().unwrap();
        let pem = String::from_utf8(kp.to_pem_private_key()).unwrap();
        let from_pem = DpopKey::from_pkcs8_pem(&pem).unwrap();
        // josekit's private JWK carries only `d`; its key-pair JWK carries `x`/`y` too.
        let from_jwk = DpopKey::from_jwk(&kp.to_jwk_private_key().to_string()).unwrap();
        let from_pair = DpopKey::from_jwk(&kp.to_jwk_key_pair().to_string()).unwrap();
        let from_der = DpopKey::from_pkcs8_der(&pem::parse(&pem)).unwrap();
        // OpenSSL's traditional DER is SEC1, not PKCS#8.
        assert!(DpopKey::from_pkcs8_der(&kp.to_der_private_key()).is_err());
        let public = PublicJwk::from_json(
            &serde_json::from_str(&kp.to_jwk_public_key().to_string()).unwrap(),
        )
        .unwrap();
        for k in [&from_pem, &from_jwk, &from_pair, &from_der] {
            assert_eq!(k.public_jwk(), &public);
        }
        // And our export is readable by OpenSSL through josekit.
        let key = DpopKey::generate();
        let back = josekit::jws::ES256
            .key_pair_from_pem(key.to_pkcs8_pem().unwrap().expose_secret())
            .unwrap();
        let back = PublicJwk::from_json(
            &serde_json::from_str(&back.to_jwk_public_key().to_string()).unwrap(),
        )
        .unwrap();
        assert_eq!(&back, key.public_jwk());
    }
}

#[test]
fn dpop_rfc9449_example_key_public_only_rejected_but_thumbprint_matches() {
    // The RFC's example key has no `d`: importing it as a DPoP key must fail cleanly.
    assert!(matches!(
        DpopKey::from_jwk(RFC9449_JWK),
        Err(Error::Crypto(m)) if m.contains("`d`")
    ));
    let jwk = PublicJwk::from_json(&serde_json::from_str(RFC9449_JWK).unwrap()).unwrap();
    assert_eq!(
        jwk.thumbprint(),
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    );
}

#[test]
fn dpop_malformed_keys_are_typed_errors() {
    let crypto = |r: Result<DpopKey>| assert!(matches!(r, Err(Error::Crypto(_))), "{r:?}");
    // PEM.
    crypto(DpopKey::from_pkcs8_pem(""));
    crypto(DpopKey::from_pkcs8_pem("garbage"));
    crypto(DpopKey::from_pkcs8_pem(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ));
    crypto(DpopKey::from_pkcs8_pem(
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    ));
    crypto(DpopKey::from_pkcs8_der(&[]));
    crypto(DpopKey::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x00]));
    // JWK.
    let good = DpopKey::generate();
    let good_jwk: serde_json::Value =
        serde_json::from_str(good.to_jwk().unwrap().expose_secret()).unwrap();
    let with = |k: &str, v: Option<serde_json::Value>| {
        let mut j = good_jwk.clone();
        match v {
            Some(v) => j[k] = v,
            None => {
                j.as_object_mut().unwrap().remove(k);
            }
        }
        DpopKey::from_jwk(&j.to_string())
    };
    crypto(with("d", None));
    crypto(with("d", Some(serde_json::Value::Null)));
    crypto(with("d", Some("AAAA".into())));
    crypto(with("d", Some(b64(&[0; 32]).into())));
    crypto(with("d", Some(b64(&[0xff; 32]).into())));
    crypto(with("d", Some(5.into())));
    crypto(with("crv", Some("P-384".into())));
    crypto(with("kty", Some("RSA".into())));
    crypto(with("x", None));
    crypto(with("y", Some(serde_json::Value::Null)));
    crypto(with("x", Some(b64(&[1; 32]).into())));
    crypto(with("y", Some("***".into())));
    crypto(DpopKey::from_jwk(""));
    crypto(DpopKey::from_jwk("garbage"));
    crypto(DpopKey::from_jwk("[]"));
    crypto(DpopKey::from_jwk("{}"));
    // `x` and `y` may both be absent (derived from `d`).
    let mut bare = good_jwk.clone();
    bare.as_object_mut().unwrap().remove("x");
    bare.as_object_mut().unwrap().remove("y");
    assert_eq!(
        DpopKey::from_jwk(&bare.to_string()).unwrap().thumbprint(),
        good.thumbprint()
    );
    // Extra members are fine.
    let mut extra = good_jwk.clone();
    extra["kid"] = "k1".into();
    extra["use"] = "sig".into();
    assert_eq!(
        DpopKey::from_jwk(&extra.to_string()).unwrap().thumbprint(),
        good.thumbprint()
    );
    #[cfg(feature = "josekit")]
    {
        use josekit::jwk::KeyPair as _;
        // Wrong curve, as PEM, DER and JWK.
        let p384 = josekit::jws::ES384.generate_key_pair().unwrap();
        crypto(DpopKey::from_pkcs8_pem(
            std::str::from_utf8(&p384.to_pem_private_key()).unwrap(),
        ));
        crypto(DpopKey::from_pkcs8_der(&pem::parse(
            std::str::from_utf8(&p384.to_pem_private_key()).unwrap(),
        )));
        crypto(DpopKey::from_pkcs8_der(&p384.to_der_private_key()));
        crypto(DpopKey::from_jwk(&p384.to_jwk_private_key().to_string()));
        // SEC1 PEM of a valid P-256 key: refused with a hint.
        let p256 = josekit::jws::ES256.generate_key_pair().unwrap();
        let sec1 = String::from_utf8(p256.to_traditional_pem_private_key()).unwrap();
        assert!(matches!(
            DpopKey::from_pkcs8_pem(&sec1),
            Err(Error::Crypto(m)) if m.contains("SEC1")
        ));
        // An RSA key.
        let rsa = josekit::jws::RS256.generate_key_pair(2048).unwrap();
        crypto(DpopKey::from_pkcs8_pem(
            std::str::from_utf8(&rsa.to_pem_private_key()).unwrap(),
        ));
        crypto(DpopKey::from_jwk(&rsa.to_jwk_private_key().to_string()));
    }
}

#[test]
fn dpop_debug_shows_no_secret() {
    let key = DpopKey::generate();
    let jwk: serde_json::Value =
        serde_json::from_str(key.to_jwk().unwrap().expose_secret()).unwrap();
    let d = jwk["d"].as_str().unwrap().to_owned();
    let pem = key.to_pkcs8_pem().unwrap();
    let body: String = pem
        .expose_secret()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for k in [key.clone(), key.with_p256_signer().unwrap()] {
        let dbg = format!("{k:?} {:?} {:#?}", k.signer(), k);
        assert!(dbg.contains(key.thumbprint()), "{dbg}");
        assert!(!dbg.contains(&d), "{dbg}");
        for line in pem
            .expose_secret()
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!dbg.contains(line), "{dbg}");
        }
        assert!(!dbg.contains(&body));
    }
    assert_eq!(format!("{pem:?}"), "[redacted]");
}

#[derive(Debug)]
struct External(RingSigner, &'static str);

impl Signer for External {
    fn alg(&self) -> &str {
        self.1
    }
    fn public_jwk(&self) -> &PublicJwk {
        self.0.public_jwk()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.0.sign(message)
    }
}

#[test]
fn dpop_external_signer() {
    let key =
        DpopKey::from_signer(Arc::new(External(RingSigner::generate().unwrap(), "ES256"))).unwrap();
    assert!(format!("{key:?}").contains("external"));
    exercise(&key);
    assert!(matches!(key.to_pkcs8_pem(), Err(Error::Config(_))));
    assert!(matches!(key.to_jwk(), Err(Error::Config(_))));
    assert!(matches!(key.with_p256_signer(), Err(Error::Config(_))));
    let rs = DpopKey::from_signer(Arc::new(External(RingSigner::generate().unwrap(), "RS256")));
    assert!(matches!(rs, Err(Error::Config(_))));
}

#[test]
fn dpop_bad_method_rejected() {
    let key = DpopKey::generate();
    for htm in ["", "GET POST", "GET\"", "G\nET"] {
        assert!(matches!(
            key.proof(htm, &url("https://a.example/"), 1, None, None),
            Err(Error::Config(_))
        ));
    }
}

#[test]
fn dpop_key_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<DpopKey>();
}

#[test]
fn dpop_proofs_reuse_the_last_requests_encoding_and_stay_exact() {
    // Proofs in a row for the same request, then another, and back: every one verifies,
    // carries exactly its own claims, and its payload is the one base64url encoding of them.
    // The fixed claims' JSON takes every length modulo 3 (paths of 1, 2 and 3 bytes, with and
    // without `ath`), userinfo is dropped from `htu`, and an `ath` that is not ASCII (which
    // is encoded whole each time) works too.
    let key = DpopKey::generate();
    let t1 = ath("token-1");
    let urls = [
        "https://rs.example/a",
        "https://rs.example/ab",
        "https://rs.example/abc",
        "https://user:pw@rs.example/abc?q=1",
    ];
    let aths = [None, Some(t1.as_str()), Some("é-ath")];
    let methods = ["GET", "POST"];
    // Three orders, so that each of method, URL and `ath` changes alone from one proof to
    // the next somewhere.
    let mut cases = Vec::new();
    for u in urls {
        for m in methods {
            for a in aths {
                cases.push((m, u, a));
            }
        }
        for a in aths {
            for m in methods {
                cases.push((m, u, a));
            }
        }
    }
    for m in methods {
        for a in aths {
            for u in urls {
                cases.push((m, u, a));
            }
        }
    }
    let mut iat = 1_700_000_000;
    for (m, u, a) in cases {
        let htu = url(u);
        let want_htu = normalize_htu(&htu);
        for nonce in [None, Some("n-1"), Some("n-22")] {
            iat += 1;
            let proof = key.proof(m, &htu, iat, nonce, a).unwrap();
            check_proof(&key, &proof, m, &want_htu, iat, nonce, a);
            let payload = proof.split('.').nth(1).unwrap();
            assert_eq!(b64(&b64_decode(payload).unwrap()), payload);
        }
    }
}
