//! Configuration of the test server and its registered clients.

use std::time::Duration;

/// How a registered client authenticates at the token, revocation, introspection and device
/// authorization endpoints (its `token_endpoint_auth_method`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TestClientAuth {
    /// `none`: a public client identified by `client_id` in the request body.
    None,
    /// `client_secret_basic` with this secret (RFC 6749 §2.3.1).
    SecretBasic(String),
    /// `client_secret_post` with this secret.
    SecretPost(String),
    /// `private_key_jwt` (RFC 7523): ES256 client assertions verified with this public EC
    /// P-256 JWK.
    PrivateKeyJwt(serde_json::Value),
    /// `spiffe_jwt`: a SPIFFE JWT-SVID as the client assertion (`client_assertion_type`
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-spiffe`), signed by one of the
    /// [trusted issuers](TestServerConfig::with_trusted_issuer), whose `sub` is the client id.
    SpiffeJwt,
}

impl TestClientAuth {
    /// The `token_endpoint_auth_method` name.
    pub fn method(&self) -> &'static str {
        match self {
            TestClientAuth::None => "none",
            TestClientAuth::SecretBasic(_) => "client_secret_basic",
            TestClientAuth::SecretPost(_) => "client_secret_post",
            TestClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
            TestClientAuth::SpiffeJwt => "spiffe_jwt",
        }
    }

    /// True for public clients (`none`).
    pub fn is_public(&self) -> bool {
        matches!(self, TestClientAuth::None)
    }
}

/// A client registered at the test server.
#[derive(Clone, Debug)]
pub struct TestClient {
    /// The `client_id`.
    pub client_id: String,
    /// How it authenticates.
    pub auth: TestClientAuth,
    /// Registered redirect URIs, matched exactly (loopback `http` URIs match on any port, as
    /// RFC 8252 §7.3 asks for native apps).
    pub redirect_uris: Vec<String>,
    /// Space-separated scope values the client may ask for.
    pub scope: String,
}

impl TestClient {
    /// A client allowed every default scope and redirecting to `http://127.0.0.1/cb`.
    pub fn new(client_id: impl Into<String>, auth: TestClientAuth) -> Self {
        TestClient {
            client_id: client_id.into(),
            auth,
            redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
            scope: DEFAULT_SCOPES.join(" "),
        }
    }

    /// Replace the allowed scope (space-separated).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Replace the registered redirect URIs.
    pub fn with_redirect_uris<I, S>(mut self, uris: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redirect_uris = uris.into_iter().map(Into::into).collect();
        self
    }
}

pub(crate) const DEFAULT_SCOPES: [&str; 5] = ["read", "write", "admin", "offline_access", "openid"];

/// Settings of a [`TestServer`](super::TestServer). Start from [`Default`] and adjust with the
/// `with_*` methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TestServerConfig {
    /// Lifetime of access tokens (default 300 s).
    pub access_token_ttl: Duration,
    /// Absolute lifetime of a grant's refresh tokens, counted from the grant (default one day).
    pub refresh_token_ttl: Duration,
    /// Each refresh returns a new refresh token and retires the old one (default true).
    pub rotate_refresh_tokens: bool,
    /// The token endpoint demands a server-provided nonce in DPoP proofs (default false).
    pub require_dpop_nonce: bool,
    /// The protected resource demands its own nonce in DPoP proofs (default false).
    pub resource_require_dpop_nonce: bool,
    /// The protected resource refuses Bearer tokens (default false).
    pub resource_dpop_required: bool,
    /// Registered clients (default: `agent`, `agent-post`, `public-agent`; see
    /// [`TestServer::start`](super::TestServer::start)).
    pub clients: Vec<TestClient>,
    /// Scope values the server knows (default `read write admin offline_access openid`).
    pub scopes: Vec<String>,
    /// Delay before every token endpoint response (default none).
    pub latency: Duration,
    /// Minimum polling interval of the device flow (default 5 s).
    pub device_interval: Duration,
    /// Lifetime of device codes (default 600 s).
    pub device_code_ttl: Duration,
    /// Lifetime of authorization codes (default 60 s).
    pub authorization_code_ttl: Duration,
    /// How often DPoP nonces rotate; the current and the previous nonce are accepted
    /// (default 30 s).
    pub dpop_nonce_rotation: Duration,
    /// Scope values the MCP resource advertises (default none: it advertises `scopes`); see
    /// [`with_mcp_scopes`](Self::with_mcp_scopes).
    pub mcp_scopes: Vec<String>,
    /// Scope `tools/call` needs at the MCP resource (default none); see
    /// [`with_mcp_tool_scope`](Self::with_mcp_tool_scope).
    pub mcp_tool_scope: Option<String>,
    /// Serve Dynamic Client Registration (RFC 7591) at `/register` and advertise it as
    /// `registration_endpoint` (default false).
    pub dynamic_registration: bool,
    /// Accept `client_id`s that are the HTTPS URLs of client ID metadata documents given with
    /// [`TestServer::add_client_id_metadata_document`](super::TestServer::add_client_id_metadata_document),
    /// and advertise `client_id_metadata_document_supported` (default false).
    pub client_id_metadata_documents: bool,
    /// `may_act` claims (RFC 8693 §4.4) put in every access token issued to a client, by
    /// client id (default none); see [`with_may_act`](Self::with_may_act).
    pub may_act: Vec<(String, serde_json::Value)>,
    /// Issuers (issuer identifier, public EC P-256 JWK) whose ES256-signed JWTs the server
    /// trusts: as JWT bearer grants (RFC 7523), as the ID tokens it exchanges for ID-JAGs, and
    /// as SPIFFE client assertions (default none); see
    /// [`with_trusted_issuer`](Self::with_trusted_issuer).
    pub trusted_issuers: Vec<(String, serde_json::Value)>,
    /// Act as an enterprise identity provider: exchange ID tokens (RFC 8693,
    /// `requested_token_type` `urn:ietf:params:oauth:token-type:id-jag`) for ID-JAGs signed with
    /// the server's key (default false).
    pub issue_id_jags: bool,
}

impl Default for TestServerConfig {
    fn default() -> Self {
        TestServerConfig {
            access_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(86_400),
            rotate_refresh_tokens: true,
            require_dpop_nonce: false,
            resource_require_dpop_nonce: false,
            resource_dpop_required: false,
            clients: vec![
                TestClient::new(
                    "agent",
                    TestClientAuth::SecretBasic("agent-secret".to_owned()),
                ),
                TestClient::new(
                    "agent-post",
                    TestClientAuth::SecretPost("agent-post-secret".to_owned()),
                ),
                TestClient::new("public-agent", TestClientAuth::None),
            ],
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            latency: Duration::ZERO,
            device_interval: Duration::from_secs(5),
            device_code_ttl: Duration::from_secs(600),
            authorization_code_ttl: Duration::from_secs(60),
            dpop_nonce_rotation: Duration::from_secs(30),
            mcp_scopes: Vec::new(),
            mcp_tool_scope: None,
            dynamic_registration: false,
            client_id_metadata_documents: false,
            may_act: Vec::new(),
            trusted_issuers: Vec::new(),
            issue_id_jags: false,
        }
    }
}

impl TestServerConfig {
    /// Set the access token lifetime.
    pub fn with_access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Set the refresh token (grant) lifetime.
    pub fn with_refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_token_ttl = ttl;
        self
    }

    /// Turn refresh token rotation on or off.
    pub fn with_rotate_refresh_tokens(mut self, rotate: bool) -> Self {
        self.rotate_refresh_tokens = rotate;
        self
    }

    /// Require DPoP nonces at the token endpoint.
    pub fn with_require_dpop_nonce(mut self, require: bool) -> Self {
        self.require_dpop_nonce = require;
        self
    }

    /// Require DPoP nonces at the protected resource.
    pub fn with_resource_require_dpop_nonce(mut self, require: bool) -> Self {
        self.resource_require_dpop_nonce = require;
        self
    }

    /// Make the protected resource refuse Bearer tokens.
    pub fn with_resource_dpop_required(mut self, required: bool) -> Self {
        self.resource_dpop_required = required;
        self
    }

    /// Register one more client (a client with the same `client_id` is replaced).
    pub fn with_client(mut self, client: TestClient) -> Self {
        self.clients.retain(|c| c.client_id != client.client_id);
        self.clients.push(client);
        self
    }

    /// Replace all registered clients.
    pub fn with_clients(mut self, clients: Vec<TestClient>) -> Self {
        self.clients = clients;
        self
    }

    /// Replace the known scope values.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Delay every token endpoint response.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Set the device flow polling interval (whole seconds are advertised; at least 1 s).
    pub fn with_device_interval(mut self, interval: Duration) -> Self {
        self.device_interval = interval;
        self
    }

    /// Set the device code lifetime.
    pub fn with_device_code_ttl(mut self, ttl: Duration) -> Self {
        self.device_code_ttl = ttl;
        self
    }

    /// Set the authorization code lifetime.
    pub fn with_authorization_code_ttl(mut self, ttl: Duration) -> Self {
        self.authorization_code_ttl = ttl;
        self
    }

    /// Set how often DPoP nonces rotate.
    pub fn with_dpop_nonce_rotation(mut self, every: Duration) -> Self {
        self.dpop_nonce_rotation = every;
        self
    }

    /// Turn Dynamic Client Registration (RFC 7591, `/register`) on or off. Registered
    /// clients are accepted by every endpoint, like configured ones.
    pub fn with_dynamic_registration(mut self, enabled: bool) -> Self {
        self.dynamic_registration = enabled;
        self
    }

    /// Turn client ID metadata documents on or off.
    pub fn with_client_id_metadata_documents(mut self, enabled: bool) -> Self {
        self.client_id_metadata_documents = enabled;
        self
    }

    /// Trust ES256 JWTs of `issuer`, verified with its public EC P-256 `jwk`
    /// ([`TestIdentityIssuer::public_jwk`](super::TestIdentityIssuer::public_jwk),
    /// [`TestServer::public_jwk`](super::TestServer::public_jwk)): the JWT bearer grant takes
    /// them as grants (with `aud` the server's issuer or token endpoint), ID-JAGs among them
    /// (`typ` `oauth-id-jag+jwt`, whose `client_id` must be the authenticated client). Without
    /// client authentication, the grant's `sub` is the client (workload identity federation).
    pub fn with_trusted_issuer(
        mut self,
        issuer: impl Into<String>,
        jwk: serde_json::Value,
    ) -> Self {
        self.trusted_issuers.push((issuer.into(), jwk));
        self
    }

    /// Act as an enterprise identity provider issuing ID-JAGs (see
    /// [`issue_id_jags`](Self::issue_id_jags)).
    pub fn with_id_jag_issuance(mut self, enabled: bool) -> Self {
        self.issue_id_jags = enabled;
        self
    }
}

impl TestServerConfig {
    /// Set the scope values the MCP resource at `/mcp` advertises: its RFC 9728
    /// `scopes_supported` and the `scope` of its challenges to requests without a valid
    /// token. By default it advertises [`scopes`](Self::scopes) and its challenges name no
    /// scope. The values must be known to the server ([`with_scopes`](Self::with_scopes)) and
    /// allowed to the clients that ask for them.
    pub fn with_mcp_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.mcp_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Make `tools/call` at the MCP resource require `scope` (a single value): a token without
    /// it is refused with 403 `insufficient_scope` and a challenge naming `scope`, so step-up
    /// authorization can be tested. The other methods need only a valid token.
    pub fn with_mcp_tool_scope(mut self, scope: impl Into<String>) -> Self {
        self.mcp_tool_scope = Some(scope.into());
        self
    }

    /// Put `may_act: value` (e.g. `{"sub": "worker"}`) in every access token issued to
    /// `client_id`, exchanged ones included: who may act for the token's subject, for tests of
    /// delegation policies.
    pub fn with_may_act(mut self, client_id: impl Into<String>, value: serde_json::Value) -> Self {
        self.may_act.push((client_id.into(), value));
        self
    }
}
