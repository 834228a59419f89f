//! [`FileStore`]: grants in files on one machine, shared by its processes.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{async_trait, next_version, KeyLocks, SealKey};
use super::{StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned};
use crate::error::{Error, Result};

pub(super) mod format;
mod lock;
pub(super) mod record;
#[cfg(test)]
mod tests;

use format::{Record, MAX_FILE};
use lock::{check_private_dir, file_name, open_lock_file, open_no_follow, sync_dir, FileLock};

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
///   "issued_token_type":null,"extra":{}},"updated_at":1700000000}`, with `"dpop_jkt":"…"` when
///   the refresh token is DPoP-bound. Times are unix seconds. With a seal key the token members
///   are sealed values (`"sealed:v1:<key id>:…"`).
///   After a removal the file stays as a marker without any token (`"removed":true`), so that
///   versions are never reused.
/// - `<hash>.record`: the record of [`store_record`](TokenStore::store_record), mode `0600`:
///   `{"format":1,"key":"…","value":"<base64url of the bytes>"}`, written like a value
///   (below), last writer wins; removing a record deletes its file.
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
/// Both locks are OS file locks ([`File::lock`](std::fs::File::lock), `flock` on Unix, `LockFileEx` on Windows),
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
/// Tokens are written to files only the owner can read, sealed with a key of yours when the
/// store has one ([`with_seal_key`](Self::with_seal_key)), else in clear. Errors never include
/// file contents.
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
    seal: Option<SealKey>,
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
                seal: None,
            }),
        })
    }

    /// Seal the tokens and records this store writes with `key` (ChaCha20-Poly1305, bound to
    /// each value's key and field), and open sealed ones when reading. Values written before
    /// sealing was turned on are still read, and sealed on their next write. Without a key,
    /// tokens are written in clear to files only the owner can read.
    ///
    /// Every process sharing the directory needs the same key: a value sealed with another
    /// key is an [`Error::Store`] naming the key ids, never a silent miss.
    pub fn with_seal_key(self, key: SealKey) -> Self {
        FileStore {
            inner: Arc::new(Inner {
                dir: self.inner.dir.clone(),
                refresh_locks: self.inner.refresh_locks.clone(),
                write_locks: self.inner.write_locks.clone(),
                seal: Some(key),
            }),
        }
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

    /// The bytes of the file `<name>.<ext>` (a `what`: "token file", ...), if it exists, read
    /// without following a link and refused past [`MAX_FILE`].
    fn read_file(&self, name: &str, ext: &str, what: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let Some(file) =
            open_no_follow(&self.path(name, ext), OpenOptions::new().read(true), what)?
        else {
            return Ok(None);
        };
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| store_err(&format!("cannot read the {what}"), &e))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(Error::Store(format!("{what} is too large")));
        }
        Ok(Some(bytes))
    }

    /// The record of `key`, if its file exists.
    fn read(&self, key: &str, name: &str) -> Result<Option<Record>> {
        let Some(bytes) = self.read_file(name, "json", "token file")? else {
            return Ok(None);
        };
        let record = Record::decode(&bytes, self.inner.seal.as_ref())?;
        if record.key != key {
            return Err(Error::Store(
                "token file belongs to another key (hash collision or tampering)".into(),
            ));
        }
        Ok(Some(record))
    }

    /// Replace the file `<name>.<ext>` atomically with `bytes`.
    fn write(&self, name: &str, ext: &str, bytes: &[u8]) -> Result<()> {
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
                fs::rename(&tmp, self.path(name, ext))
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(store_err("cannot write the token file", &e));
        }
        sync_dir(&self.inner.dir)
    }

    fn write_record(&self, record: &Record) -> Result<()> {
        let name = file_name(&record.key);
        self.write(&name, "json", &record.encode(self.inner.seal.as_ref())?)
    }
}

impl FileStore {
    /// Compare-and-swap the record of `key` under its write lock: write `grant` (or the removal
    /// marker, for `None`) when the current version is `expected`. Removing what is already gone
    /// succeeds; a removal with no expected version removes whatever is there.
    fn swap(
        &self,
        key: &str,
        expected: Option<u64>,
        grant: Option<&StoredGrant>,
    ) -> Result<StoreOutcome> {
        let name = file_name(key);
        self.with_write_lock(&name, || {
            let current = self.read(key, &name)?;
            let (last, live) = current
                .as_ref()
                .map_or((0, false), |r| (r.version, r.live()));
            let expected = match grant {
                Some(_) => expected,
                None if !live && expected.is_none() => {
                    return Ok(StoreOutcome::Written { version: last })
                }
                None => expected.or(Some(last)),
            };
            let Some(version) = next_version(last, live, expected)? else {
                return Ok(StoreOutcome::Conflict {
                    current: current.and_then(Record::into_versioned),
                });
            };
            self.write_record(&Record {
                version,
                key: key.to_owned(),
                grant: grant.cloned(),
            })?;
            Ok(StoreOutcome::Written { version })
        })
    }
}

/// The store's operations, blocking: the [`TokenStore`] methods run them on tokio's blocking
/// threads.
impl FileStore {
    fn load_blocking(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        Ok(self
            .read(key, &file_name(key))?
            .and_then(Record::into_versioned))
    }

    fn store_blocking(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome> {
        self.swap(key, expected, Some(value))
    }

    fn remove_blocking(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        self.swap(key, expected, None)
    }

    fn lock_blocking(&self, key: &str) -> Result<StoreLock> {
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

    fn load_record_blocking(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.read_file(&file_name(key), "record", "record file")? else {
            return Ok(None);
        };
        Ok(Some(
            record::decode(&bytes, key, self.inner.seal.as_ref())?.to_vec(),
        ))
    }

    fn store_record_blocking(&self, key: &str, value: Option<&[u8]>) -> Result<bool> {
        let name = file_name(key);
        match value {
            Some(value) => self.write(
                &name,
                "record",
                &record::encode(key, value, self.inner.seal.as_ref())?,
            )?,
            None => {
                // `remove_file` deletes a symbolic link itself, never what it points to.
                match fs::remove_file(self.path(&name, "record")) {
                    Ok(()) => sync_dir(&self.inner.dir)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(store_err("cannot remove the record file", &e)),
                }
            }
        }
        Ok(true)
    }
}

/// Run `f` with a clone of the store on a blocking thread.
async fn off_thread<T: Send + 'static>(
    store: &FileStore,
    f: impl FnOnce(FileStore) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store))
        .await
        .map_err(|e| Error::Store(format!("store task failed: {e}")))?
}

/// The lease is ignored: an OS file lock is held until its guard drops or its process dies.
#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        let key = key.to_owned();
        off_thread(self, move |s| s.load_blocking(&key)).await
    }

    async fn store(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome> {
        let (key, value) = (key.to_owned(), value.clone());
        off_thread(self, move |s| s.store_blocking(&key, &value, expected)).await
    }

    async fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        let key = key.to_owned();
        off_thread(self, move |s| s.remove_blocking(&key, expected)).await
    }

    async fn lock(&self, key: &str, _lease: Duration) -> Result<StoreLock> {
        let key = key.to_owned();
        off_thread(self, move |s| s.lock_blocking(&key)).await
    }

    async fn load_record(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        off_thread(self, move |s| s.load_record_blocking(&key)).await
    }

    async fn store_record(&self, key: &str, value: Option<&[u8]>) -> Result<bool> {
        let (key, value) = (key.to_owned(), value.map(|v| Zeroizing::new(v.to_vec())));
        off_thread(self, move |s| {
            s.store_record_blocking(&key, value.as_deref().map(|v| &v[..]))
        })
        .await
    }
}

/// An I/O error as a store error: what failed and the OS reason (never file contents).
pub(super) fn store_err(what: &str, e: &io::Error) -> Error {
    Error::Store(format!("{what}: {e}"))
}

pub(super) fn corrupt(what: &str) -> Error {
    Error::Store(format!("corrupt token file: {what}"))
}
