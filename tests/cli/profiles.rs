//! Settings from flags, then `AGENT_OAUTH_*`, then the config file; dynamic registration and
//! client ID metadata documents.

use serde_json::json;

use crate::harness::{Home, Serve};

#[test]
fn cli_profile_settings_come_from_flags_then_env_then_config_file() {
    let home = Home::new();
    let mut serve = Serve::start(&[]);
    let secret_file = home.path().join("agent.secret");
    std::fs::write(&secret_file, "agent-secret\n").unwrap();
    let config = json!({"profiles": {
        "default": {"issuer": "http://127.0.0.1:1", "client_id": "nobody"},
        "work": {
            "issuer": serve.issuer,
            "client_id": "agent",
            "client_secret_file": secret_file,
            "scope": "read",
            "resource": serve.resource,
        },
    }});
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();

    // The profile alone is enough.
    let run = home.run(&["token", "--profile", "work", "--json"], &[]);
    run.ok();
    assert_eq!(run.json()["scope"], "read");
    // The environment beats the file ...
    let run = home.run(
        &["token", "--json"],
        &[
            ("AGENT_OAUTH_PROFILE", "work"),
            ("AGENT_OAUTH_SCOPE", "write"),
        ],
    );
    run.ok();
    assert_eq!(run.json()["scope"], "write");
    // ... and a flag beats the environment.
    let run = home.run(
        &["token", "--json", "--scope", "admin"],
        &[
            ("AGENT_OAUTH_PROFILE", "work"),
            ("AGENT_OAUTH_SCOPE", "write"),
        ],
    );
    run.ok();
    assert_eq!(run.json()["scope"], "admin");
    assert_eq!(serve.stats()["grants"]["client_credentials"], 3);
    // The default profile points nowhere: the file was read.
    home.run(&["token"], &[("AGENT_OAUTH_CLIENT_SECRET", "x")])
        .expect_code(3);
    // A profile that does not exist is named.
    let run = home.run(&["token", "--profile", "nope"], &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("profile `nope` is not in"),
        "{}",
        run.stderr
    );
    // Each profile keeps its own DPoP key.
    assert!(home.path().join("keys/work.pem").exists());
}

#[test]
fn cli_register_creates_a_client_that_gets_tokens() {
    let home = Home::new();
    let mut serve = Serve::start(&["--registration"]);
    let secret = home.path().join("registered.secret");
    let secret_s = secret.display().to_string();
    let run = home.run(
        &[
            "register",
            "--json",
            "--issuer",
            &serve.issuer,
            "--client-name",
            "cli test",
            "--grant-type",
            "client_credentials",
            "--auth-method",
            "client_secret_basic",
            "--secret-out",
            &secret_s,
        ],
        &[],
    );
    run.ok();
    let reg = run.json();
    let client_id = reg["client_id"].as_str().expect("client_id").to_owned();
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    assert!(!run
        .stdout
        .contains(std::fs::read_to_string(&secret).unwrap().trim()));
    let run = home.run(
        &[
            "token",
            "--issuer",
            &serve.issuer,
            "--client-id",
            &client_id,
            "--client-secret-file",
            &secret_s,
            "--scope",
            "read",
        ],
        &[],
    );
    run.ok();
    assert_eq!(serve.stats()["grants"]["client_credentials"], 1);

    // Without a place to keep the issued secret, nothing is printed and the command fails.
    let run = home.run(
        &[
            "register",
            "--issuer",
            &serve.issuer,
            "--grant-type",
            "client_credentials",
            "--auth-method",
            "client_secret_basic",
        ],
        &[],
    );
    run.expect_code(2);
    assert!(run.stderr.contains("--secret-out"), "{}", run.stderr);
}

#[test]
fn cli_client_metadata_renders_a_valid_document() {
    let home = Home::new();
    let url = "https://agent.example/oauth-client.json";
    let run = home.run(
        &[
            "client-metadata",
            "--client-id",
            url,
            "--client-name",
            "my agent",
            "--redirect-uri",
            "http://127.0.0.1/callback",
        ],
        &[],
    );
    run.ok();
    let doc = run.json();
    assert_eq!(doc["client_id"], url);
    assert_eq!(doc["client_name"], "my agent");
    assert_eq!(doc["redirect_uris"], json!(["http://127.0.0.1/callback"]));
    agent_oauth::registration::validate_client_id_metadata_document(run.stdout.as_bytes(), url)
        .expect("the library accepts the rendered document");
    // A client id that is not an https URL is refused.
    home.run(
        &["client-metadata", "--client-id", "http://agent.example/x"],
        &[],
    )
    .expect_code(2);
}

/// `curl URL` with no issuer, as an MCP client: the resource names its server, the agent
/// registers itself there (RFC 7591) and keeps the registration for the next command.
#[test]
fn cli_curl_with_a_url_alone_discovers_and_registers_once() {
    let home = Home::new();
    let serve = Serve::start(&["--registration"]);
    let url = format!("{}/from-url", serve.resource);
    let first = home.run(&["curl", "--scope", "read", &url], &[]);
    first.ok();
    let body: serde_json::Value = serde_json::from_str(&first.stdout).expect("JSON body");
    let client_id = body["client_id"].as_str().expect("client id").to_owned();
    assert!(!["agent", "agent-post", "public-agent"].contains(&client_id.as_str()));
    let second = home.run(&["curl", "--scope", "read", &url], &[]);
    second.ok();
    let body: serde_json::Value = serde_json::from_str(&second.stdout).expect("JSON body");
    assert_eq!(
        body["client_id"],
        client_id.as_str(),
        "the stored registration is reused"
    );

    // Without registration at the server, a pre-registered client at a trusted issuer.
    let plain = Serve::start(&[]);
    let url = format!("{}/x", plain.resource);
    let run = home.run(
        &[
            "curl",
            "--trust-issuer",
            &plain.issuer,
            "--client-id",
            "agent",
            "--scope",
            "read",
            &url,
        ],
        &[("AGENT_OAUTH_CLIENT_SECRET", "agent-secret")],
    );
    run.ok();
    let body: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["client_id"], "agent");
}

/// A key from `keygen` as a client-assertion key: registered with its public JWK, then used
/// for `private_key_jwt` (RFC 7523) at the token endpoint.
#[test]
fn cli_keygen_key_registers_and_authenticates_a_private_key_jwt_client() {
    let home = Home::new();
    let mut serve = Serve::start(&["--registration"]);
    let key = home.path().join("client.pem");
    let key_s = key.display().to_string();
    let run = home.run(&["keygen", "--out", &key_s, "--json"], &[]);
    run.ok();
    let jwk = home.path().join("client.jwk.json");
    std::fs::write(&jwk, run.json()["public_jwk"].to_string()).unwrap();
    let jwk_s = jwk.display().to_string();
    let run = home.run(
        &[
            "register",
            "--json",
            "--issuer",
            &serve.issuer,
            "--grant-type",
            "client_credentials",
            "--auth-method",
            "private_key_jwt",
            "--jwks",
            &jwk_s,
        ],
        &[],
    );
    run.ok();
    let client_id = run.json()["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let run = home.run(
        &[
            "token",
            "--json",
            "--issuer",
            &serve.issuer,
            "--client-id",
            &client_id,
            "--client-key",
            &key_s,
            "--scope",
            "read",
        ],
        &[],
    );
    run.ok();
    assert_eq!(run.json()["scope"], "read");
    assert_eq!(serve.stats()["grants"]["client_credentials"], 1);
    // Another key is refused by the server: an OAuth error.
    let other = home.path().join("other.pem");
    let other_s = other.display().to_string();
    home.run(&["keygen", "--out", &other_s], &[]).ok();
    let run = home.run(
        &[
            "token",
            "--issuer",
            &serve.issuer,
            "--client-id",
            &client_id,
            "--client-key",
            &other_s,
        ],
        &[],
    );
    run.expect_code(4);
    assert!(run.stderr.contains("invalid_client"), "{}", run.stderr);
}
