//! Mutual TLS (feature `mtls`): `--cert/--key` authenticate the client (`tls_client_auth`) and
//! bind its tokens to the certificate at oidc-provider over HTTPS; `--ca` trusts its server
//! certificate.

use serde_json::{json, Value};

use crate::harness::Home;
use crate::support::mtls_pki::{write, MtlsProvider, Pki};

#[test]
fn cli_mtls_token_and_curl_with_a_client_certificate_at_oidc_provider() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
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
    let Some(it) = rt.block_on(MtlsProvider::start(&pki, clients)) else {
        return;
    };
    let client = pki.client("agent");
    let cert = write(&it.dir, "client.pem", &client.cert_pem);
    let key = write(&it.dir, "client.key", &client.key_pem);
    let ca = write(&it.dir, "ca-client.pem", &pki.ca_pem());
    let home = Home::new();
    let base = [
        "--issuer",
        &it.provider.issuer,
        "--client-id",
        "mtls-pki",
        "--tls-client-auth",
        "--cert",
        &cert,
        "--key",
        &key,
        "--ca",
        &ca,
        "--scope",
        "read",
        "--resource",
        &it.api,
    ];
    let mut args = vec!["token", "--json"];
    args.extend(base);
    let run = home.run(&args, &[]);
    run.ok();
    let tokens = run.json();
    let x5t = tokens["cnf"]["x5t#S256"]
        .as_str()
        .expect("certificate-bound")
        .to_owned();

    let mut args = vec!["curl"];
    args.extend(base);
    let url = format!("{}/whoami", it.api);
    args.push(&url);
    let run = home.run(&args, &[]);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["cnf"]["x5t#S256"], x5t.as_str(), "{body}");
    assert_eq!(body["client_id"], "mtls-pki");

    // Without --ca the server's certificate is not trusted: an HTTP-class failure.
    let run = home.run(
        &[
            "token",
            "--issuer",
            &it.provider.issuer,
            "--client-id",
            "mtls-pki",
            "--tls-client-auth",
            "--cert",
            &cert,
            "--key",
            &key,
        ],
        &[],
    );
    run.expect_code(3);
}
