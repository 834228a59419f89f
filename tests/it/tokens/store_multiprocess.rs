//! Several processes rotate one refresh token through a shared [`FileStore`]: under
//! `lock`, every compare-and-swap succeeds and no update is lost.
//!
//! The parent test re-executes this test binary with `AGENT_OAUTH_STORE_CHILD` set, selecting
//! only the child test, which then does the rotations; run normally, the child test does nothing.

use std::process::{Command, Stdio};

use crate::support::prelude::{FileStore, RefreshToken, StoreOutcome, StoredGrant, TokenStore};

const CHILD_ENV: &str = "AGENT_OAUTH_STORE_CHILD";
const CHILD_TEST: &str = "tokens::store_multiprocess::store_multiprocess_child";
const CHILDREN: u64 = 4;
const ROUNDS: u64 = 50;
const KEY: &str = "https://issuer.example|client-1|agent";

/// Conflict exit code, distinct from a test failure (101).
const EXIT_CONFLICT: i32 = 3;

#[tokio::test]
async fn store_multiprocess_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = FileStore::new(dir).unwrap();
    let pid = std::process::id();
    for i in 0..ROUNDS {
        let _lock = store
            .lock(KEY, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        let current = store.load(KEY).await.unwrap();
        let next = StoredGrant::new(Some(RefreshToken::new(format!("rt-{pid}-{i}"))), None);
        match store
            .store(KEY, &next, current.map(|c| c.version))
            .await
            .unwrap()
        {
            StoreOutcome::Written { .. } => {}
            StoreOutcome::Conflict { current } => {
                eprintln!(
                    "child {pid}: conflict at round {i}, store at version {:?}",
                    current.map(|c| c.version)
                );
                std::process::exit(EXIT_CONFLICT);
            }
        }
    }
}

#[tokio::test]
async fn store_multiprocess_rotation_is_serialized() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tokens");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(&exe)
                .args([CHILD_TEST, "--exact", "--test-threads=1", "--nocapture"])
                .env(CHILD_ENV, &dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "child failed ({:?}):\n{stdout}\n{stderr}",
            out.status.code()
        );
        // The filter must have selected exactly the child test.
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
    let store = FileStore::new(&dir).unwrap();
    let last = store.load(KEY).await.unwrap().unwrap();
    assert_eq!(last.version, CHILDREN * ROUNDS);
    let rt = last.value.refresh_token.unwrap();
    assert!(
        rt.secret().starts_with("rt-") && rt.secret().ends_with(&format!("-{}", ROUNDS - 1)),
        "the last write is some child's last round"
    );
}
