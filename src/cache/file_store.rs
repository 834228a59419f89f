//! [`FileStore`]: one JSON file per key in a private directory, shared safely between processes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::store::{next_version, KeyGuard, KeyLocks};
use super::{StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned};
use crate::clock::unix_secs;
use crate::error::{Error, Result};
use crate::token::{AccessToken, RefreshToken, Scope, TokenSet, TokenType};

/// The on-disk format this code writes; files from a newer format are refused.
const FORMAT: u32 = 1;

/// Files larger than this are not token files.
const MAX_FILE: u64 = 1024 * 1024;

/// A [`TokenStore`] on disk, safe to share between threads and processes.
///
/// # Layout
///
/// Each key has, in the store's directory (created `0700` when missing), files named after the
/// hex SHA-256 of the key, so any key is a safe file name:
///
/// - `<hash>.json`: the value, its version and the key, written with mode `0600`:
///   `{"format":1,"version":3,"key":"…","refresh_token":"…","access":{"access_token":"…",
///   "token_type":"DPoP","issued_at":1700000000,"expires_at":1700003600,"scope":"a b",
///   "issued_token_type":null,"extra":{}},"updated_at":1700000000}`. Times are unix seconds.
///   After a removal the file stays as a marker without any token (`"removed":true`), so that
///   versions are never reused.
/// - `<hash>.lock`: the lock taken by [`lock`](TokenStore::lock) for the length of a refresh.
/// - `<hash>.cas.lock`: the lock taken by [`store`](TokenStore::store) and
///   [`remove`](TokenStore::remove) around their read-compare-write.
///
/// Lock files are empty and never deleted (deleting a lock file while another process waits on it
/// would split the lock in two).
///
/// # Writes
///
/// A write goes to a uniquely named temporary file in the same directory, is flushed to disk
/// (`sync_all`), renamed over `<hash>.json` and the directory is synced: readers see the old
/// value or the new one, never a torn file, and a crash cannot leave a half-written one.
/// [`load`](TokenStore::load) therefore takes no lock.
///
/// # Locking
///
/// Both locks are OS file locks ([`File::lock`], `flock` on Unix, `LockFileEx` on Windows),
/// released by the OS if the process dies. Within one process, a per-key in-process lock is taken
/// first, so threads queue in memory rather than each holding a descriptor blocked in the OS.
///
/// The two locks are separate files on purpose: an OS file lock belongs to an open file, so a
/// thread holding [`lock`](TokenStore::lock) that then called `store` on the same lock file would
/// wait for itself. With a distinct, short-lived write lock, `store` under `lock` cannot deadlock,
/// whichever thread (or tokio worker) runs it, and the order is always `.lock` then `.cas.lock`.
/// The refresh lock is advisory; correctness of concurrent writes rests on compare-and-swap.
///
/// # Secrets
///
/// Tokens are written in clear to files only the owner can read; nothing else protects them.
/// Errors never include file contents.
///
/// # Security
///
/// On Unix, [`new`](Self::new) refuses a directory that is writable by its group or by others, or
/// that is not owned by the user the process runs as: whoever can write to the directory can
/// plant files in it (the directory may be reached through a symlink: the directory it resolves
/// to is the one checked). No file in the directory is opened through a symbolic link: a token or
/// lock file that is a symlink (or not a regular file) is refused with [`Error::Store`], and a
/// missing lock file is created exclusively (`O_CREAT | O_EXCL`, which never follows a link).
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    refresh_locks: Arc<KeyLocks>,
    write_locks: Arc<KeyLocks>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// A store in `dir`, created (mode `0700` on Unix) if missing.
    ///
    /// # Errors
    /// [`Error::Store`] when the directory cannot be created or is not a directory; on Unix also
    /// when it is writable by group or others, or is owned by another user.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| store_err("cannot create the store directory", &e))?;
        if !dir.is_dir() {
            return Err(Error::Store("the store path is not a directory".into()));
        }
        #[cfg(unix)]
        check_private_dir(&dir)?;
        Ok(FileStore {
            inner: Arc::new(Inner {
                dir,
                refresh_locks: Arc::default(),
                write_locks: Arc::default(),
            }),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.inner.dir.join(format!("{name}.{ext}"))
    }

    /// Run `f` holding the write lock of `name` (in-process, then OS).
    fn with_write_lock<R>(&self, name: &str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let _in_process = self.inner.write_locks.acquire(name);
        let file = open_lock_file(&self.path(name, "cas.lock"))?;
        file.lock()
            .map_err(|e| store_err("cannot lock the token file", &e))?;
        let result = f();
        // Closing the file releases the lock too; unlocking first is just explicit.
        let _ = file.unlock();
        result
    }

    /// The record of `key`, if its file exists.
    fn read(&self, key: &str, name: &str) -> Result<Option<Record>> {
        let Some(file) = open_no_follow(
            &self.path(name, "json"),
            OpenOptions::new().read(true),
            "token file",
        )?
        else {
            return Ok(None);
        };
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| store_err("cannot read the token file", &e))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(Error::Store("token file is too large".into()));
        }
        let record = Record::decode(&bytes)?;
        if record.key != key {
            return Err(Error::Store(
                "token file belongs to another key (hash collision or tampering)".into(),
            ));
        }
        Ok(Some(record))
    }

    /// Replace the file of `name` atomically with `bytes`.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = self.path(
            &format!(
                ".{name}.{}.{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ),
            "tmp",
        );
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts
            .open(&tmp)
            .map_err(|e| store_err("cannot create a temporary token file", &e))?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| {
                drop(file);
                fs::rename(&tmp, self.path(name, "json"))
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(store_err("cannot write the token file", &e));
        }
        sync_dir(&self.inner.dir)
    }

    fn write_record(&self, record: &Record) -> Result<()> {
        let name = file_name(&record.key);
        self.write(&name, &record.encode()?)
    }
}

impl TokenStore for FileStore {
    fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        Ok(self
            .read(key, &file_name(key))?
            .and_then(Record::into_versioned))
    }

    fn store(&self, key: &str, value: &StoredGrant, expected: Option<u64>) -> Result<StoreOutcome> {
        let name = file_name(key);
        self.with_write_lock(&name, || {
            let current = self.read(key, &name)?;
            let (last, live) = current
                .as_ref()
                .map_or((0, false), |r| (r.version, r.live()));
            let Some(version) = next_version(last, live, expected)? else {
                return Ok(StoreOutcome::Conflict {
                    current: current.and_then(Record::into_versioned),
                });
            };
            self.write_record(&Record {
                version,
                key: key.to_owned(),
                grant: Some(value.clone()),
            })?;
            Ok(StoreOutcome::Written { version })
        })
    }

    fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        let name = file_name(key);
        self.with_write_lock(&name, || {
            let current = self.read(key, &name)?;
            let (last, live) = current
                .as_ref()
                .map_or((0, false), |r| (r.version, r.live()));
            if !live && expected.is_none() {
                return Ok(StoreOutcome::Written { version: last });
            }
            let Some(version) = next_version(last, live, expected.or(Some(last)))? else {
                return Ok(StoreOutcome::Conflict {
                    current: current.and_then(Record::into_versioned),
                });
            };
            self.write_record(&Record {
                version,
                key: key.to_owned(),
                grant: None,
            })?;
            Ok(StoreOutcome::Written { version })
        })
    }

    fn lock(&self, key: &str) -> Result<StoreLock> {
        let name = file_name(key);
        let in_process = self.inner.refresh_locks.acquire(&name);
        let file = open_lock_file(&self.path(&name, "lock"))?;
        file.lock()
            .map_err(|e| store_err("cannot lock the token file", &e))?;
        Ok(StoreLock::new(FileLock {
            file,
            _in_process: in_process,
        }))
    }
}

/// A held [`FileStore::lock`]: the OS lock is released first, then the in-process one.
struct FileLock {
    file: File,
    _in_process: KeyGuard,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// The file name (without extension) for `key`: hex SHA-256.
fn file_name(key: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Open (or create) a lock file without following a symlink: an existing one goes through
/// [`open_no_follow`], a missing one is created with `create_new` (`O_CREAT | O_EXCL` refuses
/// any existing path, a dangling symlink included).
fn open_lock_file(path: &Path) -> Result<File> {
    let mut existing = OpenOptions::new();
    existing.read(true).write(true);
    let mut create = OpenOptions::new();
    create.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    // Lock files are never deleted, so losing the creation race twice means the path is being
    // tampered with.
    for _ in 0..3 {
        if let Some(file) = open_no_follow(path, &existing, "lock file")? {
            return Ok(file);
        }
        match create.open(path) {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(store_err("cannot create the lock file", &e)),
        }
    }
    Err(Error::Store(
        "the lock file keeps appearing and disappearing".into(),
    ))
}

/// Open the existing regular file at `path` (`None` when missing) without following a symlink.
///
/// `path` must be a regular file, not a symlink, before the open, and the file opened must be
/// the one `path` names after it: a symlink swapped in between is detected, not followed.
fn open_no_follow(path: &Path, opts: &OpenOptions, what: &str) -> Result<Option<File>> {
    let refuse = || {
        Error::Store(format!(
            "the {what} is a symbolic link or not a regular file; refusing to open it"
        ))
    };
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Err(refuse()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store_err(&format!("cannot inspect the {what}"), &e)),
    }
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store_err(&format!("cannot open the {what}"), &e)),
    };
    let opened = file
        .metadata()
        .map_err(|e| store_err(&format!("cannot inspect the {what}"), &e))?;
    let named = fs::symlink_metadata(path)
        .map_err(|e| store_err(&format!("cannot inspect the {what}"), &e))?;
    if !named.file_type().is_file() || !opened.file_type().is_file() || !same_file(&opened, &named)
    {
        return Err(refuse());
    }
    Ok(Some(file))
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_a: &fs::Metadata, _b: &fs::Metadata) -> bool {
    true
}

/// Refuse a store directory others could plant files in: writable by group or others, or not
/// owned by the user this process runs as.
#[cfg(unix)]
fn check_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let md = fs::metadata(dir).map_err(|e| store_err("cannot inspect the store directory", &e))?;
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::Store(format!(
            "the store directory is writable by group or others (mode {mode:04o}); \
             it must be private to its owner (0700)"
        )));
    }
    let me = current_uid(dir)?;
    if md.uid() != me {
        return Err(Error::Store(format!(
            "the store directory is owned by uid {}, not by the user this process runs as \
             (uid {me})",
            md.uid()
        )));
    }
    Ok(())
}

/// The uid this process creates files as, read from a probe file it creates (and removes) in
/// `dir`: std has no portable `geteuid`, and `unsafe` is forbidden.
#[cfg(unix)]
fn current_uid(dir: &Path) -> Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let probe = dir.join(format!(
        ".owner.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts
        .open(&probe)
        .map_err(|e| store_err("cannot create a file in the store directory", &e))?;
    let uid = file.metadata().map(|m| m.uid());
    drop(file);
    let _ = fs::remove_file(&probe);
    uid.map_err(|e| store_err("cannot inspect a file in the store directory", &e))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| store_err("cannot sync the store directory", &e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// An I/O error as a store error: what failed and the OS reason (never file contents).
fn store_err(what: &str, e: &io::Error) -> Error {
    Error::Store(format!("{what}: {e}"))
}

fn corrupt(what: &str) -> Error {
    Error::Store(format!("corrupt token file: {what}"))
}

fn from_unix(secs: i64) -> Result<SystemTime> {
    u64::try_from(secs)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .ok_or_else(|| corrupt("time out of range"))
}

/// Longest access token lifetime believed from a file (ten years, as for `expires_in`).
const MAX_STORED_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Whether a stored access token's times make sense: issued no later than a day from now, and
/// living at most [`MAX_STORED_LIFETIME`]. A file written by another tool with milliseconds
/// where seconds belong fails this; its access token is then ignored (the grant's refresh token
/// is kept), rather than believed valid for millennia.
fn believable_times(t: &TokenSet) -> bool {
    let now = SystemTime::now();
    let issued_ok = now
        .checked_add(Duration::from_secs(24 * 3600))
        .is_none_or(|limit| t.issued_at <= limit);
    let lifetime_ok = t.lifetime().is_none_or(|l| l <= MAX_STORED_LIFETIME);
    if !(issued_ok && lifetime_ok) {
        tracing::warn!(target: "agent_oauth",
            "ignoring a stored access token whose issue or expiry time is out of range");
    }
    issued_ok && lifetime_ok
}

/// One key's file, decoded: `grant` is `None` for a removal marker.
struct Record {
    version: u64,
    key: String,
    grant: Option<StoredGrant>,
}

impl Record {
    fn live(&self) -> bool {
        self.grant.is_some()
    }

    fn into_versioned(self) -> Option<Versioned<StoredGrant>> {
        let version = self.version;
        self.grant.map(|value| Versioned { value, version })
    }

    /// The file's bytes. Only this module turns tokens into text, here, explicitly.
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let g = self.grant.as_ref();
        let refresh_token = g
            .and_then(|g| g.refresh_token.as_ref())
            .map(|t| SecretField::new(t.secret()));
        let access = g.and_then(|g| g.access.as_ref()).map(|a| FileAccess {
            access_token: SecretField::new(a.access_token.secret()),
            token_type: a.token_type.as_str().to_owned(),
            issued_at: unix_secs(a.issued_at),
            expires_at: a.expires_at.map(unix_secs),
            scope: a.scope.to_string(),
            issued_token_type: a.issued_token_type.clone(),
            extra: a.extra.clone(),
        });
        let file = FileRecord {
            format: FORMAT,
            version: self.version,
            key: &self.key,
            removed: g.is_none(),
            refresh_token: refresh_token.as_ref(),
            access: access.as_ref(),
            updated_at: unix_secs(g.map_or_else(SystemTime::now, |g| g.updated_at)),
        };
        let mut out = Zeroizing::new(Vec::with_capacity(4096));
        serde_json::to_writer(&mut *out, &file).map_err(|e| {
            Error::Store(format!("cannot encode the token file ({:?})", e.classify()))
        })?;
        out.push(b'\n');
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        // serde_json messages may quote the offending value, which can be a token: keep only
        // the error category and position.
        let describe = |e: serde_json::Error| {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "truncated",
                serde_json::error::Category::Syntax => "not JSON",
                serde_json::error::Category::Data => "unexpected content",
                serde_json::error::Category::Io => "unreadable",
            };
            corrupt(&format!(
                "{what} at line {} column {}",
                e.line(),
                e.column()
            ))
        };
        let probe: FormatProbe = serde_json::from_slice(bytes).map_err(describe)?;
        if probe.format > FORMAT {
            return Err(Error::Store(format!(
                "token file has format {}, newer than the supported {FORMAT}",
                probe.format
            )));
        }
        let f: FileRecordOwned = serde_json::from_slice(bytes).map_err(describe)?;
        if f.version == 0 {
            return Err(corrupt("version 0"));
        }
        let grant = if f.removed {
            None
        } else {
            let access = match f.access {
                None => None,
                Some(a) => {
                    let mut set = TokenSet::new(
                        AccessToken::new(a.access_token.0.as_str()),
                        TokenType::parse(&a.token_type),
                        from_unix(a.issued_at)?,
                    );
                    set.expires_at = a.expires_at.map(from_unix).transpose()?;
                    set.scope = Scope::parse(&a.scope);
                    set.issued_token_type = a.issued_token_type;
                    set.extra = a.extra;
                    believable_times(&set).then_some(set)
                }
            };
            Some(StoredGrant {
                refresh_token: f.refresh_token.map(|t| RefreshToken::new(t.0.as_str())),
                access,
                updated_at: from_unix(f.updated_at)?,
            })
        };
        Ok(Record {
            version: f.version,
            key: f.key,
            grant,
        })
    }
}

/// A token in a file record: zeroized on drop, (de)serialized as a plain string.
struct SecretField(Zeroizing<String>);

impl SecretField {
    fn new(s: &str) -> Self {
        SecretField(Zeroizing::new(s.to_owned()))
    }
}

impl Serialize for SecretField {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretField(Zeroizing::new(s)))
    }
}

#[derive(Serialize, Deserialize)]
struct FileAccess {
    access_token: SecretField,
    token_type: String,
    issued_at: i64,
    expires_at: Option<i64>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    issued_token_type: Option<String>,
    #[serde(default)]
    extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

#[derive(Serialize)]
struct FileRecord<'a> {
    format: u32,
    version: u64,
    key: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    removed: bool,
    refresh_token: Option<&'a SecretField>,
    access: Option<&'a FileAccess>,
    updated_at: i64,
}

#[derive(Deserialize)]
struct FileRecordOwned {
    version: u64,
    key: String,
    #[serde(default)]
    removed: bool,
    #[serde(default)]
    refresh_token: Option<SecretField>,
    #[serde(default)]
    access: Option<FileAccess>,
    updated_at: i64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::store::conformance as c;
    use super::*;

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

    #[test]
    fn store_file_load_missing() {
        let (_t, s) = store();
        c::load_missing(&s);
    }

    #[test]
    fn store_file_round_trip() {
        let (_t, s) = store();
        c::round_trip(&s);
    }

    #[test]
    fn store_file_cas_conflict_returns_current() {
        let (_t, s) = store();
        c::cas(&s);
    }

    #[test]
    fn store_file_remove() {
        let (_t, s) = store();
        c::remove(&s);
        // The removal marker holds no token.
        let text = fs::read_to_string(json_path(&s, "k")).unwrap();
        assert!(text.contains("\"removed\":true"), "{text}");
        assert!(!text.contains("rt-"), "{text}");
    }

    #[test]
    fn store_file_lock_excludes_other_thread() {
        let (_t, s) = arc_store();
        c::lock_excludes(s);
    }

    #[test]
    fn store_file_lock_other_key_does_not_block() {
        let (_t, s) = arc_store();
        c::lock_other_key(s);
    }

    #[test]
    fn store_file_store_while_locked_does_not_deadlock() {
        let (_t, s) = arc_store();
        c::store_under_lock(s);
    }

    #[test]
    fn store_file_lock_serializes_rotation() {
        let (_t, s) = arc_store();
        c::lock_serializes_rotation(s);
    }

    /// Two instances on one directory (as two processes would be) exclude each other through the
    /// OS lock alone.
    #[test]
    fn store_file_lock_excludes_other_instance() {
        let (_t, a) = store();
        let b = FileStore::new(a.dir()).unwrap();
        let step = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g = a.lock("k").unwrap();
        let t = {
            let step = Arc::clone(&step);
            std::thread::spawn(move || {
                let _g = b.lock("k").unwrap();
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
        let _ = s.store("k", &c::sample(c::RT), None).unwrap();
        let _lock = s.lock("k").unwrap();
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
                .store("k", &c::sample(&format!("rt-{i}")), v)
                .unwrap()
                .written();
        }
        let _ = s.remove("k", v).unwrap();
        let _ = s.store("other", &c::sample("x"), None).unwrap();
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
        let _ = s.store("k", &g, None).unwrap();
        let restarted = FileStore::new(s.dir()).unwrap();
        let a = restarted.load("k").unwrap().unwrap().value.access.unwrap();
        assert!(a.is_expired(SystemTime::now()));
        assert_eq!(a.lifetime(), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn store_file_restart_sees_latest_refresh_token() {
        let (_t, s) = store();
        let mut v = None;
        for i in 0..3 {
            v = s
                .store("k", &c::sample(&format!("rt-{i}")), v)
                .unwrap()
                .written();
        }
        drop(s.clone());
        let dir = s.dir().to_owned();
        drop(s);
        let restarted = FileStore::new(dir).unwrap();
        let got = restarted.load("k").unwrap().unwrap();
        assert_eq!(got.version, 3);
        assert_eq!(got.value.refresh_token.unwrap().secret(), "rt-2");
        // And it continues the version count.
        assert_eq!(
            restarted
                .store("k", &c::sample("rt-3"), Some(3))
                .unwrap()
                .written(),
            Some(4)
        );
    }

    #[test]
    fn store_file_corrupt_file_is_typed_error_without_secret() {
        let (_t, s) = store();
        let _ = s.store("k", &c::sample(c::RT), None).unwrap();
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
            let err = s.load("k").unwrap_err();
            assert!(matches!(err, Error::Store(_)), "{err:?}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(c::RT) && !shown.contains(c::AT), "{shown}");
            // store() reads before writing: it fails the same way rather than overwrite.
            assert!(matches!(
                s.store("k", &c::sample("new"), Some(1)),
                Err(Error::Store(_))
            ));
        }
    }

    #[test]
    fn store_file_newer_format_is_refused() {
        let (_t, s) = store();
        let _ = s.store("k", &c::sample(c::RT), None).unwrap();
        let path = json_path(&s, "k");
        let text = fs::read_to_string(&path)
            .unwrap()
            .replacen("\"format\":1", "\"format\":2", 1);
        fs::write(&path, text).unwrap();
        let err = s.load("k").unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn store_file_key_mismatch_is_refused() {
        let (_t, s) = store();
        let _ = s.store("a", &c::sample(c::RT), None).unwrap();
        fs::copy(json_path(&s, "a"), json_path(&s, "b")).unwrap();
        assert!(matches!(s.load("b"), Err(Error::Store(_))));
    }

    #[test]
    fn store_file_format_on_disk() {
        let (_t, s) = store();
        let _ = s.store("k", &c::sample(c::RT), None).unwrap();
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
        let _ = s.store("k", &g, None).unwrap();
        let loaded = s.load("k").unwrap();
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
}
