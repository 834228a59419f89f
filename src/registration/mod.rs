//! Client registration: how an agent gets a `client_id` at an authorization server it has
//! never seen, as MCP clients do (MCP authorization, 2025-11-25).
//!
//! - **Client ID Metadata Documents** (CIMD, draft-ietf-oauth-client-id-metadata-document),
//!   when the server advertises `client_id_metadata_document_supported`
//!   ([`client_id_metadata_document_supported`]): the `client_id` is an HTTPS URL that serves
//!   the client's metadata. [`ClientMetadata::client_id_metadata_document`] renders that
//!   document, [`Registration::metadata_document`] is the registration it amounts to, and
//!   [`validate_client_id_metadata_document`] is what the authorization server checks when it
//!   fetches one.
//! - **Dynamic Client Registration** (RFC 7591) otherwise: [`register`] POSTs the
//!   [`ClientMetadata`] to the server's `registration_endpoint`.
//! - A pre-registered client is a [`Registration::pre_registered`].
//!
//! A [`Registration`] gives the client authentication to use at the token endpoint
//! ([`Registration::client_auth`]) and is stored as a versioned record
//! ([`Registration::to_record`], [`Registration::from_record`]) in the agent's
//! [`TokenStore`], per issuer, through the store's opaque records
//! ([`TokenStore::store_record`]).
//!
//! ```
//! use agent_oauth::registration::{choose_auth_method, ClientMetadata};
//!
//! // The server's `token_endpoint_auth_methods_supported`, and no private key of our own.
//! let supported = vec!["none".to_owned(), "client_secret_post".to_owned()];
//! let method = choose_auth_method(Some(&supported), false);
//! assert_eq!(method, "client_secret_post");
//! let metadata = ClientMetadata::new("research agent")
//!     .redirect_uris(["http://127.0.0.1/callback"])
//!     .token_endpoint_auth_method(method);
//! # let _ = metadata;
//! ```

mod cimd;
mod dcr;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::client_auth::{AssertionKey, ClientAuth};
use crate::discovery::ServerMetadata;
use crate::error::{sanitize, Error, Result};
use crate::secret::SecretString;
use crate::store::TokenStore;

pub use cimd::validate_client_id_metadata_document;
pub use dcr::{register, ClientMetadata};

/// Methods that authenticate with a secret shared with the server: they need a
/// `client_secret`, and a client ID metadata document must not use them.
pub(crate) const SHARED_SECRET_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
];

/// How a [`Registration`] came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistrationKind {
    /// Registered out of band (an operator configured the client at the server).
    PreRegistered,
    /// The `client_id` is the URL of a client ID metadata document (CIMD).
    MetadataDocument,
    /// Registered with Dynamic Client Registration (RFC 7591).
    Dynamic,
}

impl RegistrationKind {
    fn as_str(self) -> &'static str {
        match self {
            RegistrationKind::PreRegistered => "pre_registered",
            RegistrationKind::MetadataDocument => "metadata_document",
            RegistrationKind::Dynamic => "dynamic",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pre_registered" => RegistrationKind::PreRegistered,
            "metadata_document" => RegistrationKind::MetadataDocument,
            "dynamic" => RegistrationKind::Dynamic,
            _ => return None,
        })
    }
}

/// A client registered at one authorization server: its identifier, credentials and the
/// metadata the server holds (RFC 7591 §3.2.1 for a dynamic registration).
///
/// `Debug` shows no secret. Times are absolute; `client_secret_expires_at` is `None` when the
/// secret does not expire (RFC 7591 sends 0) or none was issued.
#[derive(Clone)]
#[non_exhaustive]
pub struct Registration {
    /// The `client_id`.
    pub client_id: String,
    /// The `client_secret`, for the shared-secret methods.
    pub client_secret: Option<SecretString>,
    /// How the client authenticates at the token endpoint: `none`, `client_secret_basic`,
    /// `client_secret_post`, `private_key_jwt`, ...
    pub token_endpoint_auth_method: String,
    /// When the server issued the `client_id` (`client_id_issued_at`), if it said.
    pub client_id_issued_at: Option<SystemTime>,
    /// When the secret expires (`client_secret_expires_at`); `None`: never.
    pub client_secret_expires_at: Option<SystemTime>,
    /// The RFC 7592 `registration_access_token`, to manage the registration.
    pub registration_access_token: Option<SecretString>,
    /// The RFC 7592 `registration_client_uri`.
    pub registration_client_uri: Option<String>,
    /// The client metadata the server holds (as it echoed it, for a dynamic registration).
    pub metadata: ClientMetadata,
    /// How the registration came to be.
    pub kind: RegistrationKind,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("client_id", &self.client_id)
            .field("kind", &self.kind)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("client_secret", &self.client_secret)
            .field("client_id_issued_at", &self.client_id_issued_at)
            .field("client_secret_expires_at", &self.client_secret_expires_at)
            .field("registration_access_token", &self.registration_access_token)
            .field("registration_client_uri", &self.registration_client_uri)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// A client registered out of band, authenticating with `token_endpoint_auth_method`
    /// (with `client_secret` for the shared-secret methods).
    pub fn pre_registered(
        client_id: impl Into<String>,
        token_endpoint_auth_method: impl Into<String>,
        client_secret: Option<SecretString>,
    ) -> Self {
        Registration {
            client_id: client_id.into(),
            client_secret,
            token_endpoint_auth_method: token_endpoint_auth_method.into(),
            client_id_issued_at: None,
            client_secret_expires_at: None,
            registration_access_token: None,
            registration_client_uri: None,
            metadata: ClientMetadata::empty(),
            kind: RegistrationKind::PreRegistered,
        }
    }

    /// The client authentication for this registration's `token_endpoint_auth_method`: `none`,
    /// `client_secret_basic`, `client_secret_post` (with the registered secret),
    /// `private_key_jwt` (with `key`), `tls_client_auth` and `self_signed_tls_client_auth`.
    ///
    /// # Errors
    /// [`Error::Config`] when a secret method has no secret, `private_key_jwt` has no `key`, or
    /// the method is one this crate does not implement.
    pub fn client_auth(&self, key: Option<AssertionKey>) -> Result<ClientAuth> {
        let secret = || {
            self.client_secret.clone().ok_or_else(|| {
                Error::config(format!(
                    "the registration uses `{}` but has no client_secret",
                    self.token_endpoint_auth_method
                ))
            })
        };
        match self.token_endpoint_auth_method.as_str() {
            "none" => Ok(ClientAuth::none()),
            "client_secret_basic" => Ok(ClientAuth::client_secret_basic(secret()?)),
            "client_secret_post" => Ok(ClientAuth::client_secret_post(secret()?)),
            "private_key_jwt" => key.map(ClientAuth::private_key_jwt).ok_or_else(|| {
                Error::config("the registration uses `private_key_jwt`: give its key")
            }),
            "tls_client_auth" => Ok(ClientAuth::tls_client_auth()),
            "self_signed_tls_client_auth" => Ok(ClientAuth::self_signed_tls_client_auth()),
            other => Err(Error::config(format!(
                "unsupported token_endpoint_auth_method `{}`",
                sanitize(other, 64)
            ))),
        }
    }

    /// Has the client secret expired at `now`? Never for a secret without an expiry
    /// (`client_secret_expires_at` 0) or a registration without one.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.client_secret_expires_at.is_some_and(|at| now >= at)
    }

    /// The registration as a versioned JSON record for storage: `{"v":1,...}`, secrets
    /// included.
    ///
    /// # Errors
    /// [`Error::Store`] when the metadata cannot be encoded.
    ///
    /// # Security
    /// The record holds the client secret and the registration access token in clear: keep it
    /// where tokens are kept.
    pub fn to_record(&self) -> Result<Vec<u8>> {
        let secs = |t: Option<SystemTime>| {
            t.map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs().max(1))
            })
        };
        let record = RecordV1 {
            v: RECORD_VERSION,
            kind: self.kind.as_str().to_owned(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.as_ref().map(RecordSecret::of),
            token_endpoint_auth_method: self.token_endpoint_auth_method.clone(),
            client_id_issued_at: secs(self.client_id_issued_at),
            client_secret_expires_at: secs(self.client_secret_expires_at).unwrap_or(0),
            registration_access_token: self
                .registration_access_token
                .as_ref()
                .map(RecordSecret::of),
            registration_client_uri: self.registration_client_uri.clone(),
            metadata: self.metadata.clone(),
        };
        serde_json::to_vec(&record).map_err(|e| {
            Error::Store(format!(
                "cannot encode the registration record ({:?})",
                e.classify()
            ))
        })
    }

    /// Read a record written by [`to_record`](Self::to_record). Stored data is untrusted: a
    /// record too large, not JSON, of an unknown version or with members of the wrong type is
    /// refused.
    ///
    /// # Errors
    /// [`Error::Store`], naming what is wrong but quoting nothing of the record.
    pub fn from_record(bytes: &[u8]) -> Result<Registration> {
        if bytes.len() > MAX_RECORD {
            return Err(corrupt("too large"));
        }
        let probe: VersionProbe = serde_json::from_slice(bytes).map_err(describe)?;
        match probe.v {
            Some(RECORD_VERSION) => {}
            Some(v) if v > RECORD_VERSION => {
                return Err(Error::Store(format!(
                    "registration record has version {v}, newer than the supported \
                     {RECORD_VERSION}"
                )))
            }
            _ => return Err(corrupt("no known version")),
        }
        let r: RecordV1 = serde_json::from_slice(bytes).map_err(describe)?;
        let kind = RegistrationKind::parse(&r.kind).ok_or_else(|| corrupt("unknown kind"))?;
        if r.client_id.is_empty() {
            return Err(corrupt("empty client_id"));
        }
        let time = |s: u64| {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(s))
                .ok_or_else(|| corrupt("time out of range"))
        };
        Ok(Registration {
            client_id: r.client_id,
            client_secret: r.client_secret.map(RecordSecret::into_secret),
            token_endpoint_auth_method: r.token_endpoint_auth_method,
            client_id_issued_at: r.client_id_issued_at.map(time).transpose()?,
            client_secret_expires_at: match r.client_secret_expires_at {
                0 => None,
                s => Some(time(s)?),
            },
            registration_access_token: r.registration_access_token.map(RecordSecret::into_secret),
            registration_client_uri: r.registration_client_uri,
            metadata: r.metadata,
            kind,
        })
    }
}

/// Pick the `token_endpoint_auth_method` to register, from the server's
/// `token_endpoint_auth_methods_supported` (`None` when absent: RFC 8414 §2 then means
/// `client_secret_basic` only) and whether the client has a key for `private_key_jwt`.
///
/// In order: `private_key_jwt` when `has_key` and it is supported, then
/// `client_secret_basic`, `client_secret_post`, `none`; `client_secret_basic` when the server
/// supports none of these.
///
/// ```
/// use agent_oauth::registration::choose_auth_method;
///
/// assert_eq!(choose_auth_method(None, true), "client_secret_basic");
/// let supported = vec!["none".to_owned(), "private_key_jwt".to_owned()];
/// assert_eq!(choose_auth_method(Some(&supported), true), "private_key_jwt");
/// assert_eq!(choose_auth_method(Some(&supported), false), "none");
/// ```
pub fn choose_auth_method(supported: Option<&[String]>, has_key: bool) -> &'static str {
    let default = ["client_secret_basic".to_owned()];
    let supported = supported.unwrap_or(&default);
    let has = |m: &str| supported.iter().any(|s| s == m);
    if has_key && has("private_key_jwt") {
        "private_key_jwt"
    } else if has("client_secret_basic") {
        "client_secret_basic"
    } else if has("client_secret_post") {
        "client_secret_post"
    } else if has("none") {
        "none"
    } else {
        "client_secret_basic"
    }
}

/// Does the server accept client ID metadata documents (its metadata has
/// `client_id_metadata_document_supported: true`)?
pub fn client_id_metadata_document_supported(metadata: &ServerMetadata) -> bool {
    metadata.client_id_metadata_document_supported == Some(true)
}

// ------------------------------------------------------------------ the stored record

/// The record format [`Registration::to_record`] writes.
const RECORD_VERSION: u32 = 1;

/// Records larger than this are not registrations.
const MAX_RECORD: usize = 256 * 1024;

#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    v: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    v: u32,
    kind: String,
    client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<RecordSecret>,
    token_endpoint_auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id_issued_at: Option<u64>,
    /// 0: never.
    #[serde(default)]
    client_secret_expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration_access_token: Option<RecordSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration_client_uri: Option<String>,
    metadata: ClientMetadata,
}

/// A secret in a record: zeroized on drop, (de)serialized as a plain string.
struct RecordSecret(Zeroizing<String>);

impl RecordSecret {
    fn of(s: &SecretString) -> Self {
        RecordSecret(Zeroizing::new(s.expose_secret().to_owned()))
    }

    fn into_secret(self) -> SecretString {
        SecretString::new(self.0.as_str())
    }
}

impl Serialize for RecordSecret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RecordSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(|s| RecordSecret(Zeroizing::new(s)))
    }
}

fn corrupt(what: &str) -> Error {
    Error::Store(format!("corrupt registration record: {what}"))
}

/// A record's parse error by category and position only: serde's message may quote a value,
/// and values include secrets.
fn describe(e: serde_json::Error) -> Error {
    corrupt(&crate::error::json_problem(&e))
}

// ------------------------------------------------------------------ persistence

/// The store key of the registration at `issuer` in `slot` (the caller's choice: the CIMD
/// URL, the client name, ...): `registration:` + issuer + NUL + slot. NUL cannot appear in an
/// issuer URL, so no two (issuer, slot) pairs share a key.
fn record_key(issuer: &str, slot: &str) -> String {
    format!("registration:{issuer}\0{slot}")
}

/// The registration stored for `issuer` in `slot`, if the store keeps one.
///
/// # Errors
/// [`Error::Store`] when the store fails or the record is not a registration.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "called once agents register on first use")
)]
pub(crate) async fn load_registration(
    store: &Arc<dyn TokenStore>,
    issuer: &str,
    slot: &str,
) -> Result<Option<Registration>> {
    let bytes = store.load_record(&record_key(issuer, slot)).await?;
    bytes
        .map(|b| Registration::from_record(&Zeroizing::new(b)))
        .transpose()
}

/// Store `registration` for `issuer` in `slot`. False when the store does not keep records
/// (the caller then keeps the registration in memory only).
///
/// # Errors
/// [`Error::Store`].
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "called once agents register on first use")
)]
pub(crate) async fn save_registration(
    store: &Arc<dyn TokenStore>,
    issuer: &str,
    slot: &str,
    registration: &Registration,
) -> Result<bool> {
    let record = Zeroizing::new(registration.to_record()?);
    store
        .store_record(&record_key(issuer, slot), Some(&record))
        .await
}

/// Remove the registration stored for `issuer` in `slot` (after the server forgot the client:
/// `invalid_client`). False when the store does not keep records.
///
/// # Errors
/// [`Error::Store`].
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "called once agents register on first use")
)]
pub(crate) async fn forget_registration(
    store: &Arc<dyn TokenStore>,
    issuer: &str,
    slot: &str,
) -> Result<bool> {
    store.store_record(&record_key(issuer, slot), None).await
}

/// Fuzz hook: `data` as a registration response (201 and 400), a client ID metadata
/// document and a stored record; each gives a value or a typed error.
pub(crate) fn fuzz(data: &[u8]) {
    for status in [201u16, 400] {
        let Ok(resp) = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(bytes::Bytes::copy_from_slice(data))
        else {
            return;
        };
        let mut sent = crate::secret::SentSecrets::new();
        let _ = dcr::parse_response(&resp, &ClientMetadata::new("fuzz"), &mut sent)
            .map_err(|e| e.redacted(&sent));
    }
    let url = "https://agent.example/oauth/client.json";
    if let Ok(m) = validate_client_id_metadata_document(data, url) {
        // What passed validation renders again.
        let _ = m.client_id_metadata_document(url);
    }
    let _ = Registration::from_record(data);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::{FileStore, MemoryStore, StoreLock, StoreOutcome, StoredGrant, Versioned};

    fn dynamic() -> Registration {
        let mut r = Registration::pre_registered(
            "dyn-123",
            "client_secret_post",
            Some(SecretString::new("the-client-secret")),
        );
        r.kind = RegistrationKind::Dynamic;
        r.client_id_issued_at = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        r.client_secret_expires_at = Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        r.registration_access_token = Some(SecretString::new("the-registration-token"));
        r.registration_client_uri = Some("https://as.example/register/dyn-123".into());
        r.metadata = ClientMetadata::new("agent")
            .redirect_uris(["http://127.0.0.1/cb"])
            .extra("x-ext", serde_json::json!({"a": [1, 2]}));
        r
    }

    #[test]
    fn registration_choose_auth_method_table() {
        let s = |v: &[&str]| v.iter().map(|m| (*m).to_owned()).collect::<Vec<_>>();
        let all = s(&[
            "none",
            "client_secret_post",
            "client_secret_basic",
            "private_key_jwt",
        ]);
        let cases: &[(Option<Vec<String>>, bool, &str)] = &[
            (None, false, "client_secret_basic"),
            (None, true, "client_secret_basic"),
            (Some(all.clone()), true, "private_key_jwt"),
            (Some(all), false, "client_secret_basic"),
            (Some(s(&["private_key_jwt"])), true, "private_key_jwt"),
            (Some(s(&["private_key_jwt"])), false, "client_secret_basic"),
            (
                Some(s(&["client_secret_post", "private_key_jwt"])),
                false,
                "client_secret_post",
            ),
            (
                Some(s(&["none", "client_secret_post"])),
                true,
                "client_secret_post",
            ),
            (Some(s(&["none"])), true, "none"),
            (Some(s(&["none", "tls_client_auth"])), false, "none"),
            (Some(s(&["tls_client_auth"])), false, "client_secret_basic"),
            (Some(Vec::new()), false, "client_secret_basic"),
        ];
        for (supported, has_key, expected) in cases {
            assert_eq!(
                choose_auth_method(supported.as_deref(), *has_key),
                *expected,
                "{supported:?} key={has_key}"
            );
        }
    }

    #[test]
    fn registration_client_auth_by_method() {
        let with = |method: &str, secret: Option<&str>| {
            Registration::pre_registered("c", method, secret.map(SecretString::new))
        };
        for (method, secret) in [
            ("none", None),
            ("client_secret_basic", Some("s3cret")),
            ("client_secret_post", Some("s3cret")),
            ("tls_client_auth", None),
            ("self_signed_tls_client_auth", None),
        ] {
            let auth = with(method, secret).client_auth(None).expect(method);
            assert_eq!(auth.method_name(), Some(method));
        }
        for (method, secret) in [
            ("client_secret_basic", None),
            ("client_secret_post", None),
            ("private_key_jwt", None),
            ("client_secret_jwt", Some("s3cret")),
            ("urn:example:custom\u{7}", None),
        ] {
            let e = with(method, secret).client_auth(None).expect_err(method);
            assert!(matches!(e, Error::Config(_)), "{method}: {e:?}");
            assert!(!e.to_string().contains('\u{7}'));
        }
    }

    #[cfg(feature = "josekit")]
    #[test]
    fn registration_client_auth_private_key_jwt_uses_the_key() {
        use josekit::jws::ES256;
        let kp = ES256.generate_key_pair().unwrap();
        let pem = String::from_utf8(kp.to_pem_private_key()).unwrap();
        let key = AssertionKey::from_pem("ES256", &pem).unwrap();
        let r = Registration::pre_registered("c", "private_key_jwt", None);
        let auth = r.client_auth(Some(key)).unwrap();
        assert_eq!(auth.method_name(), Some("private_key_jwt"));
    }

    #[test]
    fn registration_is_expired_from_client_secret_expires_at() {
        let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let mut r = dynamic();
        assert!(!r.is_expired(now));
        assert!(r.is_expired(UNIX_EPOCH + Duration::from_secs(1_800_000_000)));
        r.client_secret_expires_at = None;
        assert!(!r.is_expired(now));
        assert!(!r.is_expired(UNIX_EPOCH + Duration::from_secs(u32::MAX.into())));
    }

    #[test]
    fn registration_debug_redacts_secrets() {
        let r = dynamic();
        let dbg = format!("{r:?}");
        assert!(dbg.contains("dyn-123"), "{dbg}");
        assert!(!dbg.contains("the-client-secret"), "{dbg}");
        assert!(!dbg.contains("the-registration-token"), "{dbg}");
    }

    #[test]
    fn registration_record_round_trip() {
        let r = dynamic();
        let bytes = r.to_record().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
        let back = Registration::from_record(&bytes).unwrap();
        assert_eq!(back.client_id, r.client_id);
        assert_eq!(back.kind, RegistrationKind::Dynamic);
        assert_eq!(
            back.client_secret.as_ref().map(SecretString::expose_secret),
            Some("the-client-secret")
        );
        assert_eq!(
            back.registration_access_token
                .as_ref()
                .map(SecretString::expose_secret),
            Some("the-registration-token")
        );
        assert_eq!(back.token_endpoint_auth_method, "client_secret_post");
        assert_eq!(back.client_id_issued_at, r.client_id_issued_at);
        assert_eq!(back.client_secret_expires_at, r.client_secret_expires_at);
        assert_eq!(back.registration_client_uri, r.registration_client_uri);
        assert_eq!(back.metadata, r.metadata);
        // A public client without times.
        let p = Registration::pre_registered("pub", "none", None);
        let back = Registration::from_record(&p.to_record().unwrap()).unwrap();
        assert_eq!(back.kind, RegistrationKind::PreRegistered);
        assert!(back.client_secret.is_none() && back.client_secret_expires_at.is_none());
    }

    #[test]
    fn registration_record_garbage_is_a_typed_error() {
        let good = String::from_utf8(dynamic().to_record().unwrap()).unwrap();
        let huge = format!(r#"{{"v":1,"pad":"{}"}}"#, "x".repeat(MAX_RECORD));
        for bad in [
            String::new(),
            "{".to_owned(),
            "[]".to_owned(),
            "null".to_owned(),
            r#"{"kind":"dynamic"}"#.to_owned(),
            good.replace(r#""v":1"#, r#""v":0"#),
            good.replace(r#""v":1"#, r#""v":"1""#),
            good.replace(r#""kind":"dynamic""#, r#""kind":"other""#),
            good.replace(r#""client_id":"dyn-123""#, r#""client_id":"""#),
            good.replace(
                r#""client_secret":"the-client-secret""#,
                r#""client_secret":7"#,
            ),
            good.replace("1800000000", "18446744073709551615"),
            good.replace("1800000000", "-1"),
            huge,
        ] {
            let e = Registration::from_record(bad.as_bytes()).expect_err(&bad[..bad.len().min(80)]);
            assert!(matches!(e, Error::Store(_)), "{e:?}");
            let text = e.to_string();
            assert!(!text.contains("the-client-secret") && !text.contains("registration-token"));
        }
        let newer = good.replace(r#""v":1"#, r#""v":2"#);
        let e = Registration::from_record(newer.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[tokio::test]
    async fn registration_persisted_per_issuer_and_slot_in_file_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(tmp.path().join("s")).unwrap());
        let issuer = "https://as.example";
        assert!(load_registration(&store, issuer, "agent")
            .await
            .unwrap()
            .is_none());
        assert!(save_registration(&store, issuer, "agent", &dynamic())
            .await
            .unwrap());
        let got = load_registration(&store, issuer, "agent")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.client_id, "dyn-123");
        assert_eq!(
            got.client_secret.as_ref().map(SecretString::expose_secret),
            Some("the-client-secret")
        );
        // Other slots and issuers are independent.
        assert!(load_registration(&store, issuer, "other")
            .await
            .unwrap()
            .is_none());
        assert!(load_registration(&store, "https://as2.example", "agent")
            .await
            .unwrap()
            .is_none());
        // A second store on the same directory sees it (another process would).
        let again: Arc<dyn TokenStore> = Arc::new(FileStore::new(tmp.path().join("s")).unwrap());
        assert!(load_registration(&again, issuer, "agent")
            .await
            .unwrap()
            .is_some());
        assert!(forget_registration(&store, issuer, "agent").await.unwrap());
        assert!(load_registration(&store, issuer, "agent")
            .await
            .unwrap()
            .is_none());
        // A garbage record is an error, not a panic nor a silent miss.
        store
            .store_record(&record_key(issuer, "bad"), Some(b"garbage"))
            .await
            .unwrap();
        let e = load_registration(&store, issuer, "bad").await.unwrap_err();
        assert!(matches!(e, Error::Store(_)), "{e:?}");
    }

    #[test]
    fn registration_record_key_separates_issuer_and_slot() {
        assert_ne!(
            record_key("https://a.example/x", "y"),
            record_key("https://a.example/", "xy")
        );
        assert_eq!(record_key("https://as", "s"), "registration:https://as\0s");
    }

    /// A store that implements only the grant methods.
    #[derive(Debug)]
    struct GrantsOnly;

    #[crate::store::async_trait]
    impl TokenStore for GrantsOnly {
        async fn load(&self, _: &str) -> Result<Option<Versioned<StoredGrant>>> {
            Ok(None)
        }
        async fn store(&self, _: &str, _: &StoredGrant, _: Option<u64>) -> Result<StoreOutcome> {
            Ok(StoreOutcome::Written { version: 1 })
        }
        async fn remove(&self, _: &str, _: Option<u64>) -> Result<StoreOutcome> {
            Ok(StoreOutcome::Written { version: 1 })
        }
        async fn lock(&self, _: &str, _: std::time::Duration) -> Result<StoreLock> {
            Ok(StoreLock::new(()))
        }
    }

    #[tokio::test]
    async fn registration_stores_without_records_keep_nothing() {
        let store: Arc<dyn TokenStore> = Arc::new(GrantsOnly);
        assert!(!save_registration(&store, "https://as", "a", &dynamic())
            .await
            .unwrap());
        assert!(load_registration(&store, "https://as", "a")
            .await
            .unwrap()
            .is_none());
        assert!(!forget_registration(&store, "https://as", "a")
            .await
            .unwrap());
        let memory: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
        assert!(save_registration(&memory, "https://as", "a", &dynamic())
            .await
            .unwrap());
        assert!(load_registration(&memory, "https://as", "a")
            .await
            .unwrap()
            .is_some());
    }

    #[test]
    fn registration_server_metadata_cimd_flag() {
        let mut md = ServerMetadata {
            issuer: "https://as.example".into(),
            ..Default::default()
        };
        assert!(!client_id_metadata_document_supported(&md));
        let parse = |v: serde_json::Value| {
            ServerMetadata::from_json(
                &serde_json::to_vec(&serde_json::json!({
                    "issuer": "https://as.example",
                    "client_id_metadata_document_supported": v,
                }))
                .unwrap(),
                "https://as.example",
            )
        };
        // A string is not a boolean: a typed error, not a silent "supported".
        assert!(parse(serde_json::json!("true")).is_err());
        md = parse(serde_json::json!(false)).unwrap();
        assert!(!client_id_metadata_document_supported(&md));
        md = parse(serde_json::json!(true)).unwrap();
        assert!(client_id_metadata_document_supported(&md));
    }

    #[test]
    fn registration_handles_are_send_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Registration>();
        check::<ClientMetadata>();
    }
}
