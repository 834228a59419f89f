//! The record files of a [`FileStore`](super::FileStore) (format 1): small opaque values kept
//! beside the grants, with the key they belong to. What is read back is untrusted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::store::seal::SealKey;

/// The record format this code writes; files from a newer format are refused.
const FORMAT: u32 = 1;

/// Largest value [`encode`] takes: records are small (a client registration is a few KiB), and
/// their file, base64 included, stays well under the store's file cap.
pub(in crate::store) const MAX_RECORD: usize = 256 * 1024;

#[derive(Serialize)]
struct RecordFile<'a> {
    format: u32,
    key: &'a str,
    value: &'a str,
}

#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

#[derive(Deserialize)]
struct RecordFileOwned {
    key: String,
    value: Encoded,
}

/// The base64 text of a value as read: zeroized on drop.
struct Encoded(Zeroizing<String>);

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(|s| Encoded(Zeroizing::new(s)))
    }
}

fn corrupt(what: &str) -> Error {
    Error::Store(format!("corrupt record file: {what}"))
}

/// The file's bytes for `value` under `key`.
///
/// # Errors
/// [`Error::Store`] when `value` is larger than [`MAX_RECORD`].
pub(in crate::store) fn encode(
    key: &str,
    value: &[u8],
    seal: Option<&SealKey>,
) -> Result<Zeroizing<Vec<u8>>> {
    if value.len() > MAX_RECORD {
        return Err(Error::Store(format!(
            "a record is at most {MAX_RECORD} bytes, got {}",
            value.len()
        )));
    }
    let encoded = Zeroizing::new(match seal {
        Some(k) => crate::store::seal::seal(k, key, "record", value)?,
        None => URL_SAFE_NO_PAD.encode(value),
    });
    let file = RecordFile {
        format: FORMAT,
        key,
        value: &encoded,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(encoded.len() + key.len() + 64));
    serde_json::to_writer(&mut *out, &file).map_err(|e| {
        Error::Store(format!(
            "cannot encode the record file ({:?})",
            e.classify()
        ))
    })?;
    out.push(b'\n');
    Ok(out)
}

/// The value of a record file, which must belong to `key`.
///
/// # Errors
/// [`Error::Store`] for a file that is not JSON, of a newer format, of another key, or whose
/// value is not base64url. Messages quote nothing of the file.
pub(in crate::store) fn decode(
    bytes: &[u8],
    key: &str,
    seal: Option<&SealKey>,
) -> Result<Zeroizing<Vec<u8>>> {
    let describe = |e: serde_json::Error| corrupt(&crate::error::json_problem(&e));
    let probe: FormatProbe = serde_json::from_slice(bytes).map_err(describe)?;
    if probe.format > FORMAT {
        return Err(Error::Store(format!(
            "record file has format {}, newer than the supported {FORMAT}",
            probe.format
        )));
    }
    if probe.format == 0 {
        return Err(corrupt("format 0"));
    }
    let file: RecordFileOwned = serde_json::from_slice(bytes).map_err(describe)?;
    if file.key != key {
        return Err(Error::Store(
            "record file belongs to another key (hash collision or tampering)".into(),
        ));
    }
    if crate::store::seal::is_sealed(&file.value.0) {
        return crate::store::seal::open(seal, key, "record", &file.value.0);
    }
    URL_SAFE_NO_PAD
        .decode(file.value.0.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| corrupt("the value is not base64url"))
}
