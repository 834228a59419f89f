//! DPoP proof JWTs (RFC 9449 §4), `htu` normalization and the `ath` claim.

use rand::RngCore as _;
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::jose::{b64, b64_into, push_json_str, sign_compact_parts, Signer};

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
/// by hand: this is the hot path of every DPoP request. Those that stay the same from one
/// request to the next (`htm`, `htu`, `ath`) come first, and the base64url of their JSON is
/// kept per thread (see [`ProofBufs`]): a request like the last one encodes only `iat`,
/// `nonce` and `jti`.
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
    let fixed = Fixed {
        htm,
        htu,
        parts: htu_parts(htu),
        ath,
    };
    // A signer that builds a proof itself while signing gets buffers of its own.
    BUFS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let proof = bufs.sign(header_b64, signer, &fixed, iat, nonce);
            bufs.trim();
            proof
        }
        Err(_) => ProofBufs::default().sign(header_b64, signer, &fixed, iat, nonce),
    })
}

thread_local! {
    static BUFS: std::cell::RefCell<ProofBufs> = std::cell::RefCell::default();
}

/// The claims a request fixes: the same for every proof of one token to one URL.
struct Fixed<'a> {
    htm: &'a str,
    htu: &'a url::Url,
    /// [`htu_parts`] of `htu`.
    parts: (&'a str, &'a str),
    ath: Option<&'a str>,
}

/// A thread's proof buffers: the claims of the proof being built, and the fixed claims of the
/// last one, encoded.
///
/// The fixed claims' JSON (`{"htm":..,"htu":..,"ath":..`) is kept as the base64url of its
/// whole 3-byte groups and the 0–2 bytes after them: the base64url of the whole payload is
/// that encoding followed by the encoding of those bytes and the per-proof claims (a 3-byte
/// boundary is a boundary of the encoding).
#[derive(Default)]
struct ProofBufs {
    /// The per-proof part of the payload being built (after the fixed claims' last bytes).
    claims: String,
    /// What the kept encoding is of: method, `htu`, `ath` (`None`: nothing kept yet).
    htm: String,
    htu: String,
    ath: Option<String>,
    /// The base64url of the fixed claims' JSON, its whole 3-byte groups.
    encoded: String,
    /// The JSON's bytes after those groups (at most 2).
    rest: String,
}

impl ProofBufs {
    /// Whether the kept encoding is of `fixed`'s claims.
    fn holds(&self, fixed: &Fixed<'_>) -> bool {
        let (a, b) = fixed.parts;
        let htu = self.htu.as_bytes();
        !self.encoded.is_empty()
            && htu.len() == a.len() + b.len()
            && same(self.htm.as_bytes(), fixed.htm.as_bytes())
            && same(htu.get(..a.len()).unwrap_or_default(), a.as_bytes())
            && same(htu.get(a.len()..).unwrap_or_default(), b.as_bytes())
            && match (&self.ath, fixed.ath) {
                (Some(kept), Some(ath)) => same(kept.as_bytes(), ath.as_bytes()),
                (None, None) => true,
                _ => false,
            }
    }

    /// Encode `fixed`'s claims and keep them.
    fn keep(&mut self, fixed: &Fixed<'_>) {
        let (a, b) = fixed.parts;
        self.htm.clear();
        self.htm.push_str(fixed.htm);
        self.htu.clear();
        if b.is_empty() {
            self.htu.push_str(a);
        } else {
            self.htu.push_str(&normalize_htu(fixed.htu));
        }
        match (&mut self.ath, fixed.ath) {
            (Some(kept), Some(ath)) => {
                kept.clear();
                kept.push_str(ath);
            }
            (kept, ath) => *kept = ath.map(str::to_owned),
        }
        let json = &mut self.claims;
        json.clear();
        json.push_str("{\"htm\":");
        push_json_str(json, &self.htm);
        json.push_str(",\"htu\":");
        push_json_str(json, &self.htu);
        if let Some(ath) = &self.ath {
            json.push_str(",\"ath\":");
            push_json_str(json, ath);
        }
        // Split where the encoding has a boundary; non-ASCII (an `ath` a caller gave) is
        // encoded whole with every proof rather than split inside a character.
        let whole = if json.is_ascii() {
            json.len() / 3 * 3
        } else {
            0
        };
        let (head, tail) = json.split_at(whole);
        self.encoded.clear();
        // Left empty (nothing kept: `holds` is false) only for non-ASCII claims; ASCII ones
        // are at least `{"htm":"X","htu":""`, whole groups of them.
        b64_into(head.as_bytes(), &mut self.encoded);
        self.rest.clear();
        self.rest.push_str(tail);
    }

    fn sign(
        &mut self,
        header_b64: &str,
        signer: &dyn Signer,
        fixed: &Fixed<'_>,
        iat: i64,
        nonce: Option<&str>,
    ) -> Result<Vec<u8>> {
        if !self.holds(fixed) {
            self.keep(fixed);
        }
        let claims = &mut self.claims;
        claims.clear();
        claims.reserve(self.rest.len() + 60 + nonce.map_or(0, |n| n.len() + 12));
        claims.push_str(&self.rest);
        claims.push_str(",\"iat\":");
        push_int(claims, iat);
        if let Some(nonce) = nonce {
            claims.push_str(",\"nonce\":");
            push_json_str(claims, nonce);
        }
        claims.push_str(",\"jti\":\"");
        push_jti(claims);
        claims.push_str("\"}");
        sign_compact_parts(header_b64, &self.encoded, claims.as_bytes(), signer)
    }

    /// Let go of buffers a huge URL, token or nonce grew.
    fn trim(&mut self) {
        let big = |s: &String| s.capacity() > 4096;
        if big(&self.claims)
            || big(&self.htu)
            || big(&self.encoded)
            || self.ath.as_ref().is_some_and(big)
        {
            *self = ProofBufs::default();
        }
    }
}

/// Whether `a` and `b` are equal, compared a word at a time inline: for the few dozen bytes
/// of a URL or an `ath`, a call to `memcmp` per string costs more than the comparing.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or_default());
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = wa
        .remainder()
        .iter()
        .zip(wb.remainder())
        .fold(0u64, |acc, (x, y)| acc | u64::from(x ^ y));
    wa.zip(wb)
        .fold(tail, |acc, (x, y)| acc | (word(x) ^ word(y)))
        == 0
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
    fn dpop_fixed_claims_compare_like_slices() {
        // Every length around the word size, a difference at every position, and lengths
        // that differ.
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "{n} {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same(&a, &longer), "{n}");
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
