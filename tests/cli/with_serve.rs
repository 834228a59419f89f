//! The binary against `agent-oauth serve` run as a separate process.

use serde_json::Value;

use crate::harness::{agent_flags, strs, user_code, Background, Home, Serve};

const SECRET: (&str, &str) = ("AGENT_OAUTH_CLIENT_SECRET", "agent-secret");

#[test]
fn cli_serve_prints_issuer_resource_and_credentials_and_exits_when_stdin_closes() {
    let home = Home::new();
    let mut serve = Serve::start(&[]);
    assert!(serve.issuer.starts_with("http://127.0.0.1:"));
    assert_eq!(serve.resource, format!("{}/api", serve.issuer));
    // The issuer really serves metadata: discovery walks from the resource to it.
    let run = home.run(
        &["discover", "--json", &format!("{}/x", serve.resource)],
        &[],
    );
    run.ok();
    let steps = run.json()["steps"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        names,
        [
            "request",
            "resource metadata",
            "authorization server",
            "capabilities",
            "registration"
        ]
    );
    assert_eq!(steps[0]["detail"]["status"], 401);
    assert_eq!(steps[2]["detail"]["issuer"], serve.issuer.as_str());
    // An issuer directly: its metadata and registration options only.
    let run = home.run(&["discover", "--issuer", &serve.issuer], &[]);
    run.ok();
    assert!(
        run.stdout.starts_with(&format!(
            "authorization server: {}: token {}/token",
            serve.issuer, serve.issuer
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("registration: pre-registered client id"),
        "{}",
        run.stdout
    );
    assert_eq!(serve.stats()["token_requests"], 0);
    assert!(serve.close_and_wait().success());
}

#[test]
fn cli_token_client_credentials_prints_a_summary_and_the_token_only_when_asked() {
    let home = Home::new();
    let mut serve = Serve::start(&[]);
    let mut flags = agent_flags(&serve.issuer);
    flags.extend(["--resource".to_owned(), serve.resource.clone()]);
    let mut args = vec!["token"];
    args.extend(strs(&flags));
    let run = home.run(&args, &[SECRET]);
    run.ok();
    assert!(run.stdout.contains("token type:    DPoP"), "{}", run.stdout);
    assert!(run.stdout.contains("scope:         read"), "{}", run.stdout);
    assert!(
        run.stdout.contains("binding:       DPoP jkt="),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("eyJ"),
        "the token is printed without --print-token"
    );
    assert_eq!(serve.stats()["grants"]["client_credentials"], 1);

    args.push("--json");
    let run = home.run(&args, &[SECRET]);
    run.ok();
    let tokens = run.json();
    assert_eq!(tokens["token_type"], "DPoP");
    let jwt = tokens["access_token"].as_str().expect("access token");
    // The token is bound to the profile's key, kept under the config dir for later commands.
    let key = std::fs::read_to_string(home.path().join("keys/default.pem")).expect("profile key");
    assert!(key.contains("BEGIN PRIVATE KEY"));
    let inspected = home.run_with_stdin(&["inspect", "--json"], &[], jwt);
    inspected.ok();
    let claims = &inspected.json()["claims"];
    assert_eq!(claims["cnf"]["jkt"], tokens["cnf"]["jkt"]);
    assert_eq!(claims["aud"], serve.resource.as_str());
    assert_eq!(claims["scope"], "read");
    assert_eq!(serve.stats()["grants"]["client_credentials"], 2);
}

#[test]
fn cli_curl_with_dpop_answers_the_nonces_of_server_and_resource() {
    let home = Home::new();
    let mut serve = Serve::start(&["--nonce", "--resource-nonce", "--dpop-required"]);
    let mut args = vec!["curl", "-v"];
    let flags = agent_flags(&serve.issuer);
    args.extend(strs(&flags));
    let url = format!("{}/items/7", serve.resource);
    args.push(&url);
    let run = home.run(&args, &[SECRET]);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["ok"], true);
    assert_eq!(body["path"], "/api/items/7");
    let jkt = body["jkt"].as_str().expect("DPoP-bound token");
    assert!(
        run.stderr.contains(&format!("GET {url} -> 200")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(jkt),
        "trace names the key: {}",
        run.stderr
    );
    let stats = serve.stats();
    // One nonce challenge at the token endpoint and one at the resource, each answered once.
    assert_eq!(stats["nonce_challenges"], 2, "{stats}");
    assert_eq!(stats["grants"]["client_credentials"], 1);
}

#[test]
fn cli_curl_streams_a_post_body_from_a_file() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let body = home.path().join("body.json");
    std::fs::write(&body, br#"{"x":1}"#).unwrap();
    let data = format!("@{}", body.display());
    let mut args = vec![
        "curl",
        "--data-binary",
        &data,
        "-H",
        "content-type: application/json",
        "-i",
    ];
    let flags = agent_flags(&serve.issuer);
    args.extend(strs(&flags));
    let url = format!("{}/things", serve.resource);
    args.push(&url);
    let run = home.run(&args, &[SECRET]);
    run.ok();
    assert!(run.stdout.starts_with("HTTP/1.1 200 OK"), "{}", run.stdout);
    let json_start = run.stdout.find('{').expect("body");
    let got: Value = serde_json::from_str(&run.stdout[json_start..]).expect("JSON body");
    assert_eq!(got["method"], "POST");
}

/// Device login, then `curl` in a second process: the stored grant is used, no second login.
#[test]
fn cli_device_login_then_curl_reuses_the_cached_grant() {
    let home = Home::new();
    let mut serve = Serve::start(&["--device-interval", "1"]);
    let issuer = serve.issuer.clone();
    let resource = serve.resource.clone();
    let user = [
        "--issuer",
        &issuer,
        "--client-id",
        "public-agent",
        "--scope",
        "read offline_access",
        "--resource",
        &resource,
    ];
    let mut login: Vec<&str> = vec!["token", "--device"];
    login.extend(user);
    let mut bg = Background::spawn(&home, &login, &[]);
    let code = bg.wait_for(user_code);
    assert_eq!(
        serve.ask(&format!("approve-device {code}"))["approved"],
        true
    );
    let run = bg.finish(30);
    run.ok();
    assert!(run.stdout.contains("refresh token: fp="), "{}", run.stdout);
    let after_login = serve.stats();
    assert_eq!(after_login["grants"]["device_code"], 1);

    let mut call: Vec<&str> = vec!["curl"];
    call.extend(user);
    call.push(&resource);
    let run = home.run(&call, &[]);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["sub"], "agent-user", "called as the logged-in user");
    let after_curl = serve.stats();
    assert_eq!(after_curl["grants"]["device_code"], 1, "no second login");
    let spent = after_curl["token_requests"].as_u64().unwrap()
        - after_login["token_requests"].as_u64().unwrap();
    assert_eq!(
        spent, 0,
        "the stored access token is used as it is: {after_curl}"
    );
    assert_eq!(after_curl["resource_requests"], 1);

    // A third process: still the same grant.
    let run = home.run(&call, &[]);
    run.ok();
    let third = serve.stats();
    assert_eq!(third["token_requests"], after_login["token_requests"]);
    assert_eq!(third["grants"]["device_code"], 1);
    assert_eq!(third["grants"]["client_credentials"], 0);

    // The server ends the grant: the next call needs the user (exit 5) with a hint.
    serve.ask("revoke-all");
    let run = home.run(&call, &[]);
    run.expect_code(5);
    assert!(run.stderr.contains("hint: log in again"), "{}", run.stderr);
}

#[test]
fn cli_code_login_through_the_loopback_listener() {
    let home = Home::new();
    let mut serve = Serve::start(&[]);
    let issuer = serve.issuer.clone();
    let mut bg = Background::spawn(
        &home,
        &[
            "token",
            "--code",
            "--no-browser",
            "--issuer",
            &issuer,
            "--client-id",
            "public-agent",
            "--scope",
            "read",
        ],
        &[],
    );
    let url = bg.wait_for(crate::harness::authorization_url);
    // The embedded server approves at once and redirects to the CLI's listener.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (status, text) = rt.block_on(async {
        let page = reqwest::get(&url)
            .await
            .expect("follow the authorization URL");
        (page.status(), page.text().await.unwrap_or_default())
    });
    assert_eq!(status, 200);
    assert!(text.contains("Authorization received"), "{text}");
    let run = bg.finish(30);
    run.ok();
    assert!(run.stdout.contains("refresh token: fp="), "{}", run.stdout);
    assert_eq!(serve.stats()["grants"]["authorization_code"], 1);
}

/// `curl --device`: a call that needs a user grant starts the device flow itself.
#[test]
fn cli_curl_logs_the_user_in_with_the_device_flow_when_needed() {
    let home = Home::new();
    let mut serve = Serve::start(&["--device-interval", "1"]);
    let issuer = serve.issuer.clone();
    let resource = serve.resource.clone();
    let url = format!("{resource}/mine");
    let mut bg = Background::spawn(
        &home,
        &[
            "curl",
            "--device",
            "--issuer",
            &issuer,
            "--client-id",
            "public-agent",
            "--scope",
            "read",
            "--resource",
            &resource,
            &url,
        ],
        &[],
    );
    let code = bg.wait_for(user_code);
    assert_eq!(
        serve.ask(&format!("approve-device {code}"))["approved"],
        true
    );
    let run = bg.finish(30);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["sub"], "agent-user");
    assert_eq!(body["path"], "/api/mine");
    assert_eq!(serve.stats()["grants"]["device_code"], 1);
}

/// An event-stream answer (the MCP resource's SSE reply) is written through as it arrives.
#[test]
fn cli_curl_passes_an_event_stream_through() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let mcp = format!("{}/mcp", serve.issuer);
    let flags = agent_flags(&serve.issuer);
    let mut args = vec![
        "curl",
        "-H",
        "accept: application/json, text/event-stream",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    ];
    args.extend(strs(&flags));
    args.push(&mcp);
    let run = home.run(&args, &[SECRET]);
    run.ok();
    let data = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or_else(|| panic!("no SSE data line:\n{}", run.stdout));
    let message: Value = serde_json::from_str(data.trim()).expect("JSON-RPC message");
    let tools: Vec<&str> = message["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tools, ["echo", "add"]);
}

/// A token store file that is not what the store wrote: one error line naming the store, a
/// hint, exit 1, never a panic.
#[test]
fn cli_a_corrupt_token_store_is_a_clear_error() {
    let home = Home::new();
    let mut serve = Serve::start(&["--device-interval", "1"]);
    let issuer = serve.issuer.clone();
    let user = [
        "--issuer",
        &issuer,
        "--client-id",
        "public-agent",
        "--scope",
        "read offline_access",
    ];
    let mut login = vec!["token", "--device"];
    login.extend(user);
    let mut bg = Background::spawn(&home, &login, &[]);
    let code = bg.wait_for(user_code);
    serve.ask(&format!("approve-device {code}"));
    bg.finish(30).ok();
    let tokens = home.path().join("tokens");
    let mut corrupted = 0;
    for entry in std::fs::read_dir(&tokens).expect("token dir") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::write(&path, b"{ not json").unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "no grant file in {}", tokens.display());
    let mut call = vec!["curl"];
    call.extend(user);
    let url = format!("{issuer}/api");
    call.push(&url);
    let run = home.run(&call, &[]);
    run.expect_code(1);
    assert!(
        run.stderr
            .starts_with("error: token store error: corrupt token file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: check the token directory"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// `curl --code`: a call that needs a user grant prints the authorization URL and finishes
/// when the browser comes back to the loopback listener.
#[test]
fn cli_curl_logs_the_user_in_through_the_browser_when_needed() {
    let home = Home::new();
    let mut serve = Serve::start(&[]);
    let issuer = serve.issuer.clone();
    let resource = serve.resource.clone();
    let url = format!("{resource}/mine");
    let mut bg = Background::spawn(
        &home,
        &[
            "curl",
            "--code",
            "--issuer",
            &issuer,
            "--client-id",
            "public-agent",
            "--scope",
            "read",
            "--resource",
            &resource,
            &url,
        ],
        &[],
    );
    let login = bg.wait_for(crate::harness::authorization_url);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = rt.block_on(async { reqwest::get(&login).await.expect("browser").status() });
    assert_eq!(status, 200);
    let run = bg.finish(30);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["sub"], "agent-user");
    assert_eq!(serve.stats()["grants"]["authorization_code"], 1);
}

/// Once the stored access token has expired, the next process refreshes it from the stored
/// refresh token (rotated and stored again), without a new login.
#[test]
fn cli_a_later_command_refreshes_the_stored_grant() {
    let home = Home::new();
    let mut serve = Serve::start(&["--device-interval", "1", "--access-token-ttl", "2"]);
    let issuer = serve.issuer.clone();
    let resource = serve.resource.clone();
    let user = [
        "--issuer",
        &issuer,
        "--client-id",
        "public-agent",
        "--scope",
        "read",
        "--resource",
        &resource,
    ];
    let mut login = vec!["token", "--device"];
    login.extend(user);
    let mut bg = Background::spawn(&home, &login, &[]);
    let code = bg.wait_for(user_code);
    serve.ask(&format!("approve-device {code}"));
    bg.finish(30).ok();
    let mut call = vec!["curl"];
    call.extend(user);
    call.push(&resource);
    for round in 1..=2u64 {
        // Past the 2 s lifetime of the access token stored last.
        std::thread::sleep(std::time::Duration::from_millis(2500));
        home.run(&call, &[]).ok();
        let stats = serve.stats();
        assert_eq!(stats["grants"]["device_code"], 1, "{stats}");
        assert_eq!(stats["grants"]["refresh_token"], round, "{stats}");
        assert_eq!(
            stats["revoked_grants"], 0,
            "a rotated token was never sent again: {stats}"
        );
    }
}
