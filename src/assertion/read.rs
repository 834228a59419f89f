//! Reading an assertion from a file, a variable's text or a program's output: bounded, trimmed,
//! and refused when empty or not printable.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt as _;

use super::MAX_ASSERTION_LEN;
use crate::secret::SecretString;

/// What a file looked like when read: a rotation (rewrite in place, or a rename over it) changes
/// at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    identity: (u64, u64),
}

fn stamp_of(md: &std::fs::Metadata) -> FileStamp {
    #[cfg(unix)]
    let identity = {
        use std::os::unix::fs::MetadataExt as _;
        (md.dev(), md.ino())
    };
    #[cfg(not(unix))]
    let identity = (0, 0);
    FileStamp {
        modified: md.modified().ok(),
        len: md.len(),
        identity,
    }
}

/// The file's current stamp (follows symbolic links, as Kubernetes' `..data` links are).
pub(super) async fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    tokio::fs::metadata(path).await.map(|md| stamp_of(&md))
}

/// Read the token in `path` and the file's stamp.
pub(super) async fn file(path: &Path) -> Result<(SecretString, FileStamp), String> {
    let io = |e: std::io::Error| format!("cannot read the file ({})", e.kind());
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    let md = f.metadata().await.map_err(io)?;
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    if md.len() > MAX_ASSERTION_LEN as u64 {
        return Err(format!("the file is larger than {MAX_ASSERTION_LEN} bytes"));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(md.len() as usize));
    // The file may grow between the two calls: never read past the cap.
    (&mut f)
        .take(MAX_ASSERTION_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(io)?;
    let text = utf8(&bytes)?;
    Ok((token_text(text)?, stamp_of(&md)))
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() > MAX_ASSERTION_LEN {
        return Err(format!(
            "the assertion is larger than {MAX_ASSERTION_LEN} bytes"
        ));
    }
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| "the assertion is not UTF-8 text".into())
}

/// Trim `raw` and check it is one printable token.
pub(super) fn token_text(raw: String) -> Result<SecretString, String> {
    let raw = zeroize::Zeroizing::new(raw);
    let t = raw.trim();
    if t.is_empty() {
        return Err("the assertion is empty".into());
    }
    if t.len() > MAX_ASSERTION_LEN {
        return Err(format!(
            "the assertion is larger than {MAX_ASSERTION_LEN} bytes"
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the assertion is not one printable token".into());
    }
    Ok(SecretString::new(t.to_owned()))
}

/// Run `program` with `args` (no shell) and read the token it prints.
pub(super) async fn command(
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<SecretString, String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the program ({})", e.kind()))?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| "the program has no standard output".to_owned())?;
    let run = async {
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        (&mut out)
            .take(MAX_ASSERTION_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("cannot read the program's output ({})", e.kind()))?;
        if bytes.len() > MAX_ASSERTION_LEN {
            // Killed when `child` drops.
            return Err(format!(
                "the program printed more than {MAX_ASSERTION_LEN} bytes"
            ));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("cannot wait for the program ({})", e.kind()))?;
        if !status.success() {
            return Err(match status.code() {
                Some(code) => format!("the program exited with status {code}"),
                None => "the program was killed by a signal".to_owned(),
            });
        }
        token_text(utf8(&bytes)?)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("the program did not finish within {timeout:?}")),
    }
}
