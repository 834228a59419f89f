//! DPoP proof JWTs (RFC 9449 §4), `htu` normalization and the `ath` claim.

use rand::RngCore as _;
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::jose::{b64, push_json_str, sign_compact_bytes, Signer};

/// The `ath` claim for an access token (RFC 9449 §4.2): base64url of its SHA-256 (over the
/// token's ASCII bytes).
pub fn ath(access_token: &str) -> String {
    b64(&sha2::Sha256::digest(access_token.as_bytes()))
}

/// The two pieces whose concatenation is the `htu` of `url`, borrowed from its serialization.
///
/// The `url` crate has already applied RFC 3986 §6.2.2 / §6.2.3 normalization when parsing
/// (lowercase scheme and host, default port removed, dot segments resolved, empty path of an
/// http(s) URL turned into `/`). What is left to do is drop what `htu` must not carry: the query
/// and fragment (RFC 9449 §4.2) and any userinfo.
fn htu_parts(url: &url::Url) -> (&str, &str) {
    use url::Position;
    if url.username().is_empty() && url.password().is_none() {
        (&url[..Position::AfterPath], "")
    } else {
        (
            &url[..Position::BeforeUsername],
            &url[Position::BeforeHost..Position::AfterPath],
        )
    }
}

/// The `htu` claim for a request to `url` (RFC 9449 §4.2): scheme, authority and path, without
/// query, fragment or userinfo, with the default port dropped.
///
/// Scheme and host are lowercased and dot segments removed by the `url` crate on parsing.
/// Percent-encodings in the path are kept exactly as they will go on the wire (neither decoded
/// nor re-cased), so that a server comparing `htu` with the request target it received matches
/// whether or not it normalizes percent-encoding itself (RFC 9449 §4.3 step 9).
pub fn normalize_htu(url: &url::Url) -> String {
    let (a, b) = htu_parts(url);
    let mut out = String::with_capacity(a.len() + b.len());
    out.push_str(a);
    out.push_str(b);
    out
}

/// True for an HTTP method token (RFC 9110 §9.1, §5.6.2 `tchar`).
fn is_method_token(htm: &str) -> bool {
    !htm.is_empty()
        && htm.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Build and sign a DPoP proof, as bytes (base64url and dots: ready to become a header value).
///
/// `header_b64` is the key's cached, already-encoded protected header. The claims are written
/// by hand into one pre-sized buffer: this is the hot path of every DPoP request.
pub(crate) fn build_proof(
    header_b64: &str,
    signer: &dyn Signer,
    htm: &str,
    htu: &url::Url,
    iat: i64,
    nonce: Option<&str>,
    ath: Option<&str>,
) -> Result<Vec<u8>> {
    if !is_method_token(htm) {
        return Err(Error::config("DPoP `htm` is not an HTTP method token"));
    }
    let (htu_a, htu_b) = htu_parts(htu);
    // The claims are written into a buffer kept per thread (a proof is built per request);
    // a signer that builds a proof itself while signing gets a buffer of its own.
    let sign = |claims: &mut String| {
        write_and_sign(
            claims,
            header_b64,
            signer,
            (htm, htu, htu_a, htu_b),
            iat,
            nonce,
            ath,
        )
    };
    CLAIMS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut claims) => {
            claims.clear();
            let proof = sign(&mut claims);
            if claims.capacity() > 4096 {
                // A huge URL or nonce once: do not keep its buffer.
                *claims = String::new();
            }
            proof
        }
        Err(_) => sign(&mut String::new()),
    })
}

thread_local! {
    static CLAIMS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn write_and_sign(
    claims: &mut String,
    header_b64: &str,
    signer: &dyn Signer,
    (htm, htu, htu_a, htu_b): (&str, &url::Url, &str, &str),
    iat: i64,
    nonce: Option<&str>,
    ath: Option<&str>,
) -> Result<Vec<u8>> {
    claims.reserve(
        80 + htm.len()
            + htu_a.len()
            + htu_b.len()
            + nonce.map_or(0, |n| n.len() + 12)
            + ath.map_or(0, |a| a.len() + 10),
    );
    claims.push_str("{\"jti\":\"");
    push_jti(claims);
    claims.push_str("\",\"htm\":");
    push_json_str(claims, htm);
    claims.push_str(",\"htu\":");
    if htu_b.is_empty() {
        push_json_str(claims, htu_a);
    } else {
        push_json_str(claims, &normalize_htu(htu));
    }
    claims.push_str(",\"iat\":");
    push_int(claims, iat);
    if let Some(nonce) = nonce {
        claims.push_str(",\"nonce\":");
        push_json_str(claims, nonce);
    }
    if let Some(ath) = ath {
        claims.push_str(",\"ath\":");
        push_json_str(claims, ath);
    }
    claims.push('}');

    sign_compact_bytes(header_b64, claims.as_bytes(), signer)
}

/// Append the decimal digits of `n` (the `iat` of every proof, without the formatter).
fn push_int(out: &mut String, n: i64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// The base64url alphabet (RFC 4648 §5).
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Characters of a proof's `jti`: the base64url of 16 bytes.
const JTI_LEN: usize = 22;

/// Append a new `jti`: 128 random bits as the base64url of 16 random bytes would write them,
/// drawn straight from the generator's words (no bytes to encode): 21 characters of six bits,
/// and a last one of two (its four low bits zero, as the encoding of 16 bytes ends).
fn push_jti(out: &mut String) {
    let mut rng = rand::thread_rng();
    let words = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
    let mut jti = [0u8; JTI_LEN];
    for (i, c) in jti.iter_mut().enumerate() {
        // Ten characters (60 bits) from each word.
        let bits = (words[i / 10] >> (6 * (i % 10))) & 63;
        let bits = if i == JTI_LEN - 1 {
            bits & 0b11_0000
        } else {
            bits
        };
        *c = B64URL[bits as usize];
    }
    out.push_str(std::str::from_utf8(&jti).unwrap_or_default());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dpop_ath_rfc9449_example() {
        // RFC 9449 §7.1.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn dpop_normalize_htu_table() {
        let cases = [
            // RFC 9449 examples.
            (
                "https://server.example.com/token",
                "https://server.example.com/token",
            ),
            (
                "https://resource.example.org/protectedresource?x=1#frag",
                "https://resource.example.org/protectedresource",
            ),
            // Query and fragment dropped.
            ("https://a.example/p?q=1&r=2", "https://a.example/p"),
            ("https://a.example/p#f", "https://a.example/p"),
            ("https://a.example/p?#", "https://a.example/p"),
            // Default ports dropped, others kept.
            ("https://a.example:443/p", "https://a.example/p"),
            ("http://a.example:80/p", "http://a.example/p"),
            ("https://a.example:8443/p", "https://a.example:8443/p"),
            ("http://a.example:443/p", "http://a.example:443/p"),
            // Scheme and host case.
            ("HTTPS://A.Example.COM/Path", "https://a.example.com/Path"),
            // Empty path becomes `/`; dot segments removed.
            ("https://a.example", "https://a.example/"),
            ("https://a.example/a/./b/../c", "https://a.example/a/c"),
            // Percent-encoding kept as is; spaces encoded.
            (
                "https://a.example/a%2Fb/%7e/%C3%A9",
                "https://a.example/a%2Fb/%7e/%C3%A9",
            ),
            ("https://a.example/a b", "https://a.example/a%20b"),
            ("https://a.example/é", "https://a.example/%C3%A9"),
            // IPv6 and IPv4 literals.
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
            ("https://[2001:DB8::1]/x?y", "https://[2001:db8::1]/x"),
            ("http://127.0.0.1:80/", "http://127.0.0.1/"),
            // Userinfo dropped.
            (
                "https://user:pw@a.example:444/p?q",
                "https://a.example:444/p",
            ),
            ("https://user@a.example/p", "https://a.example/p"),
            // IDN host to punycode.
            ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ];
        for (input, want) in cases {
            let url = url::Url::parse(input).unwrap();
            assert_eq!(normalize_htu(&url), want, "{input}");
        }
    }

    #[test]
    fn dpop_iat_digits_equal_the_formatter() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            1_700_000_000,
            -1,
            -5,
            -10,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = String::from(":");
            push_int(&mut out, n);
            assert_eq!(out, format!(":{n}"));
        }
    }

    #[test]
    fn dpop_method_token() {
        for ok in ["GET", "POST", "PATCH", "M-SEARCH", "x"] {
            assert!(is_method_token(ok), "{ok}");
        }
        for bad in ["", "GE T", "GET\"", "GET\n", "GÉT"] {
            assert!(!is_method_token(bad), "{bad:?}");
        }
    }
}
