//! Which URLs credentials may be sent to: HTTPS, or plain HTTP on loopback only.

use std::net::IpAddr;

use url::Url;

use crate::error::{Error, Result};

/// Is `url` acceptable to send credentials to? HTTPS anywhere; plain HTTP only on loopback
/// (127.0.0.0/8, ::1, `localhost`) unless `allow_insecure` is set. Fragments and userinfo are refused.
pub(crate) fn check_url(url: &Url, allow_insecure: bool) -> Result<()> {
    let refuse = |reason| {
        Err(Error::InsecureUrl {
            url: url.origin().ascii_serialization(),
            reason,
        })
    };
    if url.fragment().is_some() {
        return refuse("URL has a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("URL has user information");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure || is_loopback(url) => Ok(()),
        "http" => refuse("plain http is only allowed for loopback hosts"),
        _ => refuse("scheme must be https"),
    }
}

/// True for 127.0.0.0/8, ::1 and `localhost` (RFC 6761 §6.3, also `*.localhost`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn transport_https_required_off_loopback() {
        assert!(check_url(&url("https://as.example.com/x"), false).is_ok());
        assert!(check_url(&url("http://127.0.0.1:8080/"), false).is_ok());
        assert!(check_url(&url("http://127.9.9.9/"), false).is_ok());
        assert!(check_url(&url("http://[::1]:99/"), false).is_ok());
        assert!(check_url(&url("http://localhost/"), false).is_ok());
        assert!(check_url(&url("http://api.localhost/"), false).is_ok());
        let err = check_url(&url("http://as.example.com/?secret=1"), false).expect_err("http");
        assert!(matches!(err, Error::InsecureUrl { .. }));
        assert!(!err.to_string().contains("secret"));
        assert!(check_url(&url("http://as.example.com/"), true).is_ok());
        assert!(check_url(&url("http://localhost.example.com/"), false).is_err());
        assert!(check_url(&url("ftp://127.0.0.1/"), false).is_err());
        assert!(check_url(&url("https://a.example/#frag"), false).is_err());
        assert!(check_url(&url("https://user:pw@a.example/"), false).is_err());
    }
}
