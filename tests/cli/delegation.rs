//! `token --exchange` builds a delegated token; `inspect` shows its nested `act` chain.

use crate::harness::{Home, Serve};

/// A token of `client` for `resource`, as JSON, written to a file for `--subject-token @FILE`.
fn token_file(home: &Home, name: &str, base: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec!["token"];
    args.extend_from_slice(base);
    token_file_from(home, name, &args, env)
}

fn exchange(
    home: &Home,
    name: &str,
    base: &[&str],
    env: &[(&str, &str)],
    subject: &str,
    actor: &str,
) -> String {
    let mut args = vec![
        "token",
        "--exchange",
        "--subject-token",
        subject,
        "--actor-token",
        actor,
    ];
    args.extend_from_slice(base);
    token_file_from(home, name, &args, env)
}

fn token_file_from(home: &Home, name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = args.to_vec();
    args.push("--json");
    let run = home.run(&args, env);
    run.ok();
    let token = run.json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let path = home.path().join(name);
    std::fs::write(&path, token).unwrap();
    format!("@{}", path.display())
}

/// Inspect `file` and check it shows `actors` (current first) acting for `sub`.
fn check_chain(home: &Home, file: &str, actors: &[&str], sub: &str) {
    let run = home.run(&["inspect", file], &[]);
    run.ok();
    assert!(
        run.stdout.contains(&format!(
            "act chain: {} actor(s), current first",
            actors.len()
        )),
        "{}",
        run.stdout
    );
    for (i, a) in actors.iter().enumerate() {
        assert!(
            run.stdout.contains(&format!("  {}. {a}\n", i + 1)),
            "{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains(&format!("acting for: {sub}")),
        "{}",
        run.stdout
    );
    let run = home.run(&["inspect", "--json", file], &[]);
    run.ok();
    let json = run.json();
    let got: Vec<&str> = json["act_chain"]
        .as_array()
        .expect("chain")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(got, actors);
    assert_eq!(json["verified"], false);
}

#[test]
fn cli_inspect_shows_the_act_chain_of_a_token_delegated_twice() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let iss = serve.issuer.clone();
    let res = serve.resource.clone();
    let agent = [
        "--issuer",
        &iss,
        "--client-id",
        "agent",
        "--scope",
        "read",
        "--resource",
        &res,
    ];
    let post = [
        "--issuer",
        &iss,
        "--client-id",
        "agent-post",
        "--secret-method",
        "post",
        "--scope",
        "read",
        "--resource",
        &res,
    ];
    let agent_secret = [("AGENT_OAUTH_CLIENT_SECRET", "agent-secret")];
    let post_secret = [("AGENT_OAUTH_CLIENT_SECRET", "agent-post-secret")];
    let subject = token_file(&home, "subject", &agent, &agent_secret);
    let actor1 = token_file(&home, "actor1", &post, &post_secret);
    let once = exchange(&home, "once", &agent, &agent_secret, &subject, &actor1);
    check_chain(&home, &once, &["agent-post"], "agent");
    let twice = exchange(&home, "twice", &agent, &agent_secret, &once, &subject);
    check_chain(&home, &twice, &["agent", "agent-post"], "agent");
    // An undelegated token says so.
    let run = home.run(&["inspect", &subject], &[]);
    run.ok();
    assert!(
        run.stdout.contains("act:       none (not delegated)"),
        "{}",
        run.stdout
    );
}

#[test]
fn cli_inspect_decodes_a_dpop_proof_and_refuses_what_is_not_a_jwt() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    let home = Home::new();
    let key = agent_oauth::DpopKey::generate();
    let htu = url::Url::parse("https://as.example/token").unwrap();
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let proof = key
        .proof("POST", &htu, iat, Some("n-1"), None)
        .expect("proof");
    let run = home.run_with_stdin(&["inspect"], &[], &proof);
    run.ok();
    assert!(
        run.stdout
            .starts_with("DPoP proof (signature NOT verified)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("jkt:   {}", key.thumbprint())),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("htm:   POST"), "{}", run.stdout);
    assert!(
        run.stdout.contains("htu:   https://as.example/token"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("nonce: n-1"), "{}", run.stdout);

    for bad in [
        "opaque-token",
        "a.b.c",
        &format!("{}.{}.sig", B64.encode("[]"), B64.encode("{}")),
    ] {
        let run = home.run_with_stdin(&["inspect"], &[], bad);
        run.expect_code(2);
        assert_eq!(
            run.stderr
                .lines()
                .filter(|l| l.starts_with("error: "))
                .count(),
            1
        );
    }
}

#[test]
fn cli_inspect_with_issuer_verifies_the_chain_and_refuses_forgeries() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let iss = serve.issuer.clone();
    let base = ["--issuer", &iss, "--client-id", "agent", "--scope", "read"];
    let env = [("AGENT_OAUTH_CLIENT_SECRET", "agent-secret")];
    let post = [
        "--issuer",
        &iss,
        "--client-id",
        "agent-post",
        "--secret-method",
        "post",
        "--scope",
        "read",
    ];
    let post_env = [("AGENT_OAUTH_CLIENT_SECRET", "agent-post-secret")];
    let subject = token_file(&home, "subject", &base, &env);
    let actor = token_file(&home, "actor", &post, &post_env);
    let once = exchange(&home, "once", &base, &env, &subject, &actor);

    let run = home.run(&["inspect", "--issuer", &iss, &once], &[]);
    run.ok();
    assert!(
        run.stdout
            .contains(&format!("JWT (signature verified with the JWKS of {iss})")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("  1. agent-post\n"), "{}", run.stdout);
    let run = home.run(&["inspect", "--json", "--issuer", &iss, &once], &[]);
    run.ok();
    assert_eq!(run.json()["verified"], true);
    assert_eq!(run.json()["act_chain"], serde_json::json!(["agent-post"]));

    // A forged chain: the payload rewritten to name another actor, the signature kept.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    let token = std::fs::read_to_string(once.trim_start_matches('@')).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["act"] = serde_json::json!({"sub": "mallory"});
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );
    let run = home.run_with_stdin(&["inspect", "--issuer", &iss], &[], &forged);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("mallory"), "{}", run.stdout);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    // Verified against another issuer: refused.
    let other = Serve::start(&[]);
    let run = home.run(&["inspect", "--issuer", &other.issuer, &once], &[]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}
