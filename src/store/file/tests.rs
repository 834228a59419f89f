//! [`FileStore`] against the store conformance checks, and its own behaviour on disk.
#![allow(clippy::unwrap_used)]

use super::super::conformance as c;
use super::*;
#[allow(unused_imports)]
use super::{format::*, lock::*};
use crate::store::SealKey;
#[allow(unused_imports)]
use crate::token::{AccessToken, RefreshToken, Scope, TokenSet, TokenType};
#[allow(unused_imports)]
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn store() -> (tempfile::TempDir, FileStore) {
    let tmp = tempfile::tempdir().unwrap();
    let s = FileStore::new(tmp.path().join("tokens")).unwrap();
    (tmp, s)
}

fn arc_store() -> (tempfile::TempDir, Arc<FileStore>) {
    let (tmp, s) = store();
    (tmp, Arc::new(s))
}

fn json_path(s: &FileStore, key: &str) -> PathBuf {
    s.path(&file_name(key), "json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_load_missing() {
    let (_t, s) = store();
    c::load_missing(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_round_trip() {
    let (_t, s) = store();
    c::round_trip(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_cas_conflict_returns_current() {
    let (_t, s) = store();
    c::cas(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_remove() {
    let (_t, s) = store();
    c::remove(&s).await;
    // The removal marker holds no token.
    let text = fs::read_to_string(json_path(&s, "k")).unwrap();
    assert!(text.contains("\"removed\":true"), "{text}");
    assert!(!text.contains("rt-"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_lock_excludes_other_thread() {
    let (_t, s) = arc_store();
    c::lock_excludes(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_lock_other_key_does_not_block() {
    let (_t, s) = arc_store();
    c::lock_other_key(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_store_while_locked_does_not_deadlock() {
    let (_t, s) = arc_store();
    c::store_under_lock(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_lock_serializes_rotation() {
    let (_t, s) = arc_store();
    c::lock_serializes_rotation(s).await;
}

/// Two instances on one directory (as two processes would be) exclude each other through the
/// OS lock alone.
#[test]
fn store_file_lock_excludes_other_instance() {
    let (_t, a) = store();
    let b = FileStore::new(a.dir()).unwrap();
    let step = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let g = a.lock_blocking("k").unwrap();
    let t = {
        let step = Arc::clone(&step);
        std::thread::spawn(move || {
            let _g = b.lock_blocking("k").unwrap();
            step.load(std::sync::atomic::Ordering::SeqCst)
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    step.store(1, std::sync::atomic::Ordering::SeqCst);
    drop(g);
    assert_eq!(t.join().unwrap(), 1);
}

#[cfg(unix)]
#[test]
fn store_file_modes_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_t, s) = store();
    let _ = s.store_blocking("k", &c::sample(c::RT), None).unwrap();
    let _lock = s.lock_blocking("k").unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.dir()), 0o700);
    for entry in fs::read_dir(s.dir()).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

#[test]
fn store_file_no_temp_files_left() {
    let (_t, s) = store();
    let mut v = None;
    for i in 0..5 {
        v = s
            .store_blocking("k", &c::sample(&format!("rt-{i}")), v)
            .unwrap()
            .written();
    }
    let _ = s.remove_blocking("k", v).unwrap();
    let _ = s.store_blocking("other", &c::sample("x"), None).unwrap();
    let mut names: Vec<String> = fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for n in &names {
        assert!(
            !n.starts_with('.') && (n.ends_with(".json") || n.ends_with(".cas.lock")),
            "{n}"
        );
        // Hex file names only: no part of the key leaks into the directory listing.
        let stem = n.split('.').next().unwrap();
        assert_eq!(stem.len(), 64);
        assert!(stem.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

#[test]
fn store_file_reloaded_expired_token_is_expired() {
    let (_t, s) = store();
    let now = SystemTime::now();
    let mut g = c::sample(c::RT);
    let access = g.access.as_mut().unwrap();
    access.issued_at = now - Duration::from_secs(7200);
    access.expires_at = Some(now - Duration::from_secs(3600));
    let _ = s.store_blocking("k", &g, None).unwrap();
    let restarted = FileStore::new(s.dir()).unwrap();
    let a = restarted
        .load_blocking("k")
        .unwrap()
        .unwrap()
        .value
        .access
        .unwrap();
    assert!(a.is_expired(SystemTime::now()));
    assert_eq!(a.lifetime(), Some(Duration::from_secs(3600)));
}

#[test]
fn store_file_restart_sees_latest_refresh_token() {
    let (_t, s) = store();
    let mut v = None;
    for i in 0..3 {
        v = s
            .store_blocking("k", &c::sample(&format!("rt-{i}")), v)
            .unwrap()
            .written();
    }
    drop(s.clone());
    let dir = s.dir().to_owned();
    drop(s);
    let restarted = FileStore::new(dir).unwrap();
    let got = restarted.load_blocking("k").unwrap().unwrap();
    assert_eq!(got.version, 3);
    assert_eq!(got.value.refresh_token.unwrap().secret(), "rt-2");
    // And it continues the version count.
    assert_eq!(
        restarted
            .store_blocking("k", &c::sample("rt-3"), Some(3))
            .unwrap()
            .written(),
        Some(4)
    );
}

#[test]
fn store_file_corrupt_file_is_typed_error_without_secret() {
    let (_t, s) = store();
    let _ = s.store_blocking("k", &c::sample(c::RT), None).unwrap();
    let path = json_path(&s, "k");
    let good = fs::read_to_string(&path).unwrap();
    let cases = [
        // Truncated.
        good[..good.len() / 2].to_owned(),
        // Not JSON at all.
        format!("{}garbage", c::RT),
        // A token where a number belongs: serde_json would quote it.
        good.replacen("\"version\":1", &format!("\"version\":\"{}\"", c::RT), 1),
        good.replacen(
            &format!("\"refresh_token\":\"{}\"", c::RT),
            &format!("\"refresh_token\":[\"{}\"]", c::RT),
            1,
        ),
        // Time out of range.
        good.replacen("\"updated_at\":1700000005", "\"updated_at\":-5", 1),
        String::new(),
    ];
    for bad in cases {
        assert_ne!(bad, good);
        fs::write(&path, &bad).unwrap();
        let err = s.load_blocking("k").unwrap_err();
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(c::RT) && !shown.contains(c::AT), "{shown}");
        // store() reads before writing: it fails the same way rather than overwrite.
        assert!(matches!(
            s.store_blocking("k", &c::sample("new"), Some(1)),
            Err(Error::Store(_))
        ));
    }
}

#[test]
fn store_file_newer_format_is_refused() {
    let (_t, s) = store();
    let _ = s.store_blocking("k", &c::sample(c::RT), None).unwrap();
    let path = json_path(&s, "k");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replacen("\"format\":1", "\"format\":2", 1);
    fs::write(&path, text).unwrap();
    let err = s.load_blocking("k").unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn store_file_key_mismatch_is_refused() {
    let (_t, s) = store();
    let _ = s.store_blocking("a", &c::sample(c::RT), None).unwrap();
    fs::copy(json_path(&s, "a"), json_path(&s, "b")).unwrap();
    assert!(matches!(s.load_blocking("b"), Err(Error::Store(_))));
}

#[test]
fn store_file_format_on_disk() {
    let (_t, s) = store();
    let _ = s.store_blocking("k", &c::sample(c::RT), None).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(json_path(&s, "k")).unwrap()).unwrap();
    assert_eq!(v["format"], 1);
    assert_eq!(v["version"], 1);
    assert_eq!(v["key"], "k");
    assert_eq!(v["refresh_token"], c::RT);
    assert_eq!(v["updated_at"], 1_700_000_005);
    let a = &v["access"];
    assert_eq!(a["access_token"], c::AT);
    assert_eq!(a["token_type"], "DPoP");
    assert_eq!(a["issued_at"], 1_700_000_000);
    assert_eq!(a["expires_at"], 1_700_003_600);
    assert_eq!(a["scope"], "read write");
    assert!(v.get("removed").is_none());
}

#[test]
fn store_file_debug_has_no_token() {
    let (_t, s) = store();
    let g = c::sample(c::RT);
    let _ = s.store_blocking("k", &g, None).unwrap();
    let loaded = s.load_blocking("k").unwrap();
    let shown = format!("{s:?} {g:?} {loaded:?}");
    assert!(!shown.contains(c::RT) && !shown.contains(c::AT), "{shown}");
}

#[test]
fn store_file_path_is_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(FileStore::new(&file), Err(Error::Store(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_records_round_trip() {
    let (_t, s) = store();
    c::records_round_trip(&s).await;
    assert!(s.store_record_blocking("k", Some(b"persisted")).unwrap());
}

#[test]
fn store_file_records_on_disk() {
    let (_t, s) = store();
    let key = "registration:https://as.example\0../../etc/passwd";
    assert!(s
        .store_record_blocking(key, Some(b"record-secret-bytes"))
        .unwrap());
    // One file, named after the key's hash, in the store's directory, private to its owner.
    let path = s.path(&file_name(key), "record");
    assert_eq!(path.parent(), Some(s.dir()));
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(r#"{"format":1,"key":"#), "{text}");
    assert!(
        !text.contains("record-secret-bytes"),
        "stored as base64: {text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The grant under the same key keeps its own file, in its format.
    let _ = s.store_blocking(key, &c::sample(c::RT), None).unwrap();
    let grant = fs::read_to_string(json_path(&s, key)).unwrap();
    assert!(grant.starts_with(r#"{"format":1,"version":1,"#), "{grant}");
    assert_eq!(
        s.load_record_blocking(key).unwrap().as_deref(),
        Some(&b"record-secret-bytes"[..])
    );
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    // Removed: the file goes.
    assert!(s.store_record_blocking(key, None).unwrap());
    assert!(!path.exists());
    // Values over the cap are refused.
    let big = vec![0u8; 256 * 1024 + 1];
    assert!(matches!(
        s.store_record_blocking(key, Some(&big)),
        Err(Error::Store(_))
    ));
}

#[test]
fn store_file_records_garbage_is_a_typed_error() {
    let (_t, s) = store();
    let key = "registration:k";
    let path = s.path(&file_name(key), "record");
    let other =
        String::from_utf8(record::encode("another-key", b"v", None).unwrap().to_vec()).unwrap();
    for bad in [
        "".to_owned(),
        "garbage".to_owned(),
        r#"{"format":1}"#.to_owned(),
        r#"{"format":0,"key":"registration:k","value":""}"#.to_owned(),
        r#"{"format":9,"key":"registration:k","value":""}"#.to_owned(),
        r#"{"format":1,"key":"registration:k","value":"!!not base64!!"}"#.to_owned(),
        r#"{"format":1,"key":"registration:k","value":5}"#.to_owned(),
        other,
    ] {
        fs::write(&path, &bad).unwrap();
        let e = s.load_record_blocking(key).expect_err(&bad);
        assert!(matches!(e, Error::Store(_)), "{bad}: {e:?}");
        assert!(!e.to_string().contains("not base64!!"), "{e}");
    }
    // Too large to be a record.
    fs::write(&path, vec![b' '; (MAX_FILE + 1) as usize]).unwrap();
    assert!(matches!(s.load_record_blocking(key), Err(Error::Store(_))));
}

#[cfg(unix)]
#[test]
fn store_file_records_refuse_symlinks() {
    let (t, s) = store();
    let key = "registration:k";
    let target = t.path().join("elsewhere");
    fs::write(&target, b"outside").unwrap();
    std::os::unix::fs::symlink(&target, s.path(&file_name(key), "record")).unwrap();
    assert!(matches!(s.load_record_blocking(key), Err(Error::Store(_))));
    // Removing the record removes the link, not its target.
    assert!(s.store_record_blocking(key, None).unwrap());
    assert_eq!(fs::read(&target).unwrap(), b"outside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_lease_renewed_while_held() {
    let (_t, s) = arc_store();
    c::lease_renewed_while_held(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_conformance_run_all() {
    let tmp = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    c::run_all(
        || {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Arc::new(FileStore::new(tmp.path().join(format!("s{i}"))).unwrap())
        },
        c::LeaseKind::Process,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_file_sealed_passes_the_conformance_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SealKey::generate();
    let n = std::sync::atomic::AtomicUsize::new(0);
    c::run_all(
        || {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let s = FileStore::new(tmp.path().join(format!("s{i}"))).unwrap();
            Arc::new(s.with_seal_key(key.clone()))
        },
        c::LeaseKind::Process,
    )
    .await;
}

#[test]
fn store_file_seals_tokens_and_records_at_rest() {
    let (_t, plain) = store();
    let key = SealKey::generate();
    let sealed = FileStore::new(plain.dir())
        .unwrap()
        .with_seal_key(key.clone());
    let _ = sealed.store_blocking("k", &c::sample(c::RT), None).unwrap();
    assert!(sealed
        .store_record_blocking("r", Some(b"client-secret-xyz"))
        .unwrap());
    for entry in fs::read_dir(sealed.dir()).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        for secret in [c::RT, c::AT, "client-secret-xyz"] {
            assert!(!text.contains(secret), "{secret} in clear: {text}");
        }
    }
    let text = fs::read_to_string(json_path(&sealed, "k")).unwrap();
    assert!(text.contains(&format!("sealed:v1:{}:", key.id())), "{text}");
    let got = sealed.load_blocking("k").unwrap().unwrap();
    assert_eq!(got.value.refresh_token.unwrap().secret(), c::RT);
    assert_eq!(got.value.access.unwrap().access_token.secret(), c::AT);
    assert_eq!(
        sealed.load_record_blocking("r").unwrap().as_deref(),
        Some(&b"client-secret-xyz"[..])
    );
    // Without the key, or with another, a typed error that quotes nothing.
    for reader in [
        FileStore::new(plain.dir()).unwrap(),
        FileStore::new(plain.dir())
            .unwrap()
            .with_seal_key(SealKey::generate()),
    ] {
        let e = reader.load_blocking("k").unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(matches!(e, Error::Store(_)), "{shown}");
        assert!(!shown.contains(c::RT), "{shown}");
        assert!(reader.load_record_blocking("r").is_err());
    }
    // A sealed value moved to another key's file does not open.
    let _ = sealed
        .store_blocking("k2", &c::sample("rt-2"), None)
        .unwrap();
    let moved = fs::read_to_string(json_path(&sealed, "k"))
        .unwrap()
        .replace("\"key\":\"k\"", "\"key\":\"k2\"");
    fs::write(json_path(&sealed, "k2"), moved).unwrap();
    let e = sealed.load_blocking("k2").unwrap_err();
    assert!(e.to_string().contains("does not open"), "{e}");
    // Values written before sealing was turned on are read, and sealed when next written.
    let _ = plain
        .store_blocking("old", &c::sample(c::RT), None)
        .unwrap();
    let v = sealed.load_blocking("old").unwrap().unwrap();
    assert_eq!(v.value.refresh_token.as_ref().unwrap().secret(), c::RT);
    let _ = sealed
        .store_blocking("old", &v.value, Some(v.version))
        .unwrap();
    let text = fs::read_to_string(json_path(&sealed, "old")).unwrap();
    assert!(!text.contains(c::RT), "{text}");
}
