//! An embedded OAuth 2 authorization server and protected resource, for examples and tests.
//!
//! [`TestServer::start`] binds `127.0.0.1` on an ephemeral port and serves, in the same
//! process:
//!
//! - authorization server metadata (RFC 8414) at `/.well-known/oauth-authorization-server`
//!   and `/.well-known/openid-configuration`, and the signing keys at `/jwks`;
//! - `/authorize`, which auto-approves every valid request for the user `agent-user` and
//!   redirects with `code`, `state` and `iss` (RFC 9207); PKCE with `S256` is required and
//!   `dpop_jkt` is honoured;
//! - `/token` with the `client_credentials`, `authorization_code`, `refresh_token` (with
//!   rotation and reuse detection), device code (RFC 8628) and token exchange (RFC 8693)
//!   grants; client authentication by `none`, `client_secret_basic`, `client_secret_post` and
//!   `private_key_jwt`; DPoP (RFC 9449) with optional nonces; resource indicators (RFC 8707);
//! - `/revoke` (RFC 7009), `/introspect` (RFC 7662), `/device/auth` (RFC 8628);
//! - with [`TestServerConfig::with_dynamic_registration`], `/register` (RFC 7591), advertised
//!   as `registration_endpoint`: it registers `none`, `client_secret_basic`,
//!   `client_secret_post` and `private_key_jwt` (with `jwks`) clients that every endpoint then
//!   accepts, refuses redirect URIs that are neither `https` nor loopback `http`
//!   (`invalid_redirect_uri`) and software statements (`unapproved_software_statement`);
//! - with [`TestServerConfig::with_client_id_metadata_documents`], `client_id`s that are the
//!   HTTPS URLs of client ID metadata documents handed over with
//!   [`TestServer::add_client_id_metadata_document`] (never fetched), advertised as
//!   `client_id_metadata_document_supported`;
//! - a protected resource at `/api` and below that accepts Bearer and DPoP access tokens whose
//!   audience includes `<issuer>/api`, advertises itself with RFC 9728 metadata, and requires
//!   the `admin` scope under `/api/admin`;
//! - a minimal MCP server at `/mcp` (Streamable HTTP, JSON or SSE answers, the tools `echo`
//!   and `add`), protected the same way for the audience `<issuer>/mcp` with its own RFC 9728
//!   metadata; [`TestServerConfig::with_mcp_scopes`] sets the scopes it advertises and
//!   [`TestServerConfig::with_mcp_tool_scope`] a scope that `tools/call` needs.
//!
//! Access tokens are ES256 JWTs (`typ` `at+jwt`, RFC 9068) signed with the key published at
//! `/jwks` (requests counted in [`Stats::jwks_requests`]); token exchange with an actor token
//! nests the previous `act` inside the new one (RFC 8693 §4.1), and
//! [`TestServerConfig::with_may_act`] puts a `may_act` claim in a client's tokens. The server aims to answer like
//! node `oidc-provider` 9 where both implement the same thing, and it shares no JOSE or DPoP
//! code with the client side of this crate, so tests that run one against the other
//! cross-check two implementations.
//!
//! Policies worth knowing when writing tests against it:
//!
//! - `client_credentials` never returns a refresh token; the code and device grants always
//!   do. Without `scope`, `client_credentials` tokens carry no scope (as in oidc-provider).
//! - Without a `resource` parameter a token's `aud` is the issuer, which the protected
//!   resource refuses: ask for `resource=<issuer>/api` ([`TestServer::resource_url`]).
//! - Refresh tokens have an absolute lifetime counted from the grant; rotated ones keep it.
//!   Presenting a rotated refresh token again revokes the whole grant. Refresh tokens of
//!   public clients that used DPoP are bound to that key; confidential clients' are not.
//! - A second use of an authorization code revokes the tokens issued for the first.
//! - Loopback `http` redirect URIs match on any port (RFC 8252 §7.3).
//! - Token exchange accepts this server's active access tokens as `subject_token` and
//!   `actor_token`, keeps the subject token's grant (revoking it revokes the exchanged
//!   token), nests the subject token's `act` under the new actor, and honours a non-standard
//!   `expires_in` request parameter as an upper bound on the lifetime.
//! - Not implemented: ID tokens, userinfo, PAR, JAR, mTLS, consent screens, registration
//!   management (RFC 7592). Every valid authorization request is approved for the user
//!   `agent-user`.
//!
//! Test helpers: [`TestServer::fail_next`] (fault injection), [`TestServer::set_latency`],
//! [`TestServer::approve_device`], [`TestServer::revoke_all`],
//! [`TestServer::issue_refresh_token`], [`TestServer::registered_clients`] and
//! [`TestServer::stats`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_oauth::testkit::TestServer;
//!
//! let server = TestServer::start().await;
//! let response = reqwest::Client::new()
//!     .post(format!("{}/token", server.issuer()))
//!     .basic_auth("agent", Some("agent-secret"))
//!     .form(&[("grant_type", "client_credentials"), ("scope", "read"),
//!             ("resource", &server.resource_url())])
//!     .send()
//!     .await?;
//! let token: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
//! assert_eq!(token["token_type"], "Bearer");
//! # Ok(())
//! # }
//! ```

mod authorize;
mod client_auth;
mod config;
mod dpop;
mod endpoints;
mod exchange;
mod grants;
mod http_util;
mod identity;
mod jose;
mod mcp;
mod registration;
mod resource;
mod server;
mod state;

pub use config::{TestClient, TestClientAuth, TestServerConfig};
pub use identity::TestIdentityIssuer;
pub use mcp::McpStats;
pub use server::TestServer;
pub use state::{GrantStats, Stats};
