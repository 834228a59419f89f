//! Exit codes, one-line errors with hints, and secrets kept out of process arguments.

use crate::harness::{agent_flags, strs, Home, Serve};

#[test]
fn cli_help_documents_the_exit_codes() {
    let run = Home::new().run(&["--help"], &[]);
    run.ok();
    for line in [
        "Exit codes:",
        "2  bad usage",
        "3  HTTP error",
        "4  OAuth error",
        "5  user action needed",
    ] {
        assert!(
            run.stdout.contains(line),
            "help lacks `{line}`:\n{}",
            run.stdout
        );
    }
}

#[test]
fn cli_exit_code_2_for_bad_usage_with_a_hint() {
    let home = Home::new();
    home.run(&["token", "--no-such-flag"], &[]).expect_code(2);
    let run = home.run(&["token"], &[]);
    run.expect_code(2);
    assert_eq!(run.stderr.lines().count(), 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: no issuer given"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: pass --issuer URL"),
        "{}",
        run.stderr
    );
    // A broken config file is named, and is bad usage too.
    std::fs::write(
        home.path().join("config.json"),
        b"{\"profiles\": {\"default\": {\"isuer\": 1}}}",
    )
    .unwrap();
    let run = home.run(&["token"], &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("config.json is invalid"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("isuer"), "{}", run.stderr);
}

#[test]
fn cli_exit_code_4_for_an_oauth_error_and_3_for_http_errors() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let flags = agent_flags(&serve.issuer);
    let mut args = vec!["token"];
    args.extend(strs(&flags));
    let wrong = "wrong-secret-value";
    let run = home.run(&args, &[("AGENT_OAUTH_CLIENT_SECRET", wrong)]);
    run.expect_code(4);
    assert!(run.stderr.contains("invalid_client"), "{}", run.stderr);
    assert!(
        run.stderr.contains("hint: check --client-id"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(wrong),
        "the secret is echoed: {}",
        run.stderr
    );

    // A URL that answers 404: the body goes to stdout, the exit code says HTTP error.
    let mut args = vec!["curl"];
    args.extend(strs(&flags));
    let missing = format!("{}/no/such/page", serve.issuer);
    args.push(&missing);
    let run = home.run(&args, &[("AGENT_OAUTH_CLIENT_SECRET", "agent-secret")]);
    run.expect_code(3);
    assert!(run.stderr.contains("answered 404"), "{}", run.stderr);

    // Nobody listening: HTTP error too, with a hint.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let issuer = format!("http://127.0.0.1:{closed}");
    let run = home.run(
        &[
            "curl",
            "--issuer",
            &issuer,
            "--client-id",
            "x",
            &format!("{issuer}/api"),
        ],
        &[],
    );
    run.expect_code(3);
    assert!(
        run.stderr.contains("hint: is the server running"),
        "{}",
        run.stderr
    );
}

#[test]
fn cli_exit_code_5_when_no_browser_redirect_arrives() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let run = home.run(
        &[
            "token",
            "--code",
            "--no-browser",
            "--timeout",
            "1",
            "--issuer",
            &serve.issuer,
            "--client-id",
            "public-agent",
        ],
        &[],
    );
    run.expect_code(5);
    assert!(
        run.stderr.contains("no redirect arrived within 1s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Sign in at this URL"), "{}", run.stderr);
}

#[test]
fn cli_secrets_are_refused_as_arguments_and_read_from_env_file_or_stdin() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let flags = agent_flags(&serve.issuer);
    let mut args = vec!["token"];
    args.extend(strs(&flags));

    let mut with_arg = args.clone();
    with_arg.extend(["--client-secret", "agent-secret"]);
    let run = home.run(&with_arg, &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("not accepted as arguments"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("AGENT_OAUTH_CLIENT_SECRET"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("agent-secret"), "{}", run.stderr);

    let mut stdin = args.clone();
    stdin.push("--client-secret-stdin");
    home.run_with_stdin(&stdin, &[], "agent-secret\n").ok();

    let file = home.path().join("secret");
    std::fs::write(&file, "agent-secret\n").unwrap();
    let mut from_file = args.clone();
    let file_s = file.display().to_string();
    from_file.extend(["--client-secret-file", &file_s]);
    home.run(&from_file, &[]).ok();

    // Tokens are not taken as arguments either.
    let run = home.run(&["inspect", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"], &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("hint: pass `-`"), "{}", run.stderr);
}

#[test]
fn cli_keygen_writes_a_private_key_whose_thumbprint_binds_tokens() {
    let home = Home::new();
    let serve = Serve::start(&[]);
    let key = home.path().join("dpop.pem");
    let key_s = key.display().to_string();
    let run = home.run(&["keygen", "--out", &key_s, "--json"], &[]);
    run.ok();
    let jkt = run.json()["thumbprint"]
        .as_str()
        .expect("thumbprint")
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // An existing key is never overwritten.
    home.run(&["keygen", "--out", &key_s], &[]).expect_code(1);

    let flags = agent_flags(&serve.issuer);
    let mut args = vec!["token", "--json", "--dpop-key", &key_s];
    args.extend(strs(&flags));
    let run = home.run(&args, &[("AGENT_OAUTH_CLIENT_SECRET", "agent-secret")]);
    run.ok();
    assert_eq!(run.json()["cnf"]["jkt"], jkt.as_str());

    // A key file that is not a key: bad usage, named.
    let bad = home.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let bad_s = bad.display().to_string();
    let mut args = vec!["token", "--dpop-key", &bad_s];
    args.extend(strs(&flags));
    let run = home.run(&args, &[("AGENT_OAUTH_CLIENT_SECRET", "agent-secret")]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("bad.pem is not usable"),
        "{}",
        run.stderr
    );
}
