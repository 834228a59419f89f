//! What the transport learns about each origin it talks to: the rules for the values servers
//! send that the crate keeps per origin (the `DPoP-Nonce` header, RFC 9449 §8.1) and the
//! origin key they are kept under.

/// The longest nonce accepted, in bytes.
pub(crate) const MAX_NONCE_LEN: usize = 512;

/// The response header carrying a DPoP nonce (RFC 9449 §8.1).
pub(crate) const DPOP_NONCE: &str = "dpop-nonce";

/// True when `nonce` is an acceptable `DPoP-Nonce` value: 1 to 512 `NQCHAR`
/// (`%x21 / %x23-5B / %x5D-7E`, RFC 9449 §8.1).
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// The `DPoP-Nonce` of a response, when it is a valid nonce.
pub(crate) fn dpop_nonce(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(DPOP_NONCE)
        .and_then(|v| v.to_str().ok())
        .filter(|n| is_valid_nonce(n))
}

/// The key per-origin state is kept under: scheme, host and effective port. Authorization
/// server and resource server nonces are independent (RFC 9449 §8, §9), and so are different
/// ports and schemes.
pub(crate) fn origin_key(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{}://{}:{}", url.scheme(), host, port),
        None => format!("{}://{}", url.scheme(), host),
    }
}
