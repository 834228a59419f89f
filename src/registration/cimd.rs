//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): the
//! `client_id` is an HTTPS URL, and the document it serves is the client's metadata.
//!
//! The draft's rules, checked both when a client renders its document and when an
//! authorization server reads one (§3, §4.1):
//!
//! - the URL has the `https` scheme and a path, and no fragment, no dot segments (`.`, `..`,
//!   also percent-encoded) and no user information;
//! - the document's `client_id` equals the URL, compared as strings;
//! - there is no shared secret: no `client_secret` or `client_secret_expires_at` member, and
//!   no `token_endpoint_auth_method` based on one (`client_secret_basic`,
//!   `client_secret_post`, `client_secret_jwt`).

use serde_json::Value;
use url::Url;

use super::{ClientMetadata, Registration, RegistrationKind, SHARED_SECRET_METHODS};
use crate::error::{sanitize, Error, Result};

/// Documents larger than this are refused.
const MAX_DOCUMENT: usize = 64 * 1024;

/// Members a client ID metadata document must not have (draft §4.1).
const FORBIDDEN_MEMBERS: &[&str] = &["client_secret", "client_secret_expires_at"];

/// Check `url` as a client identifier URL (draft §3).
///
/// # Errors
/// [`Error::InsecureUrl`] saying which rule it breaks.
fn check_client_id_url(url: &str) -> Result<()> {
    let parsed = Url::parse(url);
    let refuse = |reason| {
        Err(Error::InsecureUrl {
            url: parsed
                .as_ref()
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| "(not a URL)".to_owned()),
            reason,
        })
    };
    let Ok(parsed) = &parsed else {
        return refuse("a client ID metadata document URL must be an absolute URL");
    };
    // The URL is compared as a string: characters a parser would drop or rewrite change it.
    if url.bytes().any(|b| b <= 0x20 || b == b'\\' || b == 0x7f) {
        return refuse("a client ID metadata document URL has spaces, controls or backslashes");
    }
    let Some(after_scheme) = url
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .and_then(|_| url.get(8..))
    else {
        return refuse("a client ID metadata document URL must use https");
    };
    if parsed.scheme() != "https" {
        return refuse("a client ID metadata document URL must use https");
    }
    if url.contains('#') {
        return refuse("a client ID metadata document URL must not have a fragment");
    }
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_end);
    if authority.contains('@') || !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("a client ID metadata document URL must not have user information");
    }
    let path = if rest.starts_with('/') {
        rest.split(['?', '#']).next().unwrap_or_default()
    } else {
        ""
    };
    if path.is_empty() || path == "/" {
        return refuse("a client ID metadata document URL must have a path");
    }
    let dot_segment = path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    if dot_segment {
        return refuse("a client ID metadata document URL must not have dot segments");
    }
    Ok(())
}

/// Is `method` one a client ID metadata document may use?
fn check_auth_method(method: Option<&str>) -> std::result::Result<(), String> {
    match method {
        Some(m) if SHARED_SECRET_METHODS.contains(&m) => Err(format!(
            "a client ID metadata document must not use the shared-secret method `{m}`"
        )),
        _ => Ok(()),
    }
}

impl ClientMetadata {
    /// The client ID metadata document to serve at `client_id_url`: this metadata with
    /// `client_id` set to the URL (exactly as given), and `token_endpoint_auth_method` set to
    /// `none` when unset (RFC 7591's default, `client_secret_basic`, is not allowed here).
    ///
    /// ```
    /// use agent_oauth::registration::{validate_client_id_metadata_document, ClientMetadata};
    ///
    /// let url = "https://agent.example/oauth/client.json";
    /// let document = ClientMetadata::new("agent")
    ///     .redirect_uris(["http://127.0.0.1/callback"])
    ///     .client_id_metadata_document(url)?;
    /// assert_eq!(document["client_id"], url);
    /// assert_eq!(document["token_endpoint_auth_method"], "none");
    /// // What the authorization server reads back.
    /// let seen = validate_client_id_metadata_document(document.to_string().as_bytes(), url)?;
    /// assert_eq!(seen.client_name.as_deref(), Some("agent"));
    /// # Ok::<(), agent_oauth::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InsecureUrl`] when `client_id_url` breaks the draft's URL rules (not https,
    /// no path, a fragment, dot segments, user information); [`Error::Config`] for a
    /// shared-secret `token_endpoint_auth_method`, a `client_secret` or
    /// `client_secret_expires_at` member, no `redirect_uris`, or private keys in `jwks`.
    pub fn client_id_metadata_document(&self, client_id_url: &str) -> Result<Value> {
        check_client_id_url(client_id_url)?;
        check_auth_method(self.token_endpoint_auth_method.as_deref()).map_err(Error::Config)?;
        if FORBIDDEN_MEMBERS
            .iter()
            .any(|m| self.extra.contains_key(*m))
        {
            return Err(Error::config(
                "a client ID metadata document must not have `client_secret` or \
                 `client_secret_expires_at`",
            ));
        }
        if self.redirect_uris.is_empty() {
            return Err(Error::config(
                "a client ID metadata document needs `redirect_uris`",
            ));
        }
        self.check_publishable()?;
        let mut document = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => return Err(Error::config("client metadata cannot be encoded")),
        };
        document.insert("client_id".into(), Value::String(client_id_url.to_owned()));
        document
            .entry("token_endpoint_auth_method")
            .or_insert_with(|| Value::String("none".to_owned()));
        Ok(Value::Object(document))
    }
}

/// Check a client ID metadata document as an authorization server does after fetching
/// `client_id_url` (draft §4): the URL rules, a JSON object (at most 64 KiB) whose `client_id`
/// equals the URL exactly, no shared secret, and `redirect_uris` present. Returns the metadata
/// (without `client_id`).
///
/// # Errors
/// [`Error::InsecureUrl`] when the URL breaks the rules; [`Error::InvalidResponse`] for a
/// document that is too large, not a JSON object, names another `client_id`, carries a shared
/// secret, has no `redirect_uris`, or has members of the wrong type.
pub fn validate_client_id_metadata_document(
    body: &[u8],
    client_id_url: &str,
) -> Result<ClientMetadata> {
    check_client_id_url(client_id_url)?;
    let invalid = |what: &str| Error::invalid(format!("client ID metadata document: {what}"));
    if body.len() > MAX_DOCUMENT {
        return Err(invalid("larger than 64 KiB"));
    }
    let mut map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(invalid("not a JSON object")),
        Err(e) => return Err(invalid(&sanitize(&e.to_string(), 120))),
    };
    match map.remove("client_id") {
        Some(Value::String(id)) if id == client_id_url => {}
        Some(Value::String(_)) => {
            return Err(invalid("`client_id` does not equal the document's URL"))
        }
        Some(_) => return Err(invalid("`client_id` is not a string")),
        None => return Err(invalid("no `client_id`")),
    }
    if let Some(m) = FORBIDDEN_MEMBERS.iter().find(|m| map.contains_key(**m)) {
        return Err(invalid(&format!("it must not have `{m}`")));
    }
    let method = match map.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.as_str()),
        Some(_) => return Err(invalid("`token_endpoint_auth_method` is not a string")),
    };
    check_auth_method(method).map_err(|e| invalid(&sanitize(&e, 200)))?;
    let metadata: ClientMetadata = serde_json::from_value(Value::Object(map))
        .map_err(|e| invalid(&sanitize(&e.to_string(), 200)))?;
    if metadata.redirect_uris.is_empty() {
        return Err(invalid("no `redirect_uris`"));
    }
    Ok(metadata)
}

impl Registration {
    /// The registration a client ID metadata document amounts to: `client_id` is
    /// `client_id_url`, the method is the metadata's (`none` when unset), there is no secret.
    ///
    /// # Errors
    /// As [`ClientMetadata::client_id_metadata_document`].
    pub fn metadata_document(client_id_url: &str, metadata: &ClientMetadata) -> Result<Self> {
        metadata.client_id_metadata_document(client_id_url)?;
        Ok(Registration {
            client_id: client_id_url.to_owned(),
            client_secret: None,
            token_endpoint_auth_method: metadata
                .token_endpoint_auth_method
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
            client_id_issued_at: None,
            client_secret_expires_at: None,
            registration_access_token: None,
            registration_client_uri: None,
            metadata: metadata.clone(),
            kind: RegistrationKind::MetadataDocument,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    const URL: &str = "https://agent.example/oauth/client.json";

    fn metadata() -> ClientMetadata {
        ClientMetadata::new("agent")
            .redirect_uris(["http://127.0.0.1/callback"])
            .client_uri("https://agent.example")
            .scope("read")
    }

    #[test]
    fn registration_cimd_rendered_document_validates() {
        let doc = metadata().client_id_metadata_document(URL).unwrap();
        assert_eq!(doc["client_id"], URL);
        assert_eq!(doc["token_endpoint_auth_method"], "none");
        assert_eq!(doc["application_type"], "native");
        assert_eq!(doc["redirect_uris"], json!(["http://127.0.0.1/callback"]));
        let seen = validate_client_id_metadata_document(doc.to_string().as_bytes(), URL).unwrap();
        let mut expected = metadata();
        expected.token_endpoint_auth_method = Some("none".into());
        assert_eq!(seen, expected);
        // private_key_jwt is not a shared secret.
        let pkjwt = metadata()
            .token_endpoint_auth_method("private_key_jwt")
            .jwks(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}));
        let doc = pkjwt.client_id_metadata_document(URL).unwrap();
        assert_eq!(doc["token_endpoint_auth_method"], "private_key_jwt");
        validate_client_id_metadata_document(doc.to_string().as_bytes(), URL).unwrap();
        // URLs with a query and a port are fine, and compared exactly.
        let with_query = "https://agent.example:8443/c?v=2";
        let doc = metadata().client_id_metadata_document(with_query).unwrap();
        assert_eq!(doc["client_id"], with_query);
    }

    #[test]
    fn registration_cimd_url_rules() {
        for (url, why) in [
            ("http://agent.example/client.json", "https"),
            ("ftp://agent.example/client.json", "https"),
            ("agent.example/client.json", "absolute"),
            ("https://agent.example", "path"),
            ("https://agent.example/", "path"),
            ("https://agent.example?x=1", "path"),
            ("https://agent.example/client.json#frag", "fragment"),
            ("https://agent.example/a/./client.json", "dot segments"),
            ("https://agent.example/a/../client.json", "dot segments"),
            ("https://agent.example/a/%2e%2E/client.json", "dot segments"),
            ("https://agent.example/a/%2E/client.json", "dot segments"),
            ("https://agent.example/a/..", "dot segments"),
            ("https://user@agent.example/client.json", "user information"),
            (
                "https://user:pw@agent.example/client.json",
                "user information",
            ),
            ("https://@agent.example/client.json", "user information"),
            ("https://agent.example/a b", "spaces"),
            ("https://agent.example\\client.json", "backslashes"),
        ] {
            for result in [
                metadata().client_id_metadata_document(url).map(|_| ()),
                validate_client_id_metadata_document(b"{}", url).map(|_| ()),
                Registration::metadata_document(url, &metadata()).map(|_| ()),
            ] {
                match result {
                    Err(Error::InsecureUrl { reason, .. }) => {
                        assert!(reason.contains(why), "{url}: {reason}")
                    }
                    other => panic!("{url}: {other:?}"),
                }
            }
        }
        // `...` and `.x` are ordinary segments.
        assert!(check_client_id_url("https://agent.example/.../.well-known/c").is_ok());
    }

    #[test]
    fn registration_cimd_render_refuses_shared_secrets() {
        for method in [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
        ] {
            let m = metadata().token_endpoint_auth_method(method);
            let e = m.client_id_metadata_document(URL).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{method}: {e:?}");
            assert!(Registration::metadata_document(URL, &m).is_err());
        }
        for member in ["client_secret", "client_secret_expires_at"] {
            let m = metadata().extra(member, json!("x"));
            assert!(matches!(
                m.client_id_metadata_document(URL),
                Err(Error::Config(_))
            ));
        }
        let no_redirect = ClientMetadata::new("agent");
        assert!(matches!(
            no_redirect.client_id_metadata_document(URL),
            Err(Error::Config(_))
        ));
        let private = metadata().jwks(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}));
        assert!(matches!(
            private.client_id_metadata_document(URL),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn registration_cimd_validate_rules() {
        let good = metadata().client_id_metadata_document(URL).unwrap();
        let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut doc = good.as_object().unwrap().clone();
            f(&mut doc);
            Value::Object(doc).to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (with(&|d| drop(d.remove("client_id"))), "no `client_id`"),
            (
                with(&|d| drop(d.insert("client_id".into(), json!(format!("{URL}/"))))),
                "does not equal",
            ),
            (
                with(&|d| {
                    d.insert(
                        "client_id".into(),
                        json!("https://AGENT.example/oauth/client.json"),
                    );
                }),
                "does not equal",
            ),
            (
                with(&|d| drop(d.insert("client_id".into(), json!(5)))),
                "not a string",
            ),
            (
                with(&|d| drop(d.insert("client_secret".into(), json!("s")))),
                "client_secret",
            ),
            (
                with(&|d| drop(d.insert("client_secret_expires_at".into(), json!(0)))),
                "client_secret_expires_at",
            ),
            (
                with(&|d| {
                    d.insert(
                        "token_endpoint_auth_method".into(),
                        json!("client_secret_basic"),
                    );
                }),
                "shared-secret",
            ),
            (
                with(&|d| {
                    d.insert(
                        "token_endpoint_auth_method".into(),
                        json!("client_secret_post"),
                    );
                }),
                "shared-secret",
            ),
            (
                with(&|d| {
                    d.insert(
                        "token_endpoint_auth_method".into(),
                        json!("client_secret_jwt"),
                    );
                }),
                "shared-secret",
            ),
            (
                with(&|d| drop(d.insert("token_endpoint_auth_method".into(), json!(1)))),
                "not a string",
            ),
            (with(&|d| drop(d.remove("redirect_uris"))), "redirect_uris"),
            (
                with(&|d| drop(d.insert("redirect_uris".into(), json!([])))),
                "redirect_uris",
            ),
            (
                with(&|d| drop(d.insert("redirect_uris".into(), json!("x")))),
                "invalid type",
            ),
            ("[1]".to_owned(), "not a JSON object"),
            ("{".to_owned(), "EOF"),
            (
                format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_DOCUMENT)),
                "64 KiB",
            ),
        ];
        for (body, why) in cases {
            match validate_client_id_metadata_document(body.as_bytes(), URL) {
                Err(Error::InvalidResponse(m)) => assert!(m.contains(why), "{why}: {m}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        // Without a method the document is accepted (the server applies its policy).
        let no_method = with(&|d| drop(d.remove("token_endpoint_auth_method")));
        let m = validate_client_id_metadata_document(no_method.as_bytes(), URL).unwrap();
        assert_eq!(m.token_endpoint_auth_method, None);
    }

    #[test]
    fn registration_cimd_registration_is_public() {
        let r = Registration::metadata_document(URL, &metadata()).unwrap();
        assert_eq!(r.client_id, URL);
        assert_eq!(r.kind, RegistrationKind::MetadataDocument);
        assert_eq!(r.token_endpoint_auth_method, "none");
        assert!(r.client_secret.is_none());
        assert_eq!(r.client_auth(None).unwrap().method_name(), Some("none"));
    }
}
