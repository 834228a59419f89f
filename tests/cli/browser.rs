//! A real browser login: headless Chromium (driven over the DevTools protocol by
//! `tests/interop/browser_login.mjs` with `playwright-core`) opens the URL that
//! `agent-oauth token --code` prints, signs in and consents on oidc-provider's own pages, and
//! is redirected to the CLI's loopback listener, which finishes the grant.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::{authorization_url, Background, Home};
use crate::support::oidc_provider::{interop_dir, OidcProvider};

/// The Chromium binary, or `None` (the test is skipped, except under `CI` where it fails).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "browser login: no Chromium at {} but CI is set; `.ci/run` installs the `chromium` package",
            path.display()
        );
    }
    eprintln!(
        "browser login: SKIPPED, no Chromium at {} (install Debian's `chromium` package, or set CHROMIUM)",
        path.display()
    );
    None
}

#[test]
fn cli_browser_login_with_headless_chromium_on_oidc_provider_pages() {
    let Some(chromium) = chromium() else { return };
    let Some(p) = OidcProvider::start_blocking(json!({
        "clients": [{
            "client_id": "cli-app",
            "token_endpoint_auth_method": "none",
            "application_type": "native",
            "grant_types": ["authorization_code", "refresh_token"],
            "redirect_uris": ["http://127.0.0.1/callback"],
            "response_types": ["code"]
        }],
        "dev_interactions": true,
        "resource_server": true,
        "dpop_nonce": true,
    })) else {
        return;
    };
    let resource = p.resource.clone().expect("resource server");
    let home = Home::new();
    let user = [
        "--issuer",
        &p.issuer,
        "--client-id",
        "cli-app",
        "--scope",
        "read",
        "--resource",
        &resource,
    ];
    let mut args = vec!["token", "--code", "--no-browser"];
    args.extend(user);
    let mut cli = Background::spawn(&home, &args, &[]);
    let url = cli.wait_for(authorization_url);
    let redirect = cli.wait_for(|l| {
        l.strip_prefix("Waiting for the redirect to ")
            .map(|r| r.trim_end_matches(" ...").to_owned())
    });

    let browser = Command::new("node")
        .arg(interop_dir().join("browser_login.mjs"))
        .args([url.as_str(), redirect.as_str(), "alice"])
        .current_dir(interop_dir())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .expect("run node browser_login.mjs");
    let browser_out = String::from_utf8_lossy(&browser.stdout);
    assert!(
        browser.status.success(),
        "browser login failed:\n{browser_out}\n{}\nserver:\n{}",
        String::from_utf8_lossy(&browser.stderr),
        p.stderr_log()
    );
    assert!(
        browser_out.starts_with(&format!("REACHED {redirect}?")),
        "{browser_out}"
    );
    assert!(
        browser_out.contains("Authorization received"),
        "{browser_out}"
    );

    let run = cli.finish(30);
    run.ok();
    assert!(run.stdout.contains("token type:    DPoP"), "{}", run.stdout);
    assert!(run.stdout.contains("refresh token: fp="), "{}", run.stdout);

    // The grant is the user's, kept for the next command.
    let mut call = vec!["curl"];
    call.extend(user);
    let me = format!("{resource}/me");
    call.push(&me);
    let run = home.run(&call, &[]);
    run.ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON body");
    assert_eq!(body["sub"], "alice", "{body}");
}
