//! Workload identity from the shell: `token` and `curl` with a platform token file (the JWT
//! bearer grant, no client credentials), rotated between invocations, and a SPIFFE JWT-SVID as
//! the client assertion. The authorization server is the embedded one, trusting a stand-in
//! platform, run in this process.

use std::time::Duration;

use agent_oauth::testkit::{TestIdentityIssuer, TestServer, TestServerConfig};
use serde_json::Value;

use crate::harness::Home;
use crate::prelude::{TestClient, TestClientAuth};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn cli_workload_identity_token_and_curl_with_a_rotating_token_file() {
    let rt = runtime();
    let platform = TestIdentityIssuer::new("https://kubernetes.default.svc");
    let server = rt.block_on(TestServer::start_with(
        TestServerConfig::default().with_trusted_issuer(platform.issuer(), platform.public_jwk()),
    ));
    let home = Home::new();
    let file = home.path().join("sa-token");
    let rotate = |sub: &str| {
        let tmp = home.path().join("sa-token.tmp");
        std::fs::write(
            &tmp,
            platform.mint(sub, server.issuer(), Duration::from_secs(600)),
        )
        .unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    rotate("system:serviceaccount:ci:builder");
    let file_s = file.to_string_lossy().into_owned();
    let flags = [
        "--issuer",
        server.issuer(),
        "--assertion-file",
        &file_s,
        "--scope",
        "read",
    ];

    let mut args = vec!["token", "--json", "--no-store"];
    args.extend(flags);
    let run = home.run(&args, &[]);
    run.ok();
    let t = run.json();
    assert_eq!(t["scope"], "read");
    assert_eq!(server.stats().grants.jwt_bearer, 1);
    // No client credentials at all went out, and the token's subject is the workload.
    let token = t["access_token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(claims["sub"], "system:serviceaccount:ci:builder");

    rotate("system:serviceaccount:ci:deployer");
    let resource = server.resource_url();
    let mut args = vec!["curl", "--no-store"];
    args.extend(flags);
    args.push(&resource);
    let run = home.run(&args, &[]);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(body["sub"], "system:serviceaccount:ci:deployer");
    assert_eq!(server.stats().grants.jwt_bearer, 2);

    // The token named in the environment, by the variable's name.
    let mut args = vec!["token", "--no-store", "--issuer", server.issuer()];
    args.extend(["--assertion-env", "WORKLOAD_TOKEN"]);
    let jwt = platform.mint("env-workload", server.issuer(), Duration::from_secs(600));
    home.run(&args, &[("WORKLOAD_TOKEN", &jwt)]).ok();
    assert_eq!(server.stats().grants.jwt_bearer, 3);
    // Unset: a usage error naming the variable.
    let run = home.run(&args, &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("WORKLOAD_TOKEN"), "{}", run.stderr);

    // An expired token never leaves: a clear error, no request.
    std::fs::write(
        &file,
        platform.mint_claims(serde_json::json!({
            "iss": platform.issuer(), "sub": "old", "aud": server.issuer(), "iat": 1, "exp": 2,
        })),
    )
    .unwrap();
    let before = server.stats().token_requests;
    let mut args = vec!["token", "--no-store"];
    args.extend(flags);
    let run = home.run(&args, &[]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
    assert_eq!(server.stats().token_requests, before);
    rt.block_on(async move { drop(server) });
}

#[test]
fn cli_workload_spiffe_svid_authenticates_client_credentials() {
    let rt = runtime();
    let spire = TestIdentityIssuer::new("https://spire.example.org");
    let spiffe_id = "spiffe://example.org/ns/ci/sa/agent";
    let server = rt.block_on(TestServer::start_with(
        TestServerConfig::default()
            .with_trusted_issuer(spire.issuer(), spire.public_jwk())
            .with_client(TestClient::new(spiffe_id, TestClientAuth::SpiffeJwt)),
    ));
    let home = Home::new();
    let svid = home.path().join("svid.jwt");
    std::fs::write(
        &svid,
        spire.mint(spiffe_id, server.issuer(), Duration::from_secs(300)),
    )
    .unwrap();
    let svid_s = svid.to_string_lossy().into_owned();
    let run = home.run(
        &[
            "token",
            "--json",
            "--no-store",
            "--issuer",
            server.issuer(),
            "--client-id",
            spiffe_id,
            "--spiffe-svid",
            &svid_s,
        ],
        &[],
    );
    run.ok();
    assert_eq!(
        claims(run.json()["access_token"].as_str().unwrap())["client_id"],
        spiffe_id
    );
    assert_eq!(server.stats().grants.client_credentials, 1);
    rt.block_on(async move { drop(server) });
}

fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}
