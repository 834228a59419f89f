//! The on-disk record of a [`FileStore`](super::FileStore) (format 1): what is written, and the
//! checks on what is read back (stored data is untrusted).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::super::{StoredGrant, Versioned};
use super::corrupt;
use crate::clock::unix_secs;
use crate::error::{Error, Result};
use crate::store::seal::{self, SealKey};
use crate::token::{AccessToken, RefreshToken, Scope, TokenSet, TokenType};

/// The on-disk format this code writes; files from a newer format are refused.
pub(in crate::store) const FORMAT: u32 = 1;

/// Files larger than this are not token files.
pub(in crate::store) const MAX_FILE: u64 = 1024 * 1024;

pub(in crate::store) fn from_unix(secs: i64) -> Result<SystemTime> {
    u64::try_from(secs)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .ok_or_else(|| corrupt("time out of range"))
}

/// Longest access token lifetime believed from a file (ten years, as for `expires_in`).
pub(in crate::store) const MAX_STORED_LIFETIME: Duration =
    Duration::from_secs(10 * 365 * 24 * 3600);

/// Whether a stored access token's times make sense: issued no later than a day from now, and
/// living at most [`MAX_STORED_LIFETIME`]. A file written by another tool with milliseconds
/// where seconds belong fails this; its access token is then ignored (the grant's refresh token
/// is kept), rather than believed valid for millennia.
pub(in crate::store) fn believable_times(t: &TokenSet) -> bool {
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
pub(in crate::store) struct Record {
    pub(in crate::store) version: u64,
    pub(in crate::store) key: String,
    pub(in crate::store) grant: Option<StoredGrant>,
}

impl Record {
    pub(in crate::store) fn live(&self) -> bool {
        self.grant.is_some()
    }

    pub(in crate::store) fn into_versioned(self) -> Option<Versioned<StoredGrant>> {
        let version = self.version;
        self.grant.map(|value| Versioned { value, version })
    }

    /// The file's bytes, its tokens sealed with `seal` when given. Only this module turns
    /// tokens into text, here, explicitly.
    pub(in crate::store) fn encode(&self, seal: Option<&SealKey>) -> Result<Zeroizing<Vec<u8>>> {
        let g = self.grant.as_ref();
        let field = |name: &str, secret: &str| -> Result<SecretField> {
            match seal {
                Some(k) => Ok(SecretField(Zeroizing::new(seal::seal(
                    k,
                    &self.key,
                    name,
                    secret.as_bytes(),
                )?))),
                None => Ok(SecretField::new(secret)),
            }
        };
        let refresh_token = g
            .and_then(|g| g.refresh_token.as_ref())
            .map(|t| field("refresh_token", t.secret()))
            .transpose()?;
        let access_token = g
            .and_then(|g| g.access.as_ref())
            .map(|a| field("access_token", a.access_token.secret()))
            .transpose()?;
        let access =
            g.and_then(|g| g.access.as_ref())
                .zip(access_token)
                .map(|(a, access_token)| FileAccess {
                    access_token,
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
            dpop_jkt: g.and_then(|g| g.dpop_jkt.as_deref()),
        };
        let mut out = Zeroizing::new(Vec::with_capacity(4096));
        serde_json::to_writer(&mut *out, &file).map_err(|e| {
            Error::Store(format!("cannot encode the token file ({:?})", e.classify()))
        })?;
        out.push(b'\n');
        Ok(out)
    }

    /// A file's record; sealed tokens are opened with `seal` (plain ones pass as they are).
    pub(in crate::store) fn decode(bytes: &[u8], seal: Option<&SealKey>) -> Result<Self> {
        // serde_json messages may quote the offending value, which can be a token: keep only
        // the error category and position.
        let describe = |e: serde_json::Error| corrupt(&crate::error::json_problem(&e));
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
        let open = |name: &str, v: &SecretField| -> Result<Zeroizing<String>> {
            let plain = seal::open(seal, &f.key, name, &v.0)?;
            String::from_utf8(plain.to_vec())
                .map(Zeroizing::new)
                .map_err(|_| corrupt("a sealed token is not text"))
        };
        let grant = if f.removed {
            None
        } else {
            let access = match f.access {
                None => None,
                Some(a) => {
                    let mut set = TokenSet::new(
                        AccessToken::new(open("access_token", &a.access_token)?.as_str()),
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
                refresh_token: f
                    .refresh_token
                    .as_ref()
                    .map(|t| open("refresh_token", t).map(|p| RefreshToken::new(p.as_str())))
                    .transpose()?,
                access,
                updated_at: from_unix(f.updated_at)?,
                dpop_jkt: match f.dpop_jkt {
                    Some(j)
                        if j.is_empty()
                            || j.len() > 128
                            || !j
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                    {
                        return Err(corrupt("dpop_jkt is not a JWK thumbprint"))
                    }
                    j => j,
                },
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
pub(in crate::store) struct SecretField(Zeroizing<String>);

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
pub(in crate::store) struct FileAccess {
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
pub(in crate::store) struct FormatProbe {
    format: u32,
}

#[derive(Serialize)]
pub(in crate::store) struct FileRecord<'a> {
    format: u32,
    version: u64,
    key: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    removed: bool,
    refresh_token: Option<&'a SecretField>,
    access: Option<&'a FileAccess>,
    updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_jkt: Option<&'a str>,
}

#[derive(Deserialize)]
pub(in crate::store) struct FileRecordOwned {
    version: u64,
    key: String,
    #[serde(default)]
    removed: bool,
    #[serde(default)]
    refresh_token: Option<SecretField>,
    #[serde(default)]
    access: Option<FileAccess>,
    updated_at: i64,
    #[serde(default)]
    dpop_jkt: Option<String>,
}

pub(in crate::store) fn is_false(b: &bool) -> bool {
    !*b
}
