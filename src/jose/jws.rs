//! Compact JWS serialization (RFC 7515 §7.1).

use super::jwk::{b64_append, b64_into, push_json_str};
use super::signer::Signer;
use crate::error::{Error, Result};

/// base64url length (no padding) of `n` bytes.
pub(crate) const fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// The base64url of a protected header `{"typ":…,"alg":…,"jwk":…}` for `signer`'s key.
///
/// Built once per key and reused for every JWS it signs.
pub(crate) fn header_b64_with_jwk(typ: &str, signer: &dyn Signer) -> String {
    let jwk = signer.public_jwk().to_json();
    let mut header = String::with_capacity(32 + typ.len() + jwk.len());
    header.push_str("{\"typ\":");
    push_json_str(&mut header, typ);
    header.push_str(",\"alg\":");
    push_json_str(&mut header, signer.alg());
    header.push_str(",\"jwk\":");
    header.push_str(&jwk);
    header.push('}');
    let mut out = String::with_capacity(b64_len(header.len()));
    b64_into(header.as_bytes(), &mut out);
    out
}

/// Sign a JWS in compact serialization: `header_b64 . base64url(claims_json) . signature`.
///
/// `header_b64` is the already base64url-encoded protected header (it must name the same `alg`
/// as `signer`); `claims_json` is the payload as is. The result is built in one allocation.
pub fn sign_compact(header_b64: &str, claims_json: &[u8], signer: &dyn Signer) -> Result<String> {
    String::from_utf8(sign_compact_bytes(header_b64, claims_json, signer)?)
        .map_err(|_| Error::Crypto("the protected header is not base64url".into()))
}

/// [`sign_compact`] as bytes, for a caller that checks them itself (a proof becomes a header
/// value, which checks every byte anyway).
pub(crate) fn sign_compact_bytes(
    header_b64: &str,
    claims_json: &[u8],
    signer: &dyn Signer,
) -> Result<Vec<u8>> {
    sign_compact_parts(header_b64, "", claims_json, signer)
}

/// [`sign_compact_bytes`] for claims whose first bytes (a multiple of 3) the caller encoded
/// already: the payload is `payload_b64` followed by the base64url of `claims_rest`.
pub(crate) fn sign_compact_parts(
    header_b64: &str,
    payload_b64: &str,
    claims_rest: &[u8],
    signer: &dyn Signer,
) -> Result<Vec<u8>> {
    // Sized exactly for the signature the algorithm produces, so that the buffer becomes a
    // header value without being copied again (`Bytes::from` keeps a full buffer as it is).
    let mut out = Vec::with_capacity(
        header_b64.len()
            + 2
            + payload_b64.len()
            + b64_len(claims_rest.len())
            + b64_len(signature_len(signer.alg())),
    );
    out.extend_from_slice(header_b64.as_bytes());
    out.push(b'.');
    out.extend_from_slice(payload_b64.as_bytes());
    b64_append(claims_rest, &mut out);
    let sig = signer.sign(&out)?;
    if sig.is_empty() {
        return Err(Error::Crypto("signer returned an empty signature".into()));
    }
    out.push(b'.');
    b64_append(&sig, &mut out);
    Ok(out)
}

/// The signature length of `alg` in bytes (RSA: a 2048-bit key's); a guess for sizing only.
fn signature_len(alg: &str) -> usize {
    match alg {
        "ES256" | "EdDSA" | "Ed25519" => 64,
        "ES384" => 96,
        "ES512" => 132,
        _ => 256,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::jose::jwk::{b64, b64_decode};
    use crate::jose::signer::{P256Signer, RingSigner};
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn jose_b64_into_equals_the_engine_across_chunk_boundaries() {
        for n in (0..40).chain(760..780).chain([1535, 1536, 1537, 5000]) {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let mut out = String::from("prefix.");
            b64_into(&data, &mut out);
            assert_eq!(out, format!("prefix.{}", b64(&data)), "{n} bytes");
        }
    }

    #[test]
    fn jose_b64_append_equals_the_engine_for_every_length_and_byte() {
        // Pseudo-random bytes, every length up to 300 and some longer.
        let mut x: u32 = 0x1234_5678;
        for n in (0..300).chain([767, 768, 769, 4096, 4097]) {
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) as u8
                })
                .collect();
            let mut out = b"prefix.".to_vec();
            b64_append(&data, &mut out);
            assert_eq!(
                out,
                format!("prefix.{}", b64(&data)).into_bytes(),
                "{n} bytes"
            );
        }
        // Every 16-bit value at each pair of positions of the six-byte words (and the group
        // after them), the rest of the bytes varied as well.
        for v in 0..=u16::MAX {
            let [a, b] = v.to_be_bytes();
            let data = [
                a,
                b,
                !a,
                b ^ 0x3c,
                a.rotate_left(3),
                b.rotate_right(2),
                b,
                a,
                a ^ b,
                0xff,
            ];
            for at in [0, 2, 4] {
                let mut d = data;
                d.rotate_left(at);
                let mut out = Vec::new();
                b64_append(&d, &mut out);
                assert_eq!(out, b64(&d).into_bytes(), "{d:?}");
            }
        }
        // Every one- and two-byte tail, and every 12-bit half of a three-byte group.
        for v in 0..=u16::MAX {
            let [a, b] = v.to_be_bytes();
            for data in [&[a][..], &[a, b], &[a, b, a ^ 0x5a]] {
                let mut out = Vec::new();
                b64_append(data, &mut out);
                assert_eq!(out, b64(data).into_bytes(), "{data:?}");
            }
        }
    }

    #[test]
    fn jose_b64_len_matches_encoder() {
        for n in 0..100 {
            assert_eq!(b64_len(n), b64(&vec![0xa5; n]).len());
        }
    }

    #[test]
    fn jose_sign_compact_round_trip() {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let signers: [Box<dyn Signer>; 2] = [
            Box::new(RingSigner::from_secret_key(&secret).unwrap()),
            Box::new(P256Signer::from_secret_key(&secret)),
        ];
        for signer in &signers {
            let header = header_b64_with_jwk("test+jwt", signer.as_ref());
            let jws = sign_compact(&header, br#"{"a":1}"#, signer.as_ref()).unwrap();
            let parts: Vec<&str> = jws.split('.').collect();
            assert_eq!(parts.len(), 3);
            assert_eq!(parts[0], header);
            let h: serde_json::Value =
                serde_json::from_slice(&b64_decode(parts[0]).unwrap()).unwrap();
            assert_eq!(h["typ"], "test+jwt");
            assert_eq!(h["alg"], "ES256");
            assert_eq!(
                crate::jose::PublicJwk::from_json(&h["jwk"]).unwrap(),
                *signer.public_jwk()
            );
            assert_eq!(b64_decode(parts[1]).unwrap(), br#"{"a":1}"#);
            let sig = p256::ecdsa::Signature::from_slice(&b64_decode(parts[2]).unwrap()).unwrap();
            let vk = signer.public_jwk().verifying_key().unwrap();
            let input = &jws[..parts[0].len() + 1 + parts[1].len()];
            vk.verify(input.as_bytes(), &sig).unwrap();
        }
    }

    #[cfg(feature = "josekit")]
    #[test]
    fn jose_sign_compact_verified_by_josekit() {
        let signer = RingSigner::generate().unwrap();
        let header = header_b64_with_jwk("JWT", &signer);
        let jws = sign_compact(&header, br#"{"sub":"x"}"#, &signer).unwrap();
        let jwk = josekit::jwk::Jwk::from_bytes(signer.public_jwk().to_json()).unwrap();
        let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
        let (payload, header) = josekit::jws::deserialize_compact(&jws, &verifier).unwrap();
        assert_eq!(payload, br#"{"sub":"x"}"#);
        assert_eq!(header.algorithm(), Some("ES256"));
    }
}
