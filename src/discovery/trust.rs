//! [`TrustPolicy`]: which authorization servers an agent accepts when a resource names them.
//!
//! An agent that starts from a URL learns its authorization servers from the network (RFC 9728
//! metadata, or the resource's own origin for MCP 2025-03-26 servers). Each issuer it learns is
//! checked here before any request goes to it: listed issuers only, or any HTTPS issuer whose
//! host is not a private, link-local or otherwise internal address (a server-side request
//! forgery defence: a hostile resource must not make the agent send requests into its
//! network). Loopback HTTP is accepted when [`TrustPolicy::allow_loopback`] says so (tests,
//! local servers).

use std::net::IpAddr;

use url::Url;

use super::ResourceMetadata;
use crate::error::{sanitize, Error, Result};

/// Which issuers learnt from the network an agent accepts.
///
/// ```
/// use agent_oauth::discovery::TrustPolicy;
/// let strict = TrustPolicy::issuers(["https://as.example.com"]);
/// assert!(strict.check("https://as.example.com").is_ok());
/// assert!(strict.check("https://evil.example").is_err());
///
/// let open = TrustPolicy::any_https();
/// assert!(open.check("https://as.example.com/tenant1").is_ok());
/// assert!(open.check("https://10.0.0.7").is_err()); // private address
/// assert!(open.check("http://127.0.0.1:8080").is_err()); // loopback needs allow_loopback
/// assert!(open.allow_loopback(true).check("http://127.0.0.1:8080").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    listed: Vec<String>,
    any_https: bool,
    loopback: bool,
    private: bool,
}

impl Default for TrustPolicy {
    /// No issuer is accepted until one is listed.
    fn default() -> Self {
        TrustPolicy::issuers(Vec::<String>::new())
    }
}

impl TrustPolicy {
    /// Only these issuers (exact issuer identifiers).
    pub fn issuers<I, S>(issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TrustPolicy {
            listed: issuers.into_iter().map(Into::into).collect(),
            any_https: false,
            loopback: false,
            private: false,
        }
    }

    /// Any HTTPS issuer a resource names, except private, link-local and other internal
    /// addresses (see [`allow_private_networks`](Self::allow_private_networks)).
    pub fn any_https() -> Self {
        TrustPolicy {
            listed: Vec::new(),
            any_https: true,
            loopback: false,
            private: false,
        }
    }

    /// Also accept issuers on loopback hosts (`127.0.0.0/8`, `::1`, `localhost`), over HTTP
    /// too: for tests and servers on the same machine. Listed issuers are always accepted.
    pub fn allow_loopback(mut self, on: bool) -> Self {
        self.loopback = on;
        self
    }

    /// Also accept issuers whose host is a private or link-local IP address (`10/8`,
    /// `172.16/12`, `192.168/16`, `169.254/16`, `fc00::/7`, `fe80::/10`, ...).
    ///
    /// # Security
    /// A hostile resource could then point the agent at internal services.
    pub fn allow_private_networks(mut self, on: bool) -> Self {
        self.private = on;
        self
    }

    /// Add an issuer to the accepted list (with [`any_https`](Self::any_https), one that is
    /// accepted whatever its address).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.listed.push(issuer.into());
        self
    }

    /// Is `issuer` listed by name?
    fn lists(&self, issuer: &str) -> bool {
        self.listed.iter().any(|i| i == issuer)
    }

    /// Check an issuer learnt from the network.
    ///
    /// # Errors
    /// [`Error::Discovery`] naming the issuer and why it is refused.
    pub fn check(&self, issuer: &str) -> Result<Url> {
        let refuse = |why: &str| {
            Err(Error::Discovery(format!(
                "authorization server `{}` is not trusted: {why}",
                sanitize(issuer, 200)
            )))
        };
        let Ok(url) = Url::parse(issuer) else {
            return refuse("not a URL");
        };
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return refuse("an issuer has no query, fragment or user information");
        }
        if self.lists(issuer) {
            return Ok(url);
        }
        let loopback = crate::transport::is_loopback(&url);
        if loopback {
            return if self.loopback && matches!(url.scheme(), "http" | "https") {
                Ok(url)
            } else {
                refuse("loopback issuers are not allowed by the trust policy")
            };
        }
        if !self.any_https {
            refuse("not in the list of trusted issuers")
        } else if url.scheme() != "https" {
            refuse("not HTTPS")
        } else if !self.private && is_internal(&url) {
            refuse("its host is a private or link-local address")
        } else {
            Ok(url)
        }
    }
}

impl TrustPolicy {
    /// Check an endpoint that the metadata of `issuer` (already accepted by
    /// [`check`](Self::check)) names: for an issuer accepted by name anything goes; otherwise
    /// the endpoint must not be on an internal address either (loopback only when allowed), so
    /// a server accepted as "any HTTPS" cannot point the agent into a private network.
    ///
    /// # Errors
    /// [`Error::Discovery`] naming the endpoint's origin.
    pub fn check_endpoint(&self, issuer: &str, endpoint: &str) -> Result<()> {
        if self.lists(issuer) {
            return Ok(());
        }
        let refuse = |why: &str| {
            Err(Error::Discovery(format!(
                "`{}` names an endpoint the trust policy refuses ({why})",
                sanitize(issuer, 200)
            )))
        };
        let Ok(url) = Url::parse(endpoint) else {
            return refuse("not a URL");
        };
        if crate::transport::is_loopback(&url) {
            return if self.loopback {
                Ok(())
            } else {
                refuse("a loopback address")
            };
        }
        if !self.private && is_internal(&url) {
            return refuse("a private or link-local address");
        }
        Ok(())
    }
}

/// Pick the authorization server for a resource: the configured issuer if the metadata lists
/// it, else the first listed one the trust policy accepts.
pub(crate) fn choose_issuer(
    md: &ResourceMetadata,
    configured: Option<&str>,
    trust: &TrustPolicy,
) -> Result<String> {
    let listed = md.authorization_servers();
    if let Some(iss) = configured {
        return if listed.iter().any(|a| a == iss) {
            Ok(iss.to_owned())
        } else {
            Err(Error::Discovery(format!(
                "resource `{}` does not list the configured issuer `{iss}`",
                sanitize(&md.resource, 200)
            )))
        };
    }
    listed
        .iter()
        .find(|a| trust.check(a).is_ok())
        .cloned()
        .ok_or_else(|| {
            Error::Discovery(format!(
                "none of the authorization servers of `{}` is trusted",
                sanitize(&md.resource, 200)
            ))
        })
}

/// Private, link-local, unspecified, broadcast, documentation and unique-local addresses, and
/// IPv4 addresses mapped into IPv6 that are any of these.
fn is_internal(url: &Url) -> bool {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        },
        // A name can still resolve to an internal address; callers that need more resolve
        // and check themselves. Single-label names are refused: they only resolve inside a
        // network.
        Some(url::Host::Domain(d)) => return !d.trim_end_matches('.').contains('.'),
        None => return true,
    };
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_loopback()
                || v4.octets()[0] == 0
                // 100.64.0.0/10, shared address space (RFC 6598)
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_listed_issuers_only() {
        let p = TrustPolicy::issuers(["https://as.example.com"]);
        assert!(p.check("https://as.example.com").is_ok());
        assert!(p.check("https://as.example.com/").is_err());
        assert!(p.check("https://other.example").is_err());
        // A listed loopback issuer is accepted without allow_loopback.
        let p = TrustPolicy::issuers(["http://127.0.0.1:9"]);
        assert!(p.check("http://127.0.0.1:9").is_ok());
        assert!(p.check("http://127.0.0.1:10").is_err());
    }

    #[test]
    fn trust_any_https_refuses_internal_addresses() {
        let p = TrustPolicy::any_https();
        for ok in [
            "https://as.example.com",
            "https://as.example.com/tenant1",
            "https://93.184.216.34",
        ] {
            assert!(p.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://as.example.com",
            "https://10.1.2.3",
            "https://172.16.0.1",
            "https://192.168.1.1",
            "https://169.254.169.254",
            "https://100.64.0.1",
            "https://0.0.0.0",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://[::ffff:10.0.0.1]",
            "https://intranet",
            "https://127.0.0.1",
            "https://localhost",
            "https://as.example.com?x=1",
            "https://user@as.example.com",
            "not a url",
        ] {
            let err = p.check(bad).expect_err(bad).to_string();
            assert!(err.contains("not trusted"), "{bad}: {err}");
        }
        let p = p.allow_private_networks(true);
        assert!(p.check("https://10.1.2.3").is_ok());
    }

    #[test]
    fn trust_endpoints_of_unlisted_issuers_stay_off_internal_addresses() {
        let p = TrustPolicy::any_https();
        let iss = "https://as.example.com";
        assert!(p
            .check_endpoint(iss, "https://as.example.com/token")
            .is_ok());
        assert!(p
            .check_endpoint(iss, "https://login.example.net/token")
            .is_ok());
        for bad in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/register",
            "http://127.0.0.1:8080/token",
            "https://internal/token",
        ] {
            assert!(p.check_endpoint(iss, bad).is_err(), "{bad}");
        }
        assert!(p
            .clone()
            .allow_loopback(true)
            .check_endpoint(iss, "http://127.0.0.1:8080/token")
            .is_ok());
        // A listed issuer is trusted with its endpoints.
        let listed = TrustPolicy::issuers([iss]);
        assert!(listed.check_endpoint(iss, "https://10.0.0.5/token").is_ok());
    }

    #[test]
    fn trust_loopback_only_when_allowed() {
        let p = TrustPolicy::any_https();
        assert!(p.check("http://127.0.0.1:8080").is_err());
        let p = p.allow_loopback(true);
        assert!(p.check("http://127.0.0.1:8080").is_ok());
        assert!(p.check("http://localhost:3000/tenant1").is_ok());
        assert!(p.check("http://[::1]:3000").is_ok());
        // Loopback does not open private networks.
        assert!(p.check("https://10.0.0.1").is_err());
        let listed = TrustPolicy::issuers(["https://as.example.com"]).allow_loopback(true);
        assert!(listed.check("http://localhost:1").is_ok());
        assert!(listed.check("https://other.example").is_err());
    }
}
