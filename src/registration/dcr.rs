//! Dynamic Client Registration (RFC 7591): the client metadata (§2), the registration request
//! (§3.1) and its response (§3.2.1, §3.2.2).
//!
//! [`register`] is the only function that sends; [`prepare_request`] and [`parse_response`] are
//! pure, so the protocol is tested without a network.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use url::Url;
use zeroize::Zeroizing;

use super::{Registration, RegistrationKind, SHARED_SECRET_METHODS};
use crate::error::{sanitize, Error, ErrorContext, Result};
use crate::secret::{SecretString, SentSecrets};
use crate::transport::{
    expect_json, is_loopback, oauth_error, HttpRequest, HttpResponse, HttpTransport, RetryPolicy,
};

/// What errors of [`register`] name as their operation.
const OPERATION: &str = "client registration";

/// Response members whose values are secrets: never quoted by an error, wherever they appear.
const SECRET_MEMBERS: &[&str] = &["client_secret", "registration_access_token"];

/// JWK members that hold private or symmetric key material (RFC 7517, RFC 7518 §6).
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Client metadata (RFC 7591 §2, plus `application_type` from OpenID Connect Dynamic Client
/// Registration 1.0 §2): what a client says about itself when it registers dynamically, or in the
/// document its `client_id` URL serves (see
/// [`client_id_metadata_document`](Self::client_id_metadata_document)).
///
/// [`new`](Self::new) starts with what suits an agent: the `authorization_code` and
/// `refresh_token` grants and the `code` response type. Setters chain and never fail; the
/// values are checked where they are used. Members this crate does not know are kept in
/// [`extra`](Self::extra), so a document read and written again loses nothing. Empty lists and
/// unset values are not serialized (RFC 7591 then applies its defaults).
///
/// ```
/// use agent_oauth::registration::ClientMetadata;
///
/// let metadata = ClientMetadata::new("billing agent")
///     .redirect_uris(["http://127.0.0.1/callback"])
///     .token_endpoint_auth_method("none")
///     .scope("invoices:read");
/// // Loopback redirect URIs make it a native application (RFC 8252).
/// assert_eq!(metadata.application_type.as_deref(), Some("native"));
/// assert_eq!(metadata.grant_types, ["authorization_code", "refresh_token"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientMetadata {
    /// `redirect_uris`: where the authorization server may send the user back.
    #[serde(
        default,
        deserialize_with = "strings_or_null",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub redirect_uris: Vec<String>,
    /// `token_endpoint_auth_method`: `none`, `client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`, ... (RFC 7591 §2.1; the server's default when unset is
    /// `client_secret_basic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// `grant_types` (RFC 7591 §2.1; the server's default when empty is `authorization_code`).
    #[serde(
        default,
        deserialize_with = "strings_or_null",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub grant_types: Vec<String>,
    /// `response_types` (RFC 7591 §2.1; the server's default when empty is `code`).
    #[serde(
        default,
        deserialize_with = "strings_or_null",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub response_types: Vec<String>,
    /// `client_name`: shown to the user at authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// `client_uri`: the client's home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// `logo_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// `scope`: space-separated scope values the client may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `contacts`: people responsible for the client (usually e-mail addresses).
    #[serde(
        default,
        deserialize_with = "strings_or_null",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub contacts: Vec<String>,
    /// `tos_uri`: terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// `policy_uri`: privacy policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    /// `jwks_uri`: where the client's public keys are (for `private_key_jwt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `jwks`: the client's public keys, by value (a JWK Set). Never private keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// `software_id`: identifies the client software across its instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// `software_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// `application_type` (OpenID Connect): `native` or `web`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// Other members, as given or sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A list of strings where `null` means absent (servers echo unset members as `null`).
fn strings_or_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Is `uri` one a native application uses (RFC 8252): a loopback `http` URI (§7.3) or a
/// private-use scheme, which is a reverse domain name (§7.1)?
fn is_native_redirect(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    match url.scheme() {
        "http" => is_loopback(&url),
        "https" => false,
        scheme => scheme.contains('.'),
    }
}

impl ClientMetadata {
    /// Metadata for a client called `client_name`, with the `authorization_code` and
    /// `refresh_token` grants and the `code` response type, and nothing else.
    pub fn new(client_name: impl Into<String>) -> Self {
        ClientMetadata {
            grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
            response_types: vec!["code".to_owned()],
            client_name: Some(client_name.into()),
            ..Self::empty()
        }
    }

    /// Metadata with no member set (RFC 7591 defaults everything).
    pub(super) fn empty() -> Self {
        ClientMetadata {
            redirect_uris: Vec::new(),
            token_endpoint_auth_method: None,
            grant_types: Vec::new(),
            response_types: Vec::new(),
            client_name: None,
            client_uri: None,
            logo_uri: None,
            scope: None,
            contacts: Vec::new(),
            tos_uri: None,
            policy_uri: None,
            jwks_uri: None,
            jwks: None,
            software_id: None,
            software_version: None,
            application_type: None,
            extra: Map::new(),
        }
    }

    /// Replace the redirect URIs. When there is at least one and every one is a loopback
    /// `http` URI or a private-use scheme (RFC 8252 §7.1, §7.3), and no application type was
    /// set, `application_type` becomes `native`.
    pub fn redirect_uris<I, S>(mut self, uris: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redirect_uris = uris.into_iter().map(Into::into).collect();
        if self.application_type.is_none()
            && !self.redirect_uris.is_empty()
            && self.redirect_uris.iter().all(|u| is_native_redirect(u))
        {
            self.application_type = Some("native".to_owned());
        }
        self
    }

    /// Set `token_endpoint_auth_method` (see
    /// [`choose_auth_method`](super::choose_auth_method)).
    pub fn token_endpoint_auth_method(mut self, method: impl Into<String>) -> Self {
        self.token_endpoint_auth_method = Some(method.into());
        self
    }

    /// Replace the grant types.
    pub fn grant_types<I, S>(mut self, grant_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.grant_types = grant_types.into_iter().map(Into::into).collect();
        self
    }

    /// Replace the response types (`[]` for a client that never uses the authorization
    /// endpoint, such as a `client_credentials` client).
    pub fn response_types<I, S>(mut self, response_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.response_types = response_types.into_iter().map(Into::into).collect();
        self
    }

    /// Set `client_uri`.
    pub fn client_uri(mut self, uri: impl Into<String>) -> Self {
        self.client_uri = Some(uri.into());
        self
    }

    /// Set `logo_uri`.
    pub fn logo_uri(mut self, uri: impl Into<String>) -> Self {
        self.logo_uri = Some(uri.into());
        self
    }

    /// Set `scope` (space-separated).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Replace the contacts.
    pub fn contacts<I, S>(mut self, contacts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.contacts = contacts.into_iter().map(Into::into).collect();
        self
    }

    /// Set `tos_uri`.
    pub fn tos_uri(mut self, uri: impl Into<String>) -> Self {
        self.tos_uri = Some(uri.into());
        self
    }

    /// Set `policy_uri`.
    pub fn policy_uri(mut self, uri: impl Into<String>) -> Self {
        self.policy_uri = Some(uri.into());
        self
    }

    /// Set `jwks_uri`.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// Set `jwks`: a JWK Set of public keys (`{"keys":[...]}`). A set holding private key
    /// material is refused when the metadata is sent or rendered.
    pub fn jwks(mut self, jwks: Value) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// Set `software_id`.
    pub fn software_id(mut self, id: impl Into<String>) -> Self {
        self.software_id = Some(id.into());
        self
    }

    /// Set `software_version`.
    pub fn software_version(mut self, version: impl Into<String>) -> Self {
        self.software_version = Some(version.into());
        self
    }

    /// Set `application_type` (`native` or `web`).
    pub fn application_type(mut self, application_type: impl Into<String>) -> Self {
        self.application_type = Some(application_type.into());
        self
    }

    /// Set any other member.
    pub fn extra(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// Refuse metadata that would publish a secret: private or symmetric keys in `jwks`, and
    /// `client_secret` members.
    pub(super) fn check_publishable(&self) -> Result<()> {
        let keys = self
            .jwks
            .as_ref()
            .and_then(|j| j.get("keys"))
            .and_then(Value::as_array);
        let private = keys.is_some_and(|keys| {
            keys.iter().any(|k| {
                PRIVATE_JWK_MEMBERS
                    .iter()
                    .any(|m| k.get(m).is_some_and(|v| !v.is_null()))
            })
        });
        if private {
            return Err(Error::config(
                "client metadata `jwks` holds private key material; publish public keys only",
            ));
        }
        if self.extra.contains_key("client_secret") {
            return Err(Error::config(
                "client metadata must not carry a `client_secret` member",
            ));
        }
        Ok(())
    }
}

/// Register a client with `metadata` at `registration_endpoint` (RFC 7591 §3): a JSON POST,
/// with `initial_access_token` as a Bearer token when the server requires one (§3, RFC 6750).
///
/// A `201 Created` (or `200`) answer is read as the client information response (§3.2.1):
/// `client_id` is required; the secret, its expiry, the issue time, the RFC 7592
/// management credentials and the metadata the server kept (it may change what was asked) are
/// taken as sent. The registration's `token_endpoint_auth_method` is the one the server
/// echoed, else the one requested, else `client_secret_basic` when a secret was issued and
/// `none` when not.
///
/// Registration creates a client each time it succeeds, so a request that may have reached
/// the server is never sent again ([`RetryPolicy::ConnectOnly`], as for an authorization
/// code).
///
/// # Errors
/// [`Error::InsecureUrl`] when the endpoint is not HTTPS (loopback excepted);
/// [`Error::Config`] when it is not a URL or the metadata would publish a private key;
/// [`Error::OAuth`] for an RFC 7591 §3.2.2 error (`invalid_redirect_uri`,
/// `invalid_client_metadata`, `invalid_software_statement`, `unapproved_software_statement`,
/// as [`OAuthErrorCode::Extension`](crate::OAuthErrorCode::Extension)) or an RFC 6750 error
/// about the initial access token; [`Error::Http`] for any other status;
/// [`Error::InvalidResponse`] for a malformed answer; transport errors, [`Error::Timeout`] and
/// [`Error::BodyTooLarge`] as the transport reports them. Every error names the endpoint.
///
/// # Security
/// Neither the initial access token nor any `client_secret` or `registration_access_token`
/// the server sends appears in an error, whatever the server echoes back.
pub async fn register(
    transport: &HttpTransport,
    registration_endpoint: &str,
    metadata: &ClientMetadata,
    initial_access_token: Option<&SecretString>,
) -> Result<Registration> {
    let url = Url::parse(registration_endpoint)
        .map_err(|_| Error::config("the registration endpoint is not an absolute URL"))?;
    transport.check(&url)?;
    let context = ErrorContext::new(OPERATION, &url);
    let mut sent = SentSecrets::new();
    if let Some(token) = initial_access_token {
        sent.add(token.expose_secret());
    }
    let result = async {
        let resp = transport
            .execute(RetryPolicy::ConnectOnly, || {
                prepare_request(&url, metadata, initial_access_token)
            })
            .await?;
        parse_response(&resp, metadata, &mut sent)
    }
    .await;
    if let Ok(r) = &result {
        tracing::debug!(target: "agent_oauth", client_id = %sanitize(&r.client_id, 128),
            method = %r.token_endpoint_auth_method, "client registered");
    }
    result.map_err(|e| e.redacted(&sent).with_context(&context))
}

/// The registration request (RFC 7591 §3.1): `metadata` as JSON, POSTed to `url`.
///
/// # Errors
/// [`Error::Config`] when the metadata would publish a secret, cannot be encoded, or the token
/// is not a valid header value.
pub(crate) fn prepare_request(
    url: &Url,
    metadata: &ClientMetadata,
    initial_access_token: Option<&SecretString>,
) -> Result<HttpRequest> {
    metadata.check_publishable()?;
    let body = serde_json::to_vec(metadata)
        .map_err(|e| Error::config(format!("client metadata cannot be encoded ({e})")))?;
    let mut builder = http::Request::post(url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json");
    if let Some(token) = initial_access_token {
        let value = Zeroizing::new(format!("Bearer {}", token.expose_secret()));
        let mut value = http::HeaderValue::from_str(&value)
            .map_err(|_| Error::config("the initial access token is not a valid header value"))?;
        value.set_sensitive(true);
        builder = builder.header(http::header::AUTHORIZATION, value);
    }
    builder
        .body(body)
        .map_err(|_| Error::config("cannot build the registration request"))
}

/// Read the answer to a registration request for `requested` (RFC 7591 §3.2). Every
/// `client_secret` and `registration_access_token` the body holds, wherever it is, is added to
/// `sent` first, so that the caller can redact it from any error.
///
/// # Errors
/// As [`register`], without the transport errors.
pub(crate) fn parse_response(
    resp: &HttpResponse,
    requested: &ClientMetadata,
    sent: &mut SentSecrets,
) -> Result<Registration> {
    let parsed = serde_json::from_slice::<Value>(resp.body()).ok();
    if let Some(value) = &parsed {
        collect_secrets(value, sent, 0);
    }
    let status = resp.status().as_u16();
    if status != 200 && status != 201 {
        return Err(oauth_error(resp));
    }
    let body = expect_json(resp, "registration response")?;
    let mut map = match parsed {
        Some(Value::Object(map)) => map,
        Some(_) => return Err(Error::invalid("registration response is not a JSON object")),
        None => {
            let reason = serde_json::from_slice::<Value>(body)
                .err()
                .map(|e| sanitize(&e.to_string(), 120))
                .unwrap_or_default();
            return Err(Error::invalid(format!("registration response: {reason}")));
        }
    };
    let client_id = take_string(&mut map, "client_id")?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::invalid("registration response lacks a non-empty `client_id`"))?;
    let client_secret = take_string(&mut map, "client_secret")?
        .filter(|s| !s.is_empty())
        .map(SecretString::new);
    let client_id_issued_at = take_time(&mut map, "client_id_issued_at")?;
    // RFC 7591 §3.2.1: 0 means the secret does not expire.
    let client_secret_expires_at =
        take_time(&mut map, "client_secret_expires_at")?.filter(|t| *t != UNIX_EPOCH);
    let registration_access_token = take_string(&mut map, "registration_access_token")?
        .filter(|s| !s.is_empty())
        .map(SecretString::new);
    let registration_client_uri = take_string(&mut map, "registration_client_uri")?;
    if registration_client_uri
        .as_deref()
        .is_some_and(|u| Url::parse(u).is_err())
    {
        return Err(Error::invalid(
            "registration response member `registration_client_uri` is not an absolute URL",
        ));
    }
    let metadata: ClientMetadata = serde_json::from_value(Value::Object(map)).map_err(|e| {
        Error::invalid(format!(
            "registration response metadata: {}",
            sanitize(&e.to_string(), 200)
        ))
    })?;
    let method = metadata
        .token_endpoint_auth_method
        .clone()
        .or_else(|| requested.token_endpoint_auth_method.clone())
        .unwrap_or_else(|| {
            if client_secret.is_some() {
                "client_secret_basic".to_owned()
            } else {
                "none".to_owned()
            }
        });
    if client_secret.is_none() && SHARED_SECRET_METHODS.contains(&method.as_str()) {
        return Err(Error::invalid(format!(
            "the server registered `{}` but issued no `client_secret`",
            sanitize(&method, 64)
        )));
    }
    Ok(Registration {
        client_id,
        client_secret,
        token_endpoint_auth_method: method,
        client_id_issued_at,
        client_secret_expires_at,
        registration_access_token,
        registration_client_uri,
        metadata,
        kind: RegistrationKind::Dynamic,
    })
}

/// Add the value of every [`SECRET_MEMBERS`] member of `value`, at any depth, to `sent`.
fn collect_secrets(value: &Value, sent: &mut SentSecrets, depth: usize) {
    if depth > 16 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (name, v) in map {
                match v {
                    Value::String(s) if SECRET_MEMBERS.contains(&name.as_str()) => sent.add(s),
                    other => collect_secrets(other, sent, depth + 1),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_secrets(v, sent, depth + 1);
            }
        }
        _ => {}
    }
}

/// Remove a string member (`null` counts as absent).
fn take_string(map: &mut Map<String, Value>, name: &str) -> Result<Option<String>> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid(format!(
            "registration response member `{name}` is not a string"
        ))),
    }
}

/// Remove a time member (seconds since the epoch, RFC 7591 §3.2.1).
fn take_time(map: &mut Map<String, Value>, name: &str) -> Result<Option<SystemTime>> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .map(Some)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "registration response member `{name}` is not a time in seconds"
                ))
            }),
        Some(_) => Err(Error::invalid(format!(
            "registration response member `{name}` is not a number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::error::OAuthErrorCode;
    use bytes::Bytes;
    use serde_json::json;

    fn resp(status: u16, body: &str) -> HttpResponse {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    }

    fn parse(status: u16, body: &str) -> (Result<Registration>, SentSecrets) {
        let mut sent = SentSecrets::new();
        let r = parse_response(&resp(status, body), &ClientMetadata::new("a"), &mut sent);
        (r, sent)
    }

    #[test]
    fn registration_metadata_defaults_and_native_detection() {
        let m = ClientMetadata::new("agent");
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.application_type, None);
        for (uris, native) in [
            (vec!["http://127.0.0.1:8080/cb"], true),
            (vec!["http://localhost/cb", "http://[::1]/cb"], true),
            (vec!["com.example.agent:/cb"], true),
            (
                vec!["http://127.0.0.1/cb", "https://agent.example/cb"],
                false,
            ),
            (vec!["https://agent.example/cb"], false),
            (vec!["http://agent.example/cb"], false),
            (vec!["not a url"], false),
        ] {
            let m = ClientMetadata::new("agent").redirect_uris(uris.clone());
            assert_eq!(
                m.application_type.as_deref(),
                native.then_some("native"),
                "{uris:?}"
            );
        }
        let web = ClientMetadata::new("agent")
            .application_type("web")
            .redirect_uris(["http://127.0.0.1/cb"]);
        assert_eq!(web.application_type.as_deref(), Some("web"));
    }

    #[test]
    fn registration_metadata_serde_round_trip_keeps_unknown_members() {
        // RFC 7591 §3.1 example request, with an internationalized name and an extension.
        let body = json!({
            "redirect_uris": ["https://client.example.org/callback",
                              "https://client.example.org/callback2"],
            "client_name": "My Example Client",
            "client_name#ja-Jpan-JP": "クライアント名",
            "token_endpoint_auth_method": "client_secret_basic",
            "logo_uri": "https://client.example.org/logo.png",
            "jwks_uri": "https://client.example.org/my_public_keys.jwks",
            "example_extension_parameter": "example_value",
            "contacts": null
        });
        let m: ClientMetadata = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(m.redirect_uris.len(), 2);
        assert!(m.contacts.is_empty());
        assert_eq!(m.extra["client_name#ja-Jpan-JP"], "クライアント名");
        assert_eq!(m.extra["example_extension_parameter"], "example_value");
        let back = serde_json::to_value(&m).unwrap();
        let mut expected = body;
        expected.as_object_mut().unwrap().remove("contacts");
        assert_eq!(back, expected);
        let m2: ClientMetadata = serde_json::from_value(back).unwrap();
        assert_eq!(m, m2);
        for bad in [
            json!({"redirect_uris": "https://x"}),
            json!({"client_name": 5}),
            json!({"grant_types": [1]}),
        ] {
            assert!(serde_json::from_value::<ClientMetadata>(bad).is_err());
        }
    }

    #[test]
    fn registration_request_is_json_with_bearer_token() {
        let url = Url::parse("https://as.example/register").unwrap();
        let m = ClientMetadata::new("agent").redirect_uris(["http://127.0.0.1/cb"]);
        let token = SecretString::new("initial-token");
        let req = prepare_request(&url, &m, Some(&token)).unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri(), "https://as.example/register");
        assert_eq!(req.headers()["content-type"], "application/json");
        let auth = &req.headers()["authorization"];
        assert!(auth.is_sensitive());
        assert_eq!(auth, "Bearer initial-token");
        let sent: Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(sent["client_name"], "agent");
        assert_eq!(sent["application_type"], "native");
        assert_eq!(
            sent["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
        assert!(sent.get("contacts").is_none());
        let plain = prepare_request(&url, &m, None).unwrap();
        assert!(plain.headers().get("authorization").is_none());
        let private = m
            .clone()
            .jwks(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "d": "d"}]}));
        assert!(matches!(
            prepare_request(&url, &private, None),
            Err(Error::Config(_))
        ));
        let public = m.jwks(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}));
        assert!(prepare_request(&url, &public, None).is_ok());
    }

    #[test]
    fn registration_response_rfc7591_example() {
        // RFC 7591 §3.2.1 example response.
        let (r, sent) = parse(
            201,
            r#"{"client_id":"s6BhdRkqt3","client_secret":"cf136dc3c1fc93f31185e5885805d",
                "client_id_issued_at":2893256800,"client_secret_expires_at":2893276800,
                "redirect_uris":["https://client.example.org/callback",
                                 "https://client.example.org/callback2"],
                "grant_types":["authorization_code","refresh_token"],
                "client_name":"My Example Client",
                "client_name#ja-Jpan-JP":"クライアント名",
                "token_endpoint_auth_method":"client_secret_basic",
                "logo_uri":"https://client.example.org/logo.png",
                "jwks_uri":"https://client.example.org/my_public_keys.jwks",
                "example_extension_parameter":"example_value"}"#,
        );
        let r = r.unwrap();
        assert_eq!(r.client_id, "s6BhdRkqt3");
        assert_eq!(
            r.client_secret.as_ref().map(SecretString::expose_secret),
            Some("cf136dc3c1fc93f31185e5885805d")
        );
        assert!(sent.contains_secret("cf136dc3c1fc93f31185e5885805d"));
        assert_eq!(
            r.client_id_issued_at,
            Some(UNIX_EPOCH + Duration::from_secs(2_893_256_800))
        );
        assert_eq!(
            r.client_secret_expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(2_893_276_800))
        );
        assert_eq!(r.token_endpoint_auth_method, "client_secret_basic");
        assert_eq!(r.kind, RegistrationKind::Dynamic);
        assert_eq!(r.metadata.client_name.as_deref(), Some("My Example Client"));
        assert_eq!(
            r.metadata.extra["example_extension_parameter"],
            "example_value"
        );
        assert!(!r.metadata.extra.contains_key("client_secret"));
        assert!(!r.metadata.extra.contains_key("client_id"));
    }

    #[test]
    fn registration_response_defaults_and_200() {
        let (r, _) = parse(200, r#"{"client_id":"pub","client_secret_expires_at":0}"#);
        let r = r.unwrap();
        assert_eq!(r.token_endpoint_auth_method, "none");
        assert!(r.client_secret.is_none() && r.client_secret_expires_at.is_none());
        let (r, _) = parse(
            201,
            r#"{"client_id":"c","client_secret":"s3cret-value","registration_access_token":"rat-value",
                "registration_client_uri":"https://as.example/register/c"}"#,
        );
        let r = r.unwrap();
        assert_eq!(r.token_endpoint_auth_method, "client_secret_basic");
        assert_eq!(
            r.registration_client_uri.as_deref(),
            Some("https://as.example/register/c")
        );
        assert!(r.registration_access_token.is_some());
        // The requested method is used when the server does not echo one.
        let mut sent = SentSecrets::new();
        let requested = ClientMetadata::new("a").token_endpoint_auth_method("client_secret_post");
        let r = parse_response(
            &resp(201, r#"{"client_id":"c","client_secret":"s3cret-value"}"#),
            &requested,
            &mut sent,
        )
        .unwrap();
        assert_eq!(r.token_endpoint_auth_method, "client_secret_post");
    }

    #[test]
    fn registration_response_bad_input_is_typed() {
        for body in [
            "{",
            "[]",
            r#"{"client_secret":"s"}"#,
            r#"{"client_id":""}"#,
            r#"{"client_id":7}"#,
            r#"{"client_id":"c","client_secret":5}"#,
            r#"{"client_id":"c","client_id_issued_at":-1}"#,
            r#"{"client_id":"c","client_id_issued_at":1.5}"#,
            r#"{"client_id":"c","client_secret_expires_at":"soon"}"#,
            r#"{"client_id":"c","client_secret_expires_at":18446744073709551615}"#,
            r#"{"client_id":"c","registration_client_uri":"not a url"}"#,
            r#"{"client_id":"c","redirect_uris":"https://x"}"#,
            r#"{"client_id":"c","token_endpoint_auth_method":"client_secret_post"}"#,
        ] {
            let (r, _) = parse(201, body);
            assert!(matches!(r, Err(Error::InvalidResponse(_))), "{body}: {r:?}");
        }
        let html = http::Response::builder()
            .status(201)
            .header("content-type", "text/html")
            .body(Bytes::from_static(br#"{"client_id":"c"}"#))
            .unwrap();
        let r = parse_response(&html, &ClientMetadata::new("a"), &mut SentSecrets::new());
        assert!(matches!(r, Err(Error::InvalidResponse(_))));
    }

    #[test]
    fn registration_error_responses_rfc7591_3_2_2() {
        // RFC 7591 §3.2.2 examples, and the other error codes it defines.
        for code in [
            "invalid_redirect_uri",
            "invalid_client_metadata",
            "invalid_software_statement",
            "unapproved_software_statement",
        ] {
            let body = format!(r#"{{"error":"{code}","error_description":"why"}}"#);
            let (r, _) = parse(400, &body);
            let e = r.unwrap_err();
            let o = e.oauth_error().expect("typed OAuth error");
            assert_eq!(o.error, OAuthErrorCode::Extension(code.to_owned()));
            assert_eq!(o.error_description.as_deref(), Some("why"));
            assert_eq!(o.status, 400);
        }
        for status in [202, 204, 302, 401, 404, 500] {
            let (r, _) = parse(status, "nope");
            assert!(
                matches!(r, Err(Error::Http { status: s, .. }) if s == status),
                "{status}"
            );
        }
    }

    #[test]
    fn registration_secrets_anywhere_in_the_body_are_collected() {
        let (r, sent) = parse(
            500,
            r#"{"detail":{"echo":[{"client_secret":"deep-secret-1"}]},
                "registration_access_token":"top-secret-2","client_secret":7}"#,
        );
        assert!(sent.contains_secret("deep-secret-1"));
        assert!(sent.contains_secret("top-secret-2"));
        let e = r.unwrap_err().redacted(&sent);
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("deep-secret-1") && !text.contains("top-secret-2"),
            "{text}"
        );
    }
}
