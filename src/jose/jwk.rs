//! Public JSON Web Keys (RFC 7517) and their thumbprints (RFC 7638).

use super::jws::b64_len;
use base64::Engine as _;
use sha2::Digest as _;

use crate::error::{Error, Result};

/// base64url without padding (RFC 7515 §2), the encoding of every JOSE binary value.
pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Append the base64url (no padding) encoding of `data` to `out`, without a temporary string.
pub(crate) fn b64_into(data: &[u8], out: &mut String) {
    // A short value is encoded on the stack by the table encoder below; a
    // longer one slice by slice through a stack buffer, by the engine's block encoder (without
    // the per-call set-up of `encode_string`'s chunked writer).
    const SHORT: usize = 48;
    if data.len() <= SHORT {
        let mut buf = [0u8; SHORT / 3 * 4];
        let n = b64_len(data.len());
        if let Some(dst) = buf.get_mut(..n) {
            encode_to(data, dst);
            // base64 output is ASCII.
            out.push_str(std::str::from_utf8(dst).unwrap_or_default());
        }
        return;
    }
    const IN: usize = 768;
    let mut buf = [0u8; IN / 3 * 4];
    out.reserve(b64_len(data.len()));
    for chunk in data.chunks(IN) {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(chunk, &mut buf)
            .unwrap_or(0);
        out.push_str(std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or_default());
    }
}

/// The base64url alphabet (RFC 4648 §5).
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Every 12-bit value's two base64url characters: three input bytes take two lookups.
static B64URL_PAIRS: [[u8; 2]; 4096] = {
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [B64URL[i >> 6], B64URL[i & 0x3f]];
        i += 1;
    }
    t
};

/// Append the base64url (no padding) encoding of `data` to a byte buffer: the proof and JWS
/// path, which builds bytes and checks them once as a header value or string at the end.
pub(crate) fn b64_append(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + b64_len(data.len()), 0);
    if let Some(dst) = out.get_mut(start..) {
        encode_to(data, dst);
    }
}

/// Encode `data` into `dst`, exactly `b64_len(data.len())` bytes long.
fn encode_to(data: &[u8], dst: &mut [u8]) {
    let tail = data.len() % 3;
    let (whole, rest) = data.split_at(data.len() - tail);
    // Six input bytes (read as one word, of which eight bytes must be there) give eight
    // output bytes from four lookups, written at once.
    let (mut i, mut o) = (0, 0);
    while let (Some(src), Some(d)) = (whole.get(i..i + 8), dst.get_mut(o..o + 8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(src);
        let x = u64::from_be_bytes(w) >> 16;
        let pair = |shift: u32| {
            let [a, b] = B64URL_PAIRS[((x >> shift) & 0xfff) as usize];
            u64::from(u16::from_le_bytes([a, b]))
        };
        let v = pair(36) | pair(24) << 16 | pair(12) << 32 | pair(0) << 48;
        d.copy_from_slice(&v.to_le_bytes());
        i += 6;
        o += 8;
    }
    let (whole, dst) = (
        whole.get(i..).unwrap_or_default(),
        dst.get_mut(o..).unwrap_or_default(),
    );
    let mut dst_chunks = dst.chunks_exact_mut(4);
    for (src, d) in whole.chunks_exact(3).zip(dst_chunks.by_ref()) {
        let x = u32::from(src[0]) << 16 | u32::from(src[1]) << 8 | u32::from(src[2]);
        let [a, b] = B64URL_PAIRS[(x >> 12) as usize];
        let [c, e] = B64URL_PAIRS[(x & 0xfff) as usize];
        d.copy_from_slice(&[a, b, c, e]);
    }
    let d = dst_chunks.into_remainder();
    match (rest, d) {
        ([x], [d0, d1]) => {
            let v = u32::from(*x) << 4;
            [*d0, *d1] = B64URL_PAIRS[v as usize];
        }
        ([x, y], [d0, d1, d2]) => {
            let v = u32::from(*x) << 10 | u32::from(*y) << 2;
            [*d0, *d1] = B64URL_PAIRS[(v >> 6) as usize];
            *d2 = B64URL[(v & 0x3f) as usize];
        }
        _ => {}
    }
}

/// Decode base64url without padding; rejects padding and the standard alphabet.
pub(crate) fn b64_decode(s: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Error::Crypto("invalid base64url".into()))
}

/// Whether `bytes` hold a byte JSON escapes in a string: `"`, `\\` or U+0000..U+001F.
///
/// Eight bytes at a time (a word's bytes tested at once, without branches per byte), then
/// the tail byte by byte: URLs and nonces of every proof go through here.
fn needs_json_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A high bit set in a byte of `x - ONES * n & !x & HIGHS` marks a byte of `x` below `n`
    // (for n <= 0x80), with no false positive when none is (the first marked byte is exact,
    // later ones may not be: only "any" is asked).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let is = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    for w in words.by_ref() {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_ne_bytes(a);
        if below(x, 0x20) | is(x, b'"') | is(x, b'\\') != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Append `s` to `out` as a JSON string literal (quotes included), escaping `"`, `\` and the
/// control characters U+0000..U+001F as RFC 8259 §7 requires.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // Most strings (URLs, methods, base64url values) need no escape: one scan, one copy.
    if !needs_json_escape(bytes) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        // `i` is at an ASCII byte, hence at a char boundary.
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The JSON object made of string members, in the order given, with no whitespace.
///
/// Given the required members of a key in lexicographic order, this is the RFC 7638 §3
/// canonical form that the thumbprint hashes.
pub(crate) fn canonical_json(members: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(
        2 + members
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, k);
        out.push(':');
        push_json_str(&mut out, v);
    }
    out.push('}');
    out
}

/// The RFC 7638 thumbprint (base64url SHA-256 of the canonical JSON) of a key given by its
/// required members, which must be listed in lexicographic order of their names.
pub(crate) fn thumbprint_of_members(members: &[(&str, &str)]) -> String {
    debug_assert!(members.windows(2).all(|w| w[0].0 < w[1].0));
    b64(&sha2::Sha256::digest(canonical_json(members).as_bytes()))
}

/// A public EC P-256 JSON Web Key: `kty`, `crv`, `x`, `y` and nothing else.
///
/// This is the key a DPoP proof carries in its header (RFC 9449 §4.2) and whose RFC 7638
/// thumbprint (`jkt`) a DPoP-bound token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    /// base64url of the 32-byte big-endian x coordinate.
    x: String,
    /// base64url of the 32-byte big-endian y coordinate.
    y: String,
}

impl PublicJwk {
    /// The key with affine coordinates `x` and `y` (32-byte big-endian each).
    ///
    /// The point is not checked here; signature verification checks it.
    pub fn ec_p256(x: &[u8; 32], y: &[u8; 32]) -> Self {
        PublicJwk {
            x: b64(x),
            y: b64(y),
        }
    }

    /// The JWK as compact JSON with its members in lexicographic order:
    /// `{"crv":"P-256","kty":"EC","x":"…","y":"…"}` (also the RFC 7638 canonical form).
    pub fn to_json(&self) -> String {
        canonical_json(&self.members())
    }

    /// The RFC 7638 JWK SHA-256 thumbprint, base64url: the `jkt` of RFC 9449 §6.
    pub fn thumbprint(&self) -> String {
        thumbprint_of_members(&self.members())
    }

    fn members(&self) -> [(&str, &str); 4] {
        [
            ("crv", "P-256"),
            ("kty", "EC"),
            ("x", &self.x),
            ("y", &self.y),
        ]
    }

    /// Parse a public EC P-256 JWK. Other members (`kid`, `use`, even a private `d`) are
    /// ignored and not kept; the point must be on the curve.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::Crypto("JWK is not a JSON object".into()))?;
        let member = |name: &str| -> Result<&str> {
            obj.get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| {
                    Error::Crypto(format!("JWK member `{name}` missing or not a string"))
                })
        };
        if member("kty")? != "EC" {
            return Err(Error::Crypto("JWK `kty` is not `EC`".into()));
        }
        if member("crv")? != "P-256" {
            return Err(Error::Crypto("JWK `crv` is not `P-256`".into()));
        }
        let coord = |name: &str| -> Result<[u8; 32]> {
            let bytes = b64_decode(member(name)?)?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| Error::Crypto(format!("JWK `{name}` is not 32 bytes")))
        };
        let jwk = PublicJwk::ec_p256(&coord("x")?, &coord("y")?);
        jwk.verifying_key()?;
        Ok(jwk)
    }

    /// The key as a p256 ECDSA verifying key; fails when the point is not on the curve.
    pub(crate) fn verifying_key(&self) -> Result<p256::ecdsa::VerifyingKey> {
        let coord = |s: &str| -> Result<p256::FieldBytes> {
            let arr = <[u8; 32]>::try_from(b64_decode(s)?.as_slice())
                .map_err(|_| Error::Crypto("JWK coordinate is not 32 bytes".into()))?;
            Ok(p256::FieldBytes::from(arr))
        };
        let point =
            p256::EncodedPoint::from_affine_coordinates(&coord(&self.x)?, &coord(&self.y)?, false);
        p256::ecdsa::VerifyingKey::from_encoded_point(&point)
            .map_err(|_| Error::Crypto("JWK point is not on P-256".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// RFC 9449 §4.1 / §5 example proof key.
    const RFC9449_JWK: &str = r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#;

    #[test]
    fn jose_b64_encoders_equal_the_base64_engine_at_every_length() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Lengths across the short (stack) and long (chunked) paths of `b64_into` and every
        // tail of the table encoder; RFC 4648 §10 vectors among them.
        let data: Vec<u8> = (0..2000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for n in (0..200).chain([767, 768, 769, 1536, 2000]) {
            let want = URL_SAFE_NO_PAD.encode(&data[..n]);
            let mut s = String::from("x");
            b64_into(&data[..n], &mut s);
            assert_eq!(&s[1..], want, "b64_into {n}");
            let mut v = b"y".to_vec();
            b64_append(&data[..n], &mut v);
            assert_eq!(&v[1..], want.as_bytes(), "b64_append {n}");
        }
        for (input, want) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut s = String::new();
            b64_into(input.as_bytes(), &mut s);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn jose_rfc7638_rsa_thumbprint_vector() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let members = [("e", "AQAB"), ("kty", "RSA"), ("n", n)];
        assert_eq!(
            thumbprint_of_members(&members),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn jose_rfc9449_example_key_thumbprint() {
        let v: serde_json::Value = serde_json::from_str(RFC9449_JWK).unwrap();
        let jwk = PublicJwk::from_json(&v).unwrap();
        // RFC 9449 §6.1 `cnf.jkt` of the example access token for this key.
        assert_eq!(
            jwk.thumbprint(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
        // Cross-check: independent canonicalisation through a sorted map and serde_json.
        let mut sorted = std::collections::BTreeMap::new();
        for k in ["kty", "crv", "x", "y"] {
            sorted.insert(k, v[k].as_str().unwrap());
        }
        let canon = serde_json::to_string(&sorted).unwrap();
        assert_eq!(canon, jwk.to_json());
        assert_eq!(
            b64(&sha2::Sha256::digest(canon.as_bytes())),
            jwk.thumbprint()
        );
    }

    #[test]
    fn jose_jwk_to_json_member_order() {
        let jwk = PublicJwk::ec_p256(&[1; 32], &[2; 32]);
        let json = jwk.to_json();
        assert!(
            json.starts_with(r#"{"crv":"P-256","kty":"EC","x":""#),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4);
        assert_eq!(v["x"], b64(&[1; 32]));
        assert_eq!(v["y"], b64(&[2; 32]));
    }

    #[test]
    fn jose_jwk_from_json_rejects_bad_keys() {
        let good: serde_json::Value = serde_json::from_str(RFC9449_JWK).unwrap();
        let with = |k: &str, val: serde_json::Value| {
            let mut v = good.clone();
            v[k] = val;
            PublicJwk::from_json(&v)
        };
        assert!(with("crv", "P-384".into()).is_err());
        assert!(with("kty", "RSA".into()).is_err());
        assert!(with("x", "AAAA".into()).is_err());
        assert!(with("x", 5.into()).is_err());
        assert!(with("y", "!!!".into()).is_err());
        // On 32 bytes but off the curve.
        assert!(with("y", b64(&[7; 32]).into()).is_err());
        assert!(PublicJwk::from_json(&serde_json::json!([])).is_err());
        assert!(PublicJwk::from_json(&serde_json::json!({"kty":"EC"})).is_err());
        for bad in [with("crv", "P-384".into()), with("x", "AAAA".into())] {
            assert!(matches!(bad, Err(Error::Crypto(_))));
        }
        // Extra members are ignored, not kept.
        let mut extra = good.clone();
        extra["kid"] = "k1".into();
        assert_eq!(
            PublicJwk::from_json(&extra).unwrap(),
            PublicJwk::from_json(&good).unwrap()
        );
    }

    #[test]
    fn jose_json_string_escaping() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\n\u{1}é\u{7f}");
        assert_eq!(out, r#""a\"b\\c\n\u0001é""#.replace('é', "é\u{7f}"));
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\n\u{1}é\u{7f}");
        for s in ["", "plain", "\u{0}\u{1f}\t\r\u{8}\u{c}", "日本\"語"] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }

    #[test]
    fn jose_json_escape_scan_finds_every_escaped_byte_at_every_offset() {
        let naive = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        // Every byte value at every offset of strings across word boundaries, in a filler of
        // bytes just around the ones that escape (0x1f..0x21, 0x5b..0x5d, high bytes).
        for len in 1..=24 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    for filler in [b'a', 0x21, 0x5d, 0x5b, 0x80, 0xff, 0x23] {
                        let mut v = vec![filler; len];
                        v[at] = byte;
                        assert_eq!(
                            needs_json_escape(&v),
                            naive(&v),
                            "byte {byte:#x} at {at} of {len}, filler {filler:#x}"
                        );
                    }
                }
            }
        }
        assert!(!needs_json_escape(b""));
        assert!(!needs_json_escape(
            "https://api.example.com/v1/items?q=\u{e9}t\u{e9}".as_bytes()
        ));
    }
}
