//! A test certificate authority (rcgen) for mTLS tests, and oidc-provider started over HTTPS
//! with it, asking for client certificates (feature `mtls`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::support::prelude::{ClientIdentity, TrustRoots};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};

use super::oidc_provider::OidcProvider;

/// A certificate authority.
pub struct Pki {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, PEM.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Pki {
    /// A new CA with subject `CN=<cn>`.
    pub fn new(cn: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(&[(DnType::CommonName, cn)]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Pki { cert, key }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA as trust roots.
    pub fn roots(&self) -> TrustRoots {
        TrustRoots::from_pem(&self.ca_pem()).unwrap()
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for 127.0.0.1.
    pub fn server(&self) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(&[(DnType::CommonName, "127.0.0.1")]);
        params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with subject `CN=<cn>,O=Example`.
    pub fn client(&self, cn: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(&[
            (DnType::CommonName, cn),
            (DnType::OrganizationName, "Example"),
        ]);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// A client identity with subject `CN=<cn>,O=Example`.
    pub fn client_identity(&self, cn: &str) -> ClientIdentity {
        let c = self.client(cn);
        ClientIdentity::from_pem(&c.cert_pem, &c.key_pem).unwrap()
    }
}

fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in parts {
        dn.push(t.clone(), *v);
    }
    dn
}

/// oidc-provider over HTTPS with a server certificate from `pki`, trusting client certificates
/// from `pki`, with its built-in resource server (`<issuer>/api`).
pub struct MtlsProvider {
    /// The running provider.
    pub provider: OidcProvider,
    /// The resource server's URL.
    pub api: String,
    /// Holds the PEM files the provider reads.
    pub dir: tempfile::TempDir,
}

impl MtlsProvider {
    /// Start it with `clients` (oidc-provider client metadata); `None` when Node.js is not
    /// available outside CI.
    pub async fn start(pki: &Pki, clients: Value) -> Option<MtlsProvider> {
        let dir = tempfile::tempdir().unwrap();
        let server = pki.server();
        let cfg = json!({
            "tls": {
                "cert": write(&dir, "server.pem", &server.cert_pem),
                "key": write(&dir, "server.key", &server.key_pem),
                "ca": write(&dir, "ca.pem", &pki.ca_pem()),
            },
            "resource_server": true,
            "clients": clients,
        });
        let provider = OidcProvider::start(cfg).await?;
        assert!(provider.issuer.starts_with("https://127.0.0.1:"));
        let api = provider.resource.clone().unwrap();
        Some(MtlsProvider { provider, api, dir })
    }
}

/// Write `content` to `name` in `dir`; its path.
pub fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let p: PathBuf = dir.path().join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_owned()
}
