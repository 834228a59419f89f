//! The files of a [`FileStore`](super::FileStore) that are not its records: OS file locks,
//! opening without following links, and the checks on the store's directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::super::KeyGuard;
use super::store_err;
use crate::error::{Error, Result};

/// A held [`FileStore::lock`]: the OS lock is released first, then the in-process one.
pub(super) struct FileLock {
    pub(super) file: File,
    pub(super) _in_process: KeyGuard,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// The file name (without extension) for `key`: hex SHA-256.
pub(super) fn file_name(key: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Open (or create) a lock file without following a symlink: an existing one goes through
/// [`open_no_follow`], a missing one is created with `create_new` (`O_CREAT | O_EXCL` refuses
/// any existing path, a dangling symlink included).
pub(super) fn open_lock_file(path: &Path) -> Result<File> {
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
pub(super) fn open_no_follow(path: &Path, opts: &OpenOptions, what: &str) -> Result<Option<File>> {
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
pub(super) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
pub(super) fn same_file(_a: &fs::Metadata, _b: &fs::Metadata) -> bool {
    true
}

/// Refuse a store directory others could plant files in: writable by group or others, or not
/// owned by the user this process runs as.
#[cfg(unix)]
pub(super) fn check_private_dir(dir: &Path) -> Result<()> {
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
pub(super) fn current_uid(dir: &Path) -> Result<u32> {
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
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| store_err("cannot sync the store directory", &e))
}

#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}
