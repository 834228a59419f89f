use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;

use super::*;

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// An unsigned JWT-shaped token with `iat` and `exp` relative to now.
fn jwt(tag: &str, iat_ago: u64, exp_in: i64) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = unix(SystemTime::now());
    let exp = now.saturating_add_signed(exp_in);
    format!(
        "{}.{}.sig",
        e.encode(br#"{"alg":"ES256"}"#),
        e.encode(serde_json::json!({"sub": tag, "iat": now - iat_ago, "exp": exp}).to_string())
    )
}

#[tokio::test]
async fn assertion_file_is_reread_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let first = jwt("first", 0, 3600);
    std::fs::write(&path, format!("{first}\n")).unwrap();
    let source = AssertionSource::file(&path);
    assert_eq!(source.assertion().await.unwrap().expose_secret(), first);
    // Rotation by rename over the file (what the kubelet's atomic writer does).
    let second = jwt("second", 0, 3600);
    let tmp = dir.path().join("token.new");
    std::fs::write(&tmp, &second).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(source.assertion().await.unwrap().expose_secret(), second);
    // Rewritten in place with a token of another length.
    let third = jwt("third-and-longer", 0, 3600);
    std::fs::write(&path, &third).unwrap();
    assert_eq!(source.assertion().await.unwrap().expose_secret(), third);
}

#[tokio::test]
async fn assertion_file_failures_are_typed_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = AssertionSource::file(dir.path().join("absent"));
    let e = missing.assertion().await.unwrap_err();
    assert!(matches!(e, Error::Assertion { .. }), "{e:?}");
    assert!(e.to_string().contains("absent"), "{e}");

    let path = dir.path().join("empty");
    std::fs::write(&path, "  \n").unwrap();
    let e = AssertionSource::file(&path).assertion().await.unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");

    std::fs::write(&path, vec![b'a'; MAX_ASSERTION_LEN + 1]).unwrap();
    let e = AssertionSource::file(&path).assertion().await.unwrap_err();
    assert!(e.to_string().contains("larger"), "{e}");

    std::fs::write(&path, [0xff, 0xfe, b'a']).unwrap();
    let e = AssertionSource::file(&path).assertion().await.unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");

    std::fs::write(&path, "two tokens").unwrap();
    let e = AssertionSource::file(&path).assertion().await.unwrap_err();
    assert!(e.to_string().contains("printable"), "{e}");

    let e = AssertionSource::file(dir.path())
        .assertion()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Assertion { .. }), "{e:?}");
}

#[tokio::test]
async fn assertion_expired_is_never_handed_out_but_a_valid_cached_one_survives_a_failed_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, jwt("old", 3600, -5)).unwrap();
    let e = AssertionSource::file(&path).assertion().await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");

    // Within the renewal margin, the file is read again; when that read fails, the cached
    // assertion (still valid) is served.
    let valid = jwt("valid", 0, 30);
    std::fs::write(&path, &valid).unwrap();
    let source = AssertionSource::file(&path);
    assert_eq!(source.assertion().await.unwrap().expose_secret(), valid);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(source.assertion().await.unwrap().expose_secret(), valid);
    assert_eq!(source.cached().unwrap().expose_secret(), valid);
}

#[tokio::test]
async fn assertion_closure_is_cached_until_shortly_before_exp() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let source = AssertionSource::from_fn(move || {
        let n = c.fetch_add(1, Ordering::SeqCst);
        // Long-lived first, then one inside the renewal margin.
        let exp = if n == 0 { 3600 } else { 30 };
        async move { Ok(SecretString::new(jwt(&format!("n{n}"), 0, exp))) }
    });
    let a = source.assertion().await.unwrap();
    let b = source.assertion().await.unwrap();
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A margin larger than the remaining lifetime: renewed on every use.
    let source = source.renew_before(Duration::from_secs(7200));
    source.assertion().await.unwrap();
    source.assertion().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn assertion_concurrent_callers_share_one_renewal() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let source = AssertionSource::from_fn(move || {
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(SecretString::new(jwt("shared", 0, 3600)))
        }
    });
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.assertion().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn assertion_env_reads_the_current_value() {
    let var = "AGENT_OAUTH_TEST_ASSERTION_ENV";
    std::env::set_var(var, format!(" {} ", jwt("one", 0, 3600)));
    let source = AssertionSource::env(var);
    assert!(source
        .assertion()
        .await
        .unwrap()
        .expose_secret()
        .starts_with("ey"));
    let two = jwt("two", 0, 3600);
    std::env::set_var(var, &two);
    assert_eq!(source.assertion().await.unwrap().expose_secret(), two);
    std::env::remove_var(var);
    // Unset: no fallback to the old value, whose variable is gone.
    let fresh = AssertionSource::env(var);
    let e = fresh.assertion().await.unwrap_err();
    assert!(e.to_string().contains("not set"), "{e}");
}

#[cfg(unix)]
#[tokio::test]
async fn assertion_command_output_status_and_timeout() {
    let token = jwt("cmd", 0, 3600);
    let ok = AssertionSource::command("printf", [format!("{token}\n")]);
    assert_eq!(ok.assertion().await.unwrap().expose_secret(), token);

    let failing = AssertionSource::command("sh", ["-c", "echo leaked-secret; exit 3"]);
    let e = failing.assertion().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("status 3") && text.contains("command sh"),
        "{text}"
    );
    assert!(!text.contains("leaked-secret"));

    let slow = AssertionSource::command("sleep", ["5"]).timeout(Duration::from_millis(100));
    let e = slow.assertion().await.unwrap_err();
    assert!(e.to_string().contains("did not finish"), "{e}");

    let flood = AssertionSource::command("sh", ["-c", "yes aaaaaaaa | head -c 200000"]);
    let e = flood.assertion().await.unwrap_err();
    assert!(e.to_string().contains("more than"), "{e}");

    let absent = AssertionSource::command("/nonexistent/agent-oauth-helper", Vec::<String>::new());
    assert!(matches!(
        absent.assertion().await.unwrap_err(),
        Error::Assertion { .. }
    ));
}

#[test]
fn assertion_debug_shows_origin_not_value() {
    let s = AssertionSource::fixed("eyJ.secret-value.sig");
    let dbg = format!("{s:?}");
    assert!(
        dbg.contains("fixed") && !dbg.contains("secret-value"),
        "{dbg}"
    );
    let f = AssertionSource::file("/var/run/secrets/tokens/agent");
    assert!(format!("{f:?}").contains("/var/run/secrets/tokens/agent"));
}

#[tokio::test]
async fn assertion_fixed_opaque_token_is_served_as_is() {
    let s = AssertionSource::fixed("opaque-token");
    assert_eq!(s.assertion().await.unwrap().expose_secret(), "opaque-token");
}
