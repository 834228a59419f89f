//! Mutual TLS (RFC 8705): identity parsing, an in-process TLS server that requires client
//! certificates, and interop with oidc-provider (`tls_client_auth`,
//! `self_signed_tls_client_auth`, certificate-bound tokens).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use crate::support::oidc_provider::OidcProvider;
use crate::support::prelude::{
    cnf_x5t_s256, AccessToken, AuthorizationServer, ClientAuth, ClientIdentity, Endpoint, Error,
    HttpTransport, KeyFormat, OAuthClient, RetryPolicy, TokenParams, TokenSet, TokenType,
    TransportConfig, TransportErrorKind, TrustRoots,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

// ------------------------------------------------------------------ test PKI

/// A test certificate authority made with rcgen.
struct Pki {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, PEM.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Pki {
    fn new(cn: &str) -> Pki {
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

    fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    fn roots(&self) -> TrustRoots {
        TrustRoots::from_pem(&self.ca_pem()).unwrap()
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A server certificate for 127.0.0.1.
    fn server(&self) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(&[(DnType::CommonName, "127.0.0.1")]);
        params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with subject `CN=<cn>,O=Example`.
    fn client(&self, cn: &str) -> Issued {
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

    fn client_identity(&self, cn: &str) -> ClientIdentity {
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

fn sha256_b64url(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// The DER of the first PEM section, decoded by hand.
fn pem_body_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).unwrap()
}

fn transport(identity: Option<&ClientIdentity>, roots: &TrustRoots) -> HttpTransport {
    HttpTransport::with_tls(TransportConfig::default(), identity, roots).unwrap()
}

async fn get(
    transport: &HttpTransport,
    url: &str,
    bearer: Option<&str>,
) -> crate::support::prelude::Result<(u16, String)> {
    let resp = transport
        .execute(RetryPolicy::Never, || {
            let mut req = http::Request::get(url);
            if let Some(token) = bearer {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            Ok(req.body(Vec::new()).unwrap())
        })
        .await?;
    Ok((
        resp.status().as_u16(),
        String::from_utf8_lossy(resp.body()).into_owned(),
    ))
}

// ------------------------------------------------------------------ parsing

#[test]
fn mtls_pkcs8_pem_parses_and_thumbprint_is_sha256_of_leaf_der() {
    let pki = Pki::new("Test CA");
    let c = pki.client("agent");
    assert!(c.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let id = ClientIdentity::from_pem(&c.cert_pem, &c.key_pem).unwrap();
    assert_eq!(id.key_format(), KeyFormat::Pkcs8);
    assert_eq!(id.thumbprint(), sha256_b64url(&c.der));
    assert_eq!(id.thumbprint().len(), 43);
    assert_eq!(pem_body_der(&id.certificate_pem()), c.der);

    // One bundle, key first, leaf then CA: the leaf decides the thumbprint.
    let bundle = format!("{}{}{}", c.key_pem, c.cert_pem, pki.ca_pem());
    let id2 = ClientIdentity::from_pem_bundle(&bundle).unwrap();
    assert_eq!(id2.thumbprint(), id.thumbprint());
    let chain: Vec<&[u8]> = id2.certificate_chain_der().collect();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0], &c.der[..]);
}

#[test]
fn mtls_sec1_pem_parses() {
    use p256::pkcs8::DecodePrivateKey as _;
    let pki = Pki::new("Test CA");
    let c = pki.client("agent");
    let secret = p256::SecretKey::from_pkcs8_pem(&c.key_pem).unwrap();
    let sec1 = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let id = ClientIdentity::from_pem(&c.cert_pem, &sec1).unwrap();
    assert_eq!(id.key_format(), KeyFormat::Sec1);
    assert_eq!(id.thumbprint(), sha256_b64url(&c.der));
}

#[test]
fn mtls_pkcs1_pem_parses() {
    let cert = include_str!("../data/mtls-rsa-cert.pem");
    let key = include_str!("../data/mtls-rsa-pkcs1.key");
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let id = ClientIdentity::from_pem(cert, key).unwrap();
    assert_eq!(id.key_format(), KeyFormat::Pkcs1);
    assert_eq!(id.thumbprint(), sha256_b64url(&pem_body_der(cert)));
    // The JWK helper is for P-256 keys only.
    assert!(matches!(id.public_jwk(), Err(Error::Config(_))));
}

#[test]
fn mtls_bad_pem_is_a_typed_error() {
    let pki = Pki::new("Test CA");
    let c = pki.client("agent");
    let other = pki.client("other");
    let crypto = |r: crate::support::prelude::Result<ClientIdentity>| match r {
        Err(Error::Crypto(msg)) => msg,
        other => panic!("expected Error::Crypto, got {other:?}"),
    };
    let msgs = [
        crypto(ClientIdentity::from_pem("garbage", "garbage")),
        crypto(ClientIdentity::from_pem(&c.cert_pem, "")),
        crypto(ClientIdentity::from_pem("", &c.key_pem)),
        // Two keys.
        crypto(ClientIdentity::from_pem(
            &c.cert_pem,
            &format!("{}{}", c.key_pem, other.key_pem),
        )),
        // Key of another certificate.
        crypto(ClientIdentity::from_pem(&c.cert_pem, &other.key_pem)),
        // Right label, garbage inside.
        crypto(ClientIdentity::from_pem(
            &c.cert_pem,
            "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n",
        )),
        // Bad base64.
        crypto(ClientIdentity::from_pem(
            &c.cert_pem,
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        )),
        crypto(ClientIdentity::from_pem(
            &c.cert_pem,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )),
    ];
    for m in &msgs {
        println!("{m}");
    }
    assert!(msgs[4].contains("does not match"));
    assert!(msgs[7].contains("encrypted"));
    assert!(matches!(
        TrustRoots::from_pem("garbage"),
        Err(Error::Crypto(_))
    ));
    assert!(matches!(
        TrustRoots::from_pem(&c.key_pem),
        Err(Error::Crypto(_))
    ));
}

#[test]
fn mtls_debug_shows_thumbprint_only() {
    let pki = Pki::new("Test CA");
    let c = pki.client("agent");
    let id = ClientIdentity::from_pem(&c.cert_pem, &c.key_pem).unwrap();
    let dbg = format!("{id:?} {:#?}", id);
    assert!(dbg.contains(id.thumbprint()), "{dbg}");
    let key_der = pem_body_der(&c.key_pem);
    let key_b64 = STANDARD.encode(&key_der);
    for window in [
        &key_b64[..16],
        &key_b64[key_b64.len() / 2..key_b64.len() / 2 + 16],
    ] {
        assert!(!dbg.contains(window), "{dbg}");
    }
    assert!(!dbg.contains("PRIVATE"), "{dbg}");
    assert!(!dbg.contains("BEGIN"), "{dbg}");
    println!("{dbg}");
}

#[test]
fn mtls_self_signed_identity_and_jwk() {
    let id = ClientIdentity::self_signed("agent-self").unwrap();
    assert_eq!(id.key_format(), KeyFormat::Pkcs8);
    let der = pem_body_der(&id.certificate_pem());
    assert_eq!(id.thumbprint(), sha256_b64url(&der));
    let jwk = id.public_jwk().unwrap();
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert!(jwk.get("d").is_none(), "{jwk}");
    assert_eq!(jwk["x5c"][0], STANDARD.encode(&der));
    assert_eq!(jwk["x5t#S256"], id.thumbprint());
    // Every call makes a new key and certificate.
    let again = ClientIdentity::self_signed("agent-self").unwrap();
    assert_ne!(again.thumbprint(), id.thumbprint());
}

fn token_set(access: &str) -> TokenSet {
    TokenSet::new(
        AccessToken::new(access),
        TokenType::Bearer,
        SystemTime::now(),
    )
}

#[test]
fn mtls_cnf_x5t_s256_reads_the_unverified_payload() {
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let header = enc(json!({"alg": "ES256", "typ": "at+jwt"}));
    let bound = format!(
        "{header}.{}.c2ln",
        enc(json!({"sub": "x", "cnf": {"x5t#S256": "abc_-"}}))
    );
    assert_eq!(cnf_x5t_s256(&token_set(&bound)).as_deref(), Some("abc_-"));
    let unbound = format!("{header}.{}.c2ln", enc(json!({"sub": "x"})));
    assert_eq!(cnf_x5t_s256(&token_set(&unbound)), None);
    let dpop = format!("{header}.{}.c2ln", enc(json!({"cnf": {"jkt": "k"}})));
    assert_eq!(cnf_x5t_s256(&token_set(&dpop)), None);
    assert_eq!(cnf_x5t_s256(&token_set("opaque-token")), None);
    assert_eq!(cnf_x5t_s256(&token_set("a.!!!.c")), None);
    assert_eq!(cnf_x5t_s256(&token_set("a.b.c.d.e")), None);
}

// ------------------------------------------------------------------ in-process TLS server

/// A TLS server on 127.0.0.1 that requires a client certificate issued by `client_ca` and
/// answers every request with the SHA-256 thumbprint of that certificate.
async fn echo_server(server_pki: &Pki, client_ca: &Pki) -> String {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = rustls::RootCertStore::empty();
    client_roots.add(client_ca.cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(client_roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let s = server_pki.server();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(s.der.clone())],
            PrivateKeyDer::from_pem_slice(s.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // handshake refused (no or untrusted client certificate)
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let thumbprint = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| sha256_b64url(c.as_ref()))
                    .unwrap_or_default();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{thumbprint}",
                    thumbprint.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{}/whoami", addr.port())
}

#[tokio::test]
async fn mtls_server_sees_the_identity_thumbprint() {
    let pki = Pki::new("Test CA");
    let url = echo_server(&pki, &pki).await;
    let id = pki.client_identity("agent");
    let (status, body) = get(&transport(Some(&id), &pki.roots()), &url, None)
        .await
        .unwrap();
    println!("echoed x5t#S256 {body}, identity {}", id.thumbprint());
    assert_eq!(status, 200);
    assert_eq!(body, id.thumbprint());
}

#[tokio::test]
async fn mtls_rotation_is_a_new_transport_with_a_new_thumbprint() {
    let pki = Pki::new("Test CA");
    let url = echo_server(&pki, &pki).await;
    let old = pki.client_identity("agent");
    let new = pki.client_identity("agent");
    assert_ne!(old.thumbprint(), new.thumbprint());
    let t_old = transport(Some(&old), &pki.roots());
    let t_new = transport(Some(&new), &pki.roots());
    assert_eq!(get(&t_old, &url, None).await.unwrap().1, old.thumbprint());
    assert_eq!(get(&t_new, &url, None).await.unwrap().1, new.thumbprint());
    // The old transport keeps presenting the old certificate.
    assert_eq!(get(&t_old, &url, None).await.unwrap().1, old.thumbprint());
}

#[tokio::test]
async fn mtls_server_refuses_a_connection_without_identity() {
    let pki = Pki::new("Test CA");
    let url = echo_server(&pki, &pki).await;
    let err = get(&transport(None, &pki.roots()), &url, None)
        .await
        .unwrap_err();
    println!("without identity: {err:?}");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    // TLS 1.3: the client finishes its side of the handshake, then reads the server's alert.
    assert!(
        format!("{err:?}").contains("CertificateRequired"),
        "{err:?}"
    );
}

#[tokio::test]
async fn mtls_server_refuses_an_identity_from_another_ca() {
    let pki = Pki::new("Test CA");
    let rogue = Pki::new("Rogue CA");
    let url = echo_server(&pki, &pki).await;
    let id = rogue.client_identity("agent");
    let err = get(&transport(Some(&id), &pki.roots()), &url, None)
        .await
        .unwrap_err();
    println!("identity from another CA: {err:?}");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");
}

#[tokio::test]
async fn mtls_server_certificate_is_always_verified() {
    let pki = Pki::new("Test CA");
    let other = Pki::new("Other CA");
    let url = echo_server(&pki, &pki).await;
    let id = pki.client_identity("agent");
    // Built-in roots only: the test CA is unknown.
    let t = HttpTransport::with_identity(TransportConfig::default(), &id).unwrap();
    let err = get(&t, &url, None).await.unwrap_err();
    println!("untrusted server certificate: {err:?}");
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportErrorKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    // Another private root, with or without the built-in ones.
    for roots in [other.roots(), other.roots().without_builtin()] {
        let err = get(&transport(Some(&id), &roots), &url, None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Transport {
                    kind: TransportErrorKind::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // The right root alone is enough.
    let (status, _) = get(
        &transport(Some(&id), &pki.roots().without_builtin()),
        &url,
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
}

// ------------------------------------------------------------------ oidc-provider

struct Interop {
    provider: OidcProvider,
    api: String,
    _dir: tempfile::TempDir,
}

/// oidc-provider over HTTPS with a certificate from `pki`, trusting client certificates from
/// `pki`, with the built-in resource server and `clients`.
async fn start_provider(pki: &Pki, clients: Value) -> Option<Interop> {
    let dir = tempfile::tempdir().unwrap();
    let server = pki.server();
    let path = |name: &str, content: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let cfg = json!({
        "tls": {
            "cert": path("server.pem", &server.cert_pem),
            "key": path("server.key", &server.key_pem),
            "ca": path("ca.pem", &pki.ca_pem()),
        },
        "resource_server": true,
        "clients": clients,
    });
    let provider = OidcProvider::start(cfg).await?;
    assert!(provider.issuer.starts_with("https://127.0.0.1:"));
    let api = provider.resource.clone().unwrap();
    Some(Interop {
        provider,
        api,
        _dir: dir,
    })
}

/// An [`OAuthClient`] whose metadata has its plain `token_endpoint` pointed at a path that does
/// not exist, so a token can only come from the `mtls_endpoint_aliases` one.
async fn mtls_client(
    issuer: &str,
    transport: &HttpTransport,
    client_id: &str,
    auth: ClientAuth,
) -> OAuthClient {
    let discovered = AuthorizationServer::new(issuer, transport.clone()).unwrap();
    let md = discovered.metadata().await.unwrap();
    let alias = md
        .mtls_endpoint_aliases
        .as_ref()
        .and_then(|a| a.token_endpoint.clone())
        .expect("mtls_endpoint_aliases.token_endpoint");
    assert_eq!(md.endpoint(Endpoint::Token, true), Some(alias.as_str()));
    let mut md = (*md).clone();
    md.token_endpoint = Some(format!("{issuer}/not-the-mtls-alias"));
    assert_ne!(md.endpoint(Endpoint::Token, false), Some(alias.as_str()));
    let server = AuthorizationServer::from_metadata(md, transport.clone()).unwrap();
    OAuthClient::builder(server, client_id).auth(auth).build()
}

/// Gets a bound token for `identity` and checks it on the resource server: accepted over the
/// same certificate, refused without a certificate and over `other`.
async fn check_bound_token(
    it: &Interop,
    pki: &Pki,
    identity: &ClientIdentity,
    other: &ClientIdentity,
    client_id: &str,
    auth: ClientAuth,
) {
    let issuer = it.provider.issuer.as_str();
    let with_cert = transport(Some(identity), &pki.roots());
    let client = mtls_client(issuer, &with_cert, client_id, auth.clone()).await;
    let token = client
        .client_credentials(&TokenParams::new().resource(it.api.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", it.provider.stderr_log()));
    let cnf = cnf_x5t_s256(&token);
    println!(
        "{client_id}: cnf.x5t#S256 = {cnf:?}, identity thumbprint = {}",
        identity.thumbprint()
    );
    assert_eq!(cnf.as_deref(), Some(identity.thumbprint()));
    // The token set records the binding.
    let recorded = token.cnf.as_ref().expect("cnf recorded");
    assert_eq!(recorded.x5t_s256.as_deref(), Some(identity.thumbprint()));
    assert!(recorded.from_token);

    let at = token.access_token.secret();
    let url = format!("{}/whoami", it.api);
    let (status, body) = get(&with_cert, &url, Some(at)).await.unwrap();
    println!("{client_id}: resource with the certificate: {status} {body}");
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["cnf"]["x5t#S256"], identity.thumbprint());

    let no_cert = transport(None, &pki.roots());
    let (status, body) = get(&no_cert, &url, Some(at)).await.unwrap();
    println!("{client_id}: resource without a certificate: {status} {body}");
    assert_eq!(status, 401);

    let other_cert = transport(Some(other), &pki.roots());
    let (status, body) = get(&other_cert, &url, Some(at)).await.unwrap();
    println!("{client_id}: resource with another certificate: {status} {body}");
    assert_eq!(status, 401);

    // The token endpoint refuses the client without its certificate.
    let anonymous = mtls_client(issuer, &no_cert, client_id, auth).await;
    let err = anonymous
        .client_credentials(&TokenParams::new().resource(it.api.clone()))
        .await
        .unwrap_err();
    println!("{client_id}: token request without a certificate: {err}");
    assert_eq!(
        err.oauth_error().map(|e| e.error.as_str()),
        Some("invalid_client")
    );
}

#[tokio::test]
async fn mtls_interop_tls_client_auth_bound_token() {
    let pki = Pki::new("Test CA");
    let clients = json!([{
        "client_id": "mtls-pki",
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=agent,O=Example",
        "tls_client_certificate_bound_access_tokens": true,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": []
    }]);
    let Some(it) = start_provider(&pki, clients).await else {
        return;
    };
    let identity = pki.client_identity("agent");
    // Same CA, same organisation, another subject.
    let other = pki.client_identity("intruder");
    check_bound_token(
        &it,
        &pki,
        &identity,
        &other,
        "mtls-pki",
        ClientAuth::tls_client_auth(),
    )
    .await;

    // A certificate from the same CA with another subject does not authenticate this client.
    let t = transport(Some(&other), &pki.roots());
    let client = mtls_client(
        &it.provider.issuer,
        &t,
        "mtls-pki",
        ClientAuth::tls_client_auth(),
    )
    .await;
    let err = client
        .client_credentials(&TokenParams::new().resource(it.api.clone()))
        .await
        .unwrap_err();
    println!("mtls-pki with subject CN=intruder: {err}");
    assert_eq!(
        err.oauth_error().map(|e| e.error.as_str()),
        Some("invalid_client")
    );
}

#[tokio::test]
async fn mtls_interop_self_signed_tls_client_auth_bound_token() {
    let pki = Pki::new("Test CA");
    let identity = ClientIdentity::self_signed("agent-self").unwrap();
    let clients = json!([{
        "client_id": "mtls-self",
        "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "jwks": { "keys": [identity.public_jwk().unwrap()] },
        "tls_client_certificate_bound_access_tokens": true,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": []
    }]);
    let Some(it) = start_provider(&pki, clients).await else {
        return;
    };
    // Another self-signed certificate, not registered.
    let other = ClientIdentity::self_signed("agent-self").unwrap();
    check_bound_token(
        &it,
        &pki,
        &identity,
        &other,
        "mtls-self",
        ClientAuth::self_signed_tls_client_auth(),
    )
    .await;

    let t = transport(Some(&other), &pki.roots());
    let client = mtls_client(
        &it.provider.issuer,
        &t,
        "mtls-self",
        ClientAuth::self_signed_tls_client_auth(),
    )
    .await;
    let err = client
        .client_credentials(&TokenParams::new().resource(it.api.clone()))
        .await
        .unwrap_err();
    println!("mtls-self with an unregistered certificate: {err}");
    assert_eq!(
        err.oauth_error().map(|e| e.error.as_str()),
        Some("invalid_client")
    );
}

#[tokio::test]
async fn mtls_interop_agent_calls_over_its_certificate_and_rotates() {
    let pki = Pki::new("Test CA");
    let clients = json!([{
        "client_id": "mtls-pki",
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=agent,O=Example",
        "tls_client_certificate_bound_access_tokens": true,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": []
    }]);
    let Some(it) = start_provider(&pki, clients).await else {
        return;
    };
    let first = pki.client_identity("agent");
    let agent = crate::support::prelude::Agent::builder()
        .issuer(&it.provider.issuer)
        .client_id("mtls-pki")
        .client_auth(ClientAuth::tls_client_auth())
        .client_identity(first.clone())
        .trust_roots(pki.roots())
        .resource(&it.api)
        .dpop_mode(crate::support::prelude::DpopMode::Off)
        .build()
        .await
        .unwrap();
    let url = format!("{}/whoami", it.api);
    let resp = agent.get(&url).send().await.unwrap();
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(resp.status(), 200, "{body}");
    assert_eq!(body["cnf"]["x5t#S256"], first.thumbprint());

    // Certificate rotation: same subject, new key. The rotated agent presents the new
    // certificate and gets a token bound to it; the old token is not reused.
    let second = pki.client_identity("agent");
    assert_ne!(first.thumbprint(), second.thumbprint());
    let rotated = agent.with_client_identity(second.clone()).await.unwrap();
    let resp = rotated.get(&url).send().await.unwrap();
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(resp.status(), 200, "{body}");
    assert_eq!(body["cnf"]["x5t#S256"], second.thumbprint());
    let old = agent.access_token(Some(&it.api)).await.unwrap();
    let new = rotated.access_token(Some(&it.api)).await.unwrap();
    assert_ne!(
        old.token().access_token.fingerprint(),
        new.token().access_token.fingerprint()
    );
    println!(
        "agent rotation: {} -> {}",
        first.thumbprint(),
        second.thumbprint()
    );
}
