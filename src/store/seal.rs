//! Sealing at rest: tokens (and records) encrypted with a key the user supplies, with
//! ChaCha20-Poly1305 (RFC 8439), bound to the store key and field they belong to.
//!
//! A sealed value is the text `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`; the
//! associated data is the store key and the field name, so a sealed value copied to another
//! key or field does not open. The key id (16 hex digits of the key's SHA-256) tells a value
//! sealed with another key apart from a tampered one.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const PREFIX: &str = "sealed:v1:";

/// A 256-bit key that seals what a store keeps at rest ([`FileStore::with_seal_key`],
/// [`RedisStoreBuilder::seal_key`](super::RedisStoreBuilder::seal_key) with feature `redis`).
///
/// Every replica sharing a store needs the same key: keep it in a secret manager and load it
/// with [`from_base64`](Self::from_base64). Zeroized on drop; `Debug` shows only its id.
///
/// [`FileStore::with_seal_key`]: super::FileStore::with_seal_key
#[derive(Clone)]
pub struct SealKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl SealKey {
    /// The key `bytes`.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(bytes);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        SealKey {
            key: Zeroizing::new(bytes),
            id,
        }
    }

    /// A key from its base64 text (standard or URL-safe alphabet, padding optional): 32 bytes.
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not base64 of exactly 32 bytes (the text is not
    /// quoted).
    pub fn from_base64(text: &str) -> Result<Self> {
        let t = text.trim().trim_end_matches('=');
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(t)
                .or_else(|_| STANDARD.decode(format!("{t}{}", "=".repeat((4 - t.len() % 4) % 4))))
                .map_err(|_| Error::config("the seal key is not base64"))?,
        );
        let arr: [u8; 32] = bytes[..]
            .try_into()
            .map_err(|_| Error::config("the seal key must be 32 bytes"))?;
        Ok(Self::from_bytes(arr))
    }

    /// A new random key (print it once with [`to_base64`](Self::to_base64) and store it as a
    /// secret).
    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// The key as URL-safe base64, to keep in a secret manager.
    ///
    /// # Security
    /// This is the key: whoever has it can read every sealed token.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(&self.key[..]))
    }

    /// The key's id: 16 hex digits of its SHA-256, written with every sealed value.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305> {
        ChaCha20Poly1305::new_from_slice(&self.key[..])
            .map_err(|_| Error::Store("the seal key cannot be used".into()))
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn aad(store_key: &str, field: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(store_key.len() + field.len() + 1);
    a.extend_from_slice(store_key.as_bytes());
    a.push(0);
    a.extend_from_slice(field.as_bytes());
    a
}

/// `plain` sealed with `key` for `field` of `store_key`.
pub(crate) fn seal(key: &SealKey, store_key: &str, field: &str, plain: &[u8]) -> Result<String> {
    let nonce: [u8; 12] = rand::random();
    let aad = aad(store_key, field);
    let ct = key
        .cipher()?
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Store("cannot seal a token".into()))?;
    let mut blob = Vec::with_capacity(12 + ct.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    Ok(format!(
        "{PREFIX}{}:{}",
        key.id,
        URL_SAFE_NO_PAD.encode(blob)
    ))
}

/// Whether `value` is a sealed value.
pub(crate) fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The plaintext of `value` for `field` of `store_key`: opened with `key` when sealed, as it
/// is otherwise (a value written before sealing was turned on).
///
/// # Errors
/// [`Error::Store`] when the value is sealed and no key is configured, was sealed with
/// another key, or does not open (tampered, moved from another key or field). Nothing of the
/// value is quoted.
pub(crate) fn open(
    key: Option<&SealKey>,
    store_key: &str,
    field: &str,
    value: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let Some(rest) = value.strip_prefix(PREFIX) else {
        return Ok(Zeroizing::new(value.as_bytes().to_vec()));
    };
    let key = key.ok_or_else(|| {
        Error::Store("a stored token is sealed and the store has no seal key".into())
    })?;
    let (id, blob) = rest
        .split_once(':')
        .ok_or_else(|| Error::Store("a sealed token is malformed".into()))?;
    if id != key.id {
        return Err(Error::Store(format!(
            "a stored token is sealed with another key (id {}), not this store's ({})",
            crate::error::sanitize(id, 32),
            key.id
        )));
    }
    let blob = URL_SAFE_NO_PAD
        .decode(blob)
        .map_err(|_| Error::Store("a sealed token is malformed".into()))?;
    if blob.len() < 12 + 16 {
        return Err(Error::Store("a sealed token is malformed".into()));
    }
    let (nonce, ct) = blob.split_at(12);
    let nonce: [u8; 12] = nonce
        .try_into()
        .map_err(|_| Error::Store("a sealed token is malformed".into()))?;
    let aad = aad(store_key, field);
    key.cipher()?
        .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::Store(
                "a sealed token does not open with this key (tampered, or moved from another \
                 key)"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_round_trip_bound_to_key_and_field() {
        let k = SealKey::generate();
        let s = seal(&k, "grant-a", "refresh_token", b"rt-secret").unwrap();
        assert!(is_sealed(&s) && !s.contains("rt-secret"), "{s}");
        assert!(s.contains(k.id()));
        assert_eq!(
            &open(Some(&k), "grant-a", "refresh_token", &s).unwrap()[..],
            b"rt-secret"
        );
        // Two seals of one value differ (fresh nonce).
        assert_ne!(
            s,
            seal(&k, "grant-a", "refresh_token", b"rt-secret").unwrap()
        );
        // Moved to another key or field, or opened with another key or none: refused.
        for (key, store_key, field) in [
            (Some(&k), "grant-b", "refresh_token"),
            (Some(&k), "grant-a", "access_token"),
        ] {
            let e = open(key, store_key, field, &s).unwrap_err();
            assert!(e.to_string().contains("does not open"), "{e}");
        }
        let other = SealKey::generate();
        let e = open(Some(&other), "grant-a", "refresh_token", &s).unwrap_err();
        assert!(e.to_string().contains("another key"), "{e}");
        let e = open(None, "grant-a", "refresh_token", &s).unwrap_err();
        assert!(e.to_string().contains("no seal key"), "{e}");
        // Tampered bytes.
        let mut t = s.clone().into_bytes();
        let last = t.len() - 2;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(t).unwrap();
        assert!(open(Some(&k), "grant-a", "refresh_token", &t).is_err());
        for bad in [
            "sealed:v1:",
            "sealed:v1:x",
            "sealed:v1:ab:!!",
            "sealed:v1:ab:AAAA",
        ] {
            assert!(matches!(
                open(Some(&k), "grant-a", "refresh_token", bad),
                Err(Error::Store(_))
            ));
        }
        // Plaintext from before sealing passes through.
        assert_eq!(
            &open(Some(&k), "grant-a", "refresh_token", "plain").unwrap()[..],
            b"plain"
        );
    }

    #[test]
    fn seal_key_from_base64_and_debug_hides_it() {
        let k = SealKey::generate();
        let text = k.to_base64();
        let again = SealKey::from_base64(&text).unwrap();
        assert_eq!(again.id(), k.id());
        let std = STANDARD.encode(&k.key[..]);
        assert_eq!(SealKey::from_base64(&std).unwrap().id(), k.id());
        assert!(matches!(
            SealKey::from_base64("c2hvcnQ"),
            Err(Error::Config(_))
        ));
        assert!(matches!(SealKey::from_base64("%%%"), Err(Error::Config(_))));
        let dbg = format!("{k:?}");
        assert!(
            !dbg.contains(text.as_str()) && dbg.contains(k.id()),
            "{dbg}"
        );
    }
}
