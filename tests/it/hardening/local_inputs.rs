//! Hardening of what reaches the agent from its own machine and from servers' side channels: the
//! token store directory, device-flow URLs shown to a person, `Date` headers, and the loopback
//! redirect listener.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::support::prelude::LoopbackRedirect;
use crate::support::prelude::TestServer;
use crate::support::prelude::{
    AgentEvent, AuthorizationServer, ClientAuth, Error, HttpRequest, HttpTransport, OAuthClient,
    RetryPolicy, ServerMetadata, TokenParams, TransportConfig,
};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use url::Url;

use crate::support::server::{guard, Reply, Scripted};

// ------------------------------------------------------------------ 6: FileStore directory

#[cfg(unix)]
mod file_store {
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
    use std::path::{Path, PathBuf};

    use crate::support::prelude::{Error, FileStore, RefreshToken, StoredGrant, TokenStore};

    const LEASE: std::time::Duration = std::time::Duration::from_secs(10);

    /// The file stem `FileStore` uses for `key`: hex SHA-256.
    fn stem(key: &str) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn grant(rt: &str) -> StoredGrant {
        StoredGrant::new(Some(RefreshToken::new(rt)), None)
    }

    fn dir_with_mode(root: &Path, name: &str, mode: u32) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[tokio::test]
    async fn hardening_06_group_or_world_writable_store_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o770, 0o702, 0o1777] {
            let dir = dir_with_mode(tmp.path(), &format!("d{mode:o}"), mode);
            let err = FileStore::new(&dir).expect_err("a writable directory must be refused");
            assert!(matches!(err, Error::Store(_)), "{err:?}");
            assert!(err.to_string().contains("writable"), "{err}");
            // Refused, not silently repaired: the caller decides what to do with it.
            let now = fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
            assert_eq!(now, mode);
        }
        // Private and read-only-for-others directories are fine.
        for mode in [0o700, 0o755] {
            let dir = dir_with_mode(tmp.path(), &format!("ok{mode:o}"), mode);
            let s = FileStore::new(&dir).expect("a private directory is accepted");
            let _ = s.store("k", &grant("rt"), None).await.unwrap();
        }
        // A directory the store creates itself is 0700 and accepted.
        let created = tmp.path().join("new/tokens");
        let _ = FileStore::new(&created).unwrap();
        let mode = fs::metadata(&created).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[tokio::test]
    async fn hardening_06_store_dir_owned_by_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let probe = tmp.path().join("probe");
        fs::write(&probe, b"").unwrap();
        let me = fs::metadata(&probe).unwrap().uid();
        let dir = dir_with_mode(tmp.path(), "tokens", 0o700);
        // Owned by us: accepted.
        let _ = FileStore::new(&dir).expect("own directory");
        if me != 0 {
            println!(
                "skipping the foreign-owner assertion: only root can chown a directory to \
                 another user (running as uid {me})"
            );
            return;
        }
        std::os::unix::fs::chown(&dir, Some(4242), Some(4242)).unwrap();
        let err = FileStore::new(&dir).expect_err("a directory of another user must be refused");
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        assert!(err.to_string().contains("owned by uid 4242"), "{err}");
        // No probe file or anything else is left behind in the refused directory.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn hardening_06_planted_token_file_symlink_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        // The attacker writes a perfectly valid record for key `k`, elsewhere...
        let attacker = FileStore::new(tmp.path().join("attacker")).unwrap();
        let _ = attacker
            .store("k", &grant("attacker-rt"), None)
            .await
            .unwrap();
        let planted = attacker.dir().join(format!("{}.json", stem("k")));
        let before = fs::read(&planted).unwrap();
        // ...and links it into the victim's store.
        let victim = FileStore::new(tmp.path().join("victim")).unwrap();
        symlink(&planted, victim.dir().join(format!("{}.json", stem("k")))).unwrap();

        let err = victim
            .load("k")
            .await
            .expect_err("a symlinked token file must be refused");
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("symbolic link"), "{shown}");
        assert!(!shown.contains("attacker-rt"), "{shown}");
        // A write is refused too rather than going through or around the link...
        assert!(matches!(
            victim.store("k", &grant("victim-rt"), None).await,
            Err(Error::Store(_))
        ));
        // ...and the link target is untouched.
        assert_eq!(fs::read(&planted).unwrap(), before);
        // Other keys are unaffected.
        let _ = victim.store("other", &grant("rt"), None).await.unwrap();
        assert!(victim.load("other").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn hardening_06_planted_lock_file_symlinks_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let victim = FileStore::new(tmp.path().join("victim")).unwrap();

        // A dangling link as the refresh lock: following it would create the target.
        let target = outside.join("created-through-lock");
        symlink(&target, victim.dir().join(format!("{}.lock", stem("k")))).unwrap();
        let err = victim
            .lock("k", LEASE)
            .await
            .map(drop)
            .expect_err("symlinked lock file");
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        assert!(!target.exists(), "the lock followed the symlink");

        // A link to an existing file as the write lock.
        let existing = outside.join("existing");
        fs::write(&existing, b"keep").unwrap();
        symlink(
            &existing,
            victim.dir().join(format!("{}.cas.lock", stem("j"))),
        )
        .unwrap();
        let err = victim
            .store("j", &grant("rt"), None)
            .await
            .expect_err("symlinked write lock");
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        assert_eq!(fs::read(&existing).unwrap(), b"keep");
        // A dangling write-lock link is not created through either.
        let dangling = outside.join("created-through-cas-lock");
        symlink(
            &dangling,
            victim.dir().join(format!("{}.cas.lock", stem("d"))),
        )
        .unwrap();
        assert!(matches!(
            victim.remove("d", None).await,
            Err(Error::Store(_))
        ));
        assert!(!dangling.exists());

        // Ordinary keys still lock and write, with private lock files.
        let g = victim.lock("fine", LEASE).await.unwrap();
        let _ = victim.store("fine", &grant("rt"), None).await.unwrap();
        drop(g);
        for ext in ["lock", "cas.lock"] {
            let p = victim.dir().join(format!("{}.{ext}", stem("fine")));
            let md = fs::symlink_metadata(&p).unwrap();
            assert!(md.file_type().is_file());
            assert_eq!(md.permissions().mode() & 0o777, 0o600);
        }
    }
}

// ------------------------------------------------------------------ 7: device-flow URLs

/// A client of a scripted server whose device endpoint answers with `verification_uri` and
/// `verification_uri_complete` as given.
async fn device_answer(
    verification_uri: &str,
    complete: Option<&str>,
) -> (
    Scripted,
    crate::support::prelude::Result<crate::support::prelude::DeviceAuthorization>,
) {
    let s = Scripted::start().await;
    let mut body = json!({
        "device_code": "dc-secret",
        "user_code": "WDJB-MJHT",
        "verification_uri": verification_uri,
        "expires_in": 600,
        "interval": 5,
    });
    if let Some(c) = complete {
        body["verification_uri_complete"] = json!(c);
    }
    s.route("/device", Reply::json(200, &body));
    let base = s.origin();
    let md = ServerMetadata::from_json(
        json!({
            "issuer": base,
            "token_endpoint": s.url("/token"),
            "device_authorization_endpoint": s.url("/device"),
        })
        .to_string()
        .as_bytes(),
        &base,
    )
    .unwrap();
    let server = AuthorizationServer::from_metadata(md, HttpTransport::new().unwrap()).unwrap();
    let client = OAuthClient::builder(server, "agent")
        .auth(ClientAuth::client_secret_basic("agent-secret"))
        .build();
    let got = guard(client.device_authorization(&TokenParams::new())).await;
    (s, got)
}

#[tokio::test]
async fn hardening_07_hostile_device_urls_are_refused() {
    let good = "https://as.example/device";
    let cases: [(&str, Option<&str>, &str); 9] = [
        // Terminal escapes: an OSC 8 hyperlink to somewhere else, and a bell.
        (
            "https://as.example/device\u{1b}]8;;https://evil.example\u{7}",
            None,
            "verification_uri",
        ),
        // A line break that forges the next log or UI line.
        (
            "https://as.example/device\r\nApproved: yes",
            None,
            "verification_uri",
        ),
        ("https://as.example/de\tvice", None, "verification_uri"),
        (
            good,
            Some("javascript:alert(document.cookie)"),
            "verification_uri_complete",
        ),
        (
            good,
            Some("data:text/html,<script>x</script>"),
            "verification_uri_complete",
        ),
        ("http://as.example/device", None, "verification_uri"),
        ("/device", None, "verification_uri"),
        (
            "https://as.example@evil.example/device",
            None,
            "verification_uri",
        ),
        // Right-to-left override: displays as something it is not.
        (
            good,
            Some("https://as.example/\u{202e}lmth.device"),
            "verification_uri_complete",
        ),
    ];
    for (uri, complete, field) in cases {
        let (_s, got) = device_answer(uri, complete).await;
        let err = got.expect_err(&format!("{uri:?} / {complete:?} must be refused"));
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("`{field}`")), "{shown}");
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown:?}"
        );
        assert!(!shown.contains("dc-secret"), "{shown}");
    }
}

#[tokio::test]
async fn hardening_07_ordinary_device_urls_are_accepted() {
    let (_s, got) = device_answer(
        "https://as.example/device",
        Some("https://as.example/device?user_code=WDJB-MJHT"),
    )
    .await;
    let auth = got.expect("https URLs are fine");
    assert_eq!(auth.verification_uri, "https://as.example/device");
    assert_eq!(
        auth.verification_uri_complete.as_deref(),
        Some("https://as.example/device?user_code=WDJB-MJHT")
    );
    // Loopback http (a local authorization server) is allowed, as for every endpoint.
    let (_s, got) = device_answer("http://127.0.0.1:8080/device", None).await;
    assert_eq!(got.expect("loopback").verification_uri_complete, None);
    let (_s, got) = device_answer("http://localhost/device", None).await;
    assert!(got.is_ok());
}

// ------------------------------------------------------------------ 11: clock offsets

const YEAR_9999: &str = "Fri, 31 Dec 9999 23:59:59 GMT";

fn get(url: &str) -> crate::support::prelude::Result<HttpRequest> {
    Ok(http::Request::get(url).body(Vec::new()).unwrap())
}

/// `t` minus now, in whole seconds.
fn secs_from_now(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[tokio::test]
async fn hardening_11_stranger_date_does_not_set_another_origins_time() {
    // The authorization server sends no `Date` at all.
    let auth_server = Scripted::start().await;
    auth_server.route("/token", Reply::status(200));
    let far = Scripted::start().await;
    far.route("/x", Reply::status(200).header("date", YEAR_9999));
    let near = Scripted::start().await;
    let three_hours = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3 * 3600));
    near.route("/x", Reply::status(200).header("date", &three_hours));

    let t = HttpTransport::with_config(TransportConfig::default()).unwrap();
    let (as_url, far_url, near_url) = (auth_server.url("/token"), far.url("/x"), near.url("/x"));
    for u in [&as_url, &near_url, &far_url] {
        guard(t.execute(RetryPolicy::Never, || get(u)))
            .await
            .unwrap();
    }
    let as_url = Url::parse(&as_url).unwrap();
    // The AS's proofs and assertions use our clock, not a stranger's.
    assert!(t.clock_skew_for(&as_url).is_none());
    let off = secs_from_now(t.server_time(&as_url));
    assert!(off.abs() <= 2, "AS time moved by {off} s");
    // An origin never seen is not moved either.
    let unseen = secs_from_now(t.server_time(&Url::parse("http://127.0.0.1:9/").unwrap()));
    assert!(unseen.abs() <= 2, "unseen origin moved by {unseen} s");
    // The year-9999 server itself is not believed...
    let off = secs_from_now(t.server_time(&Url::parse(&far_url).unwrap()));
    assert!(off.abs() <= 2, "year 9999 moved its own origin by {off} s");
    // ...while a plausible offset is still kept, for its own origin only.
    let off = secs_from_now(t.server_time(&Url::parse(&near_url).unwrap()));
    assert!((3 * 3600 - 3..=3 * 3600 + 1).contains(&off), "{off}");
    // The "server seen last" estimate ignored the year-9999 sample as well.
    assert!(
        (t.clock_skew().offset_ms() - 3 * 3600 * 1000).abs() <= 3_000,
        "{}",
        t.clock_skew().offset_ms()
    );
}

#[tokio::test]
async fn hardening_11_absurd_date_is_ignored_with_an_event() {
    let server = TestServer::start().await;
    let seen: Arc<Mutex<Vec<AgentEvent>>> = Arc::default();
    let s = seen.clone();
    let agent = crate::support::prelude::Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(server.resource_url())
        .on_event(move |e| s.lock().unwrap().push(e.clone()))
        .build()
        .await
        .unwrap();
    let far = Scripted::start().await;
    far.route("/x", Reply::status(200).header("date", YEAR_9999));
    let past = Scripted::start().await;
    let two_days_ago = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(2 * 86400));
    past.route("/x", Reply::status(200).header("date", &two_days_ago));
    let near = Scripted::start().await;
    let hour = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    near.route("/x", Reply::status(200).header("date", &hour));

    let t = agent.transport();
    for u in [far.url("/x"), past.url("/x"), near.url("/x")] {
        guard(t.execute(RetryPolicy::Never, || get(&u)))
            .await
            .unwrap();
    }
    let ignored: Vec<(String, i64)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ClockOffsetIgnored {
                origin,
                offset_secs,
            } => Some((origin.clone(), *offset_secs)),
            _ => None,
        })
        .collect();
    assert_eq!(ignored.len(), 2, "{ignored:?}");
    assert_eq!(ignored[0].0, far.origin());
    assert!(ignored[0].1 > 250_000_000_000, "{ignored:?}");
    assert_eq!(ignored[1].0, past.origin());
    assert!(
        (-2 * 86400 - 3..=-2 * 86400 + 1).contains(&ignored[1].1),
        "{ignored:?}"
    );
    // The ignored origins keep our clock; the plausible one has its offset.
    for u in [far.url("/x"), past.url("/x")] {
        let off = secs_from_now(t.server_time(&Url::parse(&u).unwrap()));
        assert!(off.abs() <= 2, "{u}: {off}");
    }
    let off = secs_from_now(t.server_time(&Url::parse(&near.url("/x")).unwrap()));
    assert!((3597..=3601).contains(&off), "{off}");
    // And the agent still works against its own servers.
    let resp = guard(agent.get(server.resource_url()).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

// ------------------------------------------------------------------ 12: loopback listener

fn port_of(redirect_uri: &str) -> u16 {
    Url::parse(redirect_uri).unwrap().port().unwrap()
}

#[tokio::test]
async fn hardening_12_idle_connection_does_not_stall_the_callback() {
    let l = LoopbackRedirect::bind().await.unwrap();
    let uri = l.redirect_uri().to_owned();
    let port = port_of(&uri);
    // A browser preconnect: a connection that sends nothing and stays open.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A slow one that started a request and stalls mid-head, also to the callback path.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET /callback?code=evil&state=x HTTP/1.1\r\nHost: 127.0.0.1")
        .await
        .unwrap();
    // Let the listener accept both before the real redirect arrives.
    let waiter = tokio::spawn(l.wait());
    tokio::task::yield_now().await;

    let r = guard(
        reqwest::Client::new()
            .get(format!("{uri}?code=abc&state=xyz"))
            .send(),
    )
    .await
    .expect("the callback is answered while another connection idles");
    assert_eq!(r.status(), 200);
    let got = guard(waiter).await.unwrap().unwrap();
    assert_eq!(got.query(), Some("code=abc&state=xyz"));
    // The other connections are closed once the redirect is in.
    let mut buf = [0u8; 16];
    assert_eq!(guard(idle.read(&mut buf)).await.unwrap_or(0), 0);
    assert_eq!(guard(slow.read(&mut buf)).await.unwrap_or(0), 0);
}

#[tokio::test]
async fn hardening_12_idle_connection_is_closed_after_the_read_timeout() {
    let l = LoopbackRedirect::bind()
        .await
        .unwrap()
        .read_timeout(Duration::from_millis(200));
    let uri = l.redirect_uri().to_owned();
    let waiter = tokio::spawn(l.wait());
    let mut idle = TcpStream::connect(("127.0.0.1", port_of(&uri)))
        .await
        .unwrap();
    // The listener gives up on it: the connection reaches end of stream without any answer.
    let mut buf = Vec::new();
    let n = guard(idle.read_to_end(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf));
    // And still waits for the real redirect.
    let r = guard(reqwest::Client::new().get(format!("{uri}?code=c1")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = guard(waiter).await.unwrap().unwrap();
    assert_eq!(got.query(), Some("code=c1"));
}

#[tokio::test]
async fn hardening_12_oversized_request_is_refused_and_callback_still_works() {
    let l = LoopbackRedirect::bind().await.unwrap();
    let uri = l.redirect_uri().to_owned();
    let waiter = tokio::spawn(l.wait());
    let mut big = TcpStream::connect(("127.0.0.1", port_of(&uri)))
        .await
        .unwrap();
    let mut line = b"GET /callback?code=".to_vec();
    line.extend(std::iter::repeat_n(b'a', 64 * 1024));
    // The listener stops reading at its cap; the rest of the write may fail.
    let _ = big.write_all(&line).await;
    let mut answer = Vec::new();
    let _ = guard(big.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");

    let r = guard(reqwest::Client::new().get(format!("{uri}?code=ok")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = guard(waiter).await.unwrap().unwrap();
    assert_eq!(got.query(), Some("code=ok"));
}
