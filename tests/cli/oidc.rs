//! The binary against node oidc-provider 9 (`tests/interop/server.mjs`), with DPoP nonces
//! required at the token endpoint and the resource.

use serde_json::{json, Value};

use crate::harness::{user_code, Background, Home};
use crate::support::oidc_provider::OidcProvider;

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn config() -> Value {
    json!({
        "clients": [
            {
                "client_id": "svc",
                "client_secret": "svc-secret",
                "grant_types": ["client_credentials", TE],
                "redirect_uris": [],
                "response_types": []
            },
            {
                "client_id": "device-app",
                "token_endpoint_auth_method": "none",
                "grant_types": [DEVICE, "refresh_token"],
                "redirect_uris": [],
                "response_types": []
            }
        ],
        "token_exchange": true,
        "dpop_nonce": true,
        "resource_server": true,
        "resource_nonce": true,
        "dpop_bound_access_tokens_required": true,
    })
}

fn start() -> Option<OidcProvider> {
    OidcProvider::start_blocking(config())
}

const SVC_SECRET: (&str, &str) = ("AGENT_OAUTH_CLIENT_SECRET", "svc-secret");

fn svc<'a>(p: &'a OidcProvider, resource: &'a str) -> Vec<&'a str> {
    vec![
        "--issuer",
        &p.issuer,
        "--client-id",
        "svc",
        "--scope",
        "read",
        "--resource",
        resource,
    ]
}

#[test]
fn cli_oidc_provider_token_client_credentials_and_curl_with_dpop_nonces() {
    let Some(p) = start() else { return };
    let resource = p.resource.clone().expect("resource server");
    let home = Home::new();
    let mut args = vec!["token", "--json"];
    args.extend(svc(&p, &resource));
    let run = home.run(&args, &[SVC_SECRET]);
    run.ok();
    let tokens = run.json();
    assert_eq!(tokens["token_type"], "DPoP");
    assert!(tokens["cnf"]["jkt"].is_string());

    let mut args = vec!["curl", "-v"];
    args.extend(svc(&p, &resource));
    let url = format!("{resource}/things");
    args.push(&url);
    let run = home.run(&args, &[SVC_SECRET]);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["client_id"], "svc");
    assert_eq!(
        body["cnf"]["jkt"], tokens["cnf"]["jkt"],
        "same profile key in both commands"
    );
    assert!(
        run.stderr.contains(&format!("GET {url} -> 200")),
        "{}",
        run.stderr
    );
}

#[test]
fn cli_oidc_provider_discover_walks_from_the_resource_to_the_server() {
    let Some(p) = start() else { return };
    let resource = p.resource.clone().expect("resource server");
    let run = Home::new().run(&["discover", "--json", &format!("{resource}/x")], &[]);
    run.ok();
    let steps = run.json()["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps[0]["detail"]["status"], 401);
    assert_eq!(steps[1]["detail"]["resource"], resource.as_str());
    assert_eq!(steps[2]["detail"]["issuer"], p.issuer.as_str());
    assert!(
        steps[3]["summary"].as_str().unwrap_or("").contains("ES256"),
        "{:?}",
        steps[3]
    );
}

#[test]
fn cli_oidc_provider_device_login() {
    let Some(p) = start() else { return };
    let resource = p.resource.clone().expect("resource server");
    let home = Home::new();
    let user = [
        "--issuer",
        &p.issuer,
        "--client-id",
        "device-app",
        "--scope",
        "read",
        "--resource",
        &resource,
    ];
    let mut args = vec!["token", "--device"];
    args.extend(user);
    let mut bg = Background::spawn(&home, &args, &[]);
    let code = bg.wait_for(user_code);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(p.approve_device(&code));
    let run = bg.finish(60);
    run.ok();
    assert!(run.stdout.contains("token type:    DPoP"), "{}", run.stdout);
    assert!(run.stdout.contains("refresh token: fp="), "{}", run.stdout);

    // A second process calls the resource as the user, from the stored grant.
    let mut call = vec!["curl"];
    call.extend(user);
    let url = format!("{resource}/me");
    call.push(&url);
    let run = home.run(&call, &[]);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["sub"], "agent-user");
}

#[test]
fn cli_oidc_provider_inspect_shows_the_act_chain_of_an_exchanged_token() {
    let Some(p) = start() else { return };
    let resource = p.resource.clone().expect("resource server");
    let home = Home::new();
    let base = svc(&p, &resource);
    let file = |name: &str, extra: &[&str]| -> String {
        let mut args = vec!["token", "--json"];
        args.extend(extra);
        args.extend(base.iter().copied());
        let run = home.run(&args, &[SVC_SECRET]);
        run.ok();
        let path = home.path().join(name);
        std::fs::write(&path, run.json()["access_token"].as_str().expect("token")).unwrap();
        format!("@{}", path.display())
    };
    let subject = file("subject", &[]);
    let once = file(
        "once",
        &[
            "--exchange",
            "--subject-token",
            &subject,
            "--actor-token",
            &subject,
        ],
    );
    let twice = file(
        "twice",
        &[
            "--exchange",
            "--subject-token",
            &once,
            "--actor-token",
            &subject,
        ],
    );
    let run = home.run(&["inspect", "--json", &twice], &[]);
    run.ok();
    let json = run.json();
    assert_eq!(json["act_chain"], json!(["svc", "svc"]), "{json}");
    assert_eq!(json["claims"]["iss"], p.issuer.as_str());
    let run = home.run(&["inspect", &twice], &[]);
    run.ok();
    assert!(
        run.stdout.contains("act chain: 2 actor(s)"),
        "{}",
        run.stdout
    );
}
