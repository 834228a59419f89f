//! One scenario, two authorization servers.
//!
//! A scenario that makes sense on any authorization server is an `async fn(Kind)` that starts
//! a [`Server`] of that kind and talks to it through what both kinds offer: the issuer, the
//! same client registrations, a protected resource and a few knobs ([`Knobs`]).
//! [`per_server!`](crate::per_server) turns it into two tests, `<scenario>::testkit` (the
//! embedded [`TestServer`]) and `<scenario>::oidc_provider` (node oidc-provider 9, skipped
//! without Node.js unless `CI` is set), so `cargo test <scenario>` runs it on both.
//!
//! What only one server can show (the embedded server's request counters, say) is asserted in
//! a branch on [`Server::testkit`] or [`Server::oidc_provider`] of the same run.

use std::time::Duration;

use serde_json::{json, Value};
use url::Url;

use super::oidc_provider::OidcProvider;
use super::prelude::{
    ClientAuth, PendingAuthorization, TestClient, TestClientAuth, TestServer, TestServerConfig,
};

/// Which server a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The embedded `agent_oauth::testkit::TestServer`.
    Testkit,
    /// node oidc-provider 9 (`tests/interop/server.mjs`).
    OidcProvider,
}

/// What a scenario asks of the server. Every knob is off by default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Knobs {
    /// The token endpoint demands a DPoP nonce (`use_dpop_nonce`).
    pub as_dpop_nonce: bool,
    /// The protected resource demands a DPoP nonce.
    pub resource_dpop_nonce: bool,
    /// The protected resource refuses Bearer tokens (and, at oidc-provider, the service client
    /// gets only DPoP-bound tokens).
    pub dpop_required: bool,
    /// Every access token issued to [`SERVICE`] says `may_act: {"sub": "worker"}`
    /// (RFC 8693 §4.4): [`WORKER`] may act for it.
    pub service_may_act_worker: bool,
}

impl Knobs {
    /// DPoP nonces demanded by both the token endpoint and the resource.
    pub fn nonces() -> Knobs {
        Knobs {
            as_dpop_nonce: true,
            resource_dpop_nonce: true,
            ..Knobs::default()
        }
    }
}

/// A client registered the same way at both servers.
#[derive(Clone, Copy, Debug)]
pub struct Registration {
    /// The `client_id`.
    pub id: &'static str,
    /// The client secret (`None`: a public client).
    pub secret: Option<&'static str>,
}

impl Registration {
    /// Its client authentication, the secret method chosen from the server's metadata.
    pub fn auth(&self) -> ClientAuth {
        match self.secret {
            Some(s) => ClientAuth::client_secret(s),
            None => ClientAuth::none(),
        }
    }
}

/// A confidential service client: `client_credentials` and token exchange.
pub const SERVICE: Registration = Registration {
    id: "svc",
    secret: Some("svc-secret"),
};

/// A second confidential client, acting for [`SERVICE`] in token exchange (`actor_token`).
pub const WORKER: Registration = Registration {
    id: "worker",
    secret: Some("worker-secret"),
};

/// A third confidential client, acting for [`WORKER`] one delegation further down.
pub const SUB_WORKER: Registration = Registration {
    id: "sub-worker",
    secret: Some("sub-worker-secret"),
};

/// The confidential clients, registered alike at both servers.
const CONFIDENTIAL: [Registration; 3] = [SERVICE, WORKER, SUB_WORKER];

/// A public client: authorization code (PKCE) and refresh tokens, redirecting to [`REDIRECT`].
pub const PUBLIC: Registration = Registration {
    id: "public-app",
    secret: None,
};

/// A confidential user-facing client: authorization code and refresh tokens, redirecting to
/// [`REDIRECT`]. Its secret holds characters that form-encoding and Basic authentication must
/// escape.
pub const APP: Registration = Registration {
    id: "app",
    secret: Some("app-secret:+/"),
};

/// The redirect URI of [`PUBLIC`] and [`APP`] (loopback: the embedded server accepts any port).
pub const REDIRECT: &str = "http://127.0.0.1:1/cb";

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// A running authorization server with a protected resource.
#[derive(Debug)]
pub struct Server {
    inner: Inner,
    issuer: String,
    resource: String,
}

#[derive(Debug)]
enum Inner {
    Testkit(TestServer),
    OidcProvider(OidcProvider),
}

impl Server {
    /// Starts a server of `kind` with `knobs`. `None` when oidc-provider cannot run here (no
    /// Node.js and `CI` unset): the scenario is skipped.
    pub async fn start(kind: Kind, knobs: Knobs) -> Option<Server> {
        match kind {
            Kind::Testkit => {
                let mut config = TestServerConfig::default()
                    .with_require_dpop_nonce(knobs.as_dpop_nonce)
                    .with_resource_require_dpop_nonce(knobs.resource_dpop_nonce)
                    .with_resource_dpop_required(knobs.dpop_required)
                    .with_client(
                        TestClient::new(PUBLIC.id, TestClientAuth::None)
                            .with_redirect_uris([REDIRECT]),
                    )
                    .with_client(
                        TestClient::new(
                            APP.id,
                            TestClientAuth::SecretBasic(APP.secret.unwrap_or_default().into()),
                        )
                        .with_redirect_uris([REDIRECT]),
                    );
                if knobs.service_may_act_worker {
                    config = config.with_may_act(SERVICE.id, may_act_worker());
                }
                for c in CONFIDENTIAL {
                    let secret = c.secret.unwrap_or_default().to_owned();
                    config = config
                        .with_client(TestClient::new(c.id, TestClientAuth::SecretBasic(secret)));
                }
                let server = TestServer::start_with(config).await;
                Some(Server {
                    issuer: server.issuer().to_owned(),
                    resource: server.resource_url(),
                    inner: Inner::Testkit(server),
                })
            }
            Kind::OidcProvider => {
                let p = OidcProvider::start(oidc_provider_config(knobs)).await?;
                Some(Server {
                    issuer: p.issuer.clone(),
                    resource: p.resource.clone().expect("oidc-provider resource server"),
                    inner: Inner::OidcProvider(p),
                })
            }
        }
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The base URL of the protected resource (`<origin>/api` on both servers).
    pub fn resource(&self) -> String {
        self.resource.clone()
    }

    /// Absolute URL of `path` (which starts with `/`) on the authorization server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The token endpoint (both servers serve it at `<issuer>/token`).
    pub fn token_endpoint(&self) -> Url {
        Url::parse(&format!("{}/token", self.issuer)).expect("token endpoint URL")
    }

    /// The embedded server, for assertions only it can support.
    pub fn testkit(&self) -> Option<&TestServer> {
        match &self.inner {
            Inner::Testkit(s) => Some(s),
            Inner::OidcProvider(_) => None,
        }
    }

    /// oidc-provider, for assertions only it can support.
    pub fn oidc_provider(&self) -> Option<&OidcProvider> {
        match &self.inner {
            Inner::Testkit(_) => None,
            Inner::OidcProvider(p) => Some(p),
        }
    }

    /// What to print when an assertion fails: oidc-provider's stderr (empty for the embedded
    /// server, whose panics reach the test).
    pub fn log(&self) -> String {
        self.oidc_provider()
            .map(OidcProvider::stderr_log)
            .unwrap_or_default()
    }

    /// A plain HTTP client for hand-made requests to this server and its resource.
    pub fn http_client(&self) -> reqwest::Client {
        match &self.inner {
            Inner::Testkit(_) => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
            Inner::OidcProvider(p) => p.http_client(),
        }
    }

    /// Completes the user's part of an authorization request: the embedded server approves
    /// it at once, oidc-provider after its headless login and consent. Returns the redirect
    /// back to the client.
    pub async fn authorize(&self, pending: &PendingAuthorization) -> Url {
        let location = match &self.inner {
            Inner::Testkit(_) => {
                let resp = self
                    .http_client()
                    .get(pending.url.clone())
                    .send()
                    .await
                    .expect("authorization request");
                assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
                resp.headers()["location"]
                    .to_str()
                    .expect("location")
                    .to_owned()
            }
            Inner::OidcProvider(p) => {
                let query: Vec<(String, String)> = pending.url.query_pairs().into_owned().collect();
                let pairs: Vec<(&str, &str)> = query
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                p.authorize_redirect(&pairs).await
            }
        };
        Url::parse(&location).expect("redirect URL")
    }

    /// The key thumbprint the resource saw the token bound to, from its JSON answer (the
    /// embedded resource echoes `jkt`, oidc-provider's the token's `cnf`).
    pub fn resource_jkt<'a>(&self, body: &'a Value) -> &'a Value {
        match self.inner {
            Inner::Testkit(_) => &body["jkt"],
            Inner::OidcProvider(_) => &body["cnf"]["jkt"],
        }
    }
}

/// The oidc-provider configuration with the same registrations as the embedded server.
fn oidc_provider_config(knobs: Knobs) -> Value {
    let mut clients: Vec<Value> = CONFIDENTIAL
        .iter()
        .map(|c| {
            json!({
                "client_id": c.id,
                "client_secret": c.secret,
                "grant_types": ["client_credentials", TOKEN_EXCHANGE],
                "redirect_uris": [],
                "response_types": [],
                "dpop_bound_access_tokens": knobs.dpop_required
            })
        })
        .collect();
    clients.push(json!({
        "client_id": APP.id,
        "client_secret": APP.secret,
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [REDIRECT],
        "response_types": ["code"]
    }));
    clients.push(json!({
        "client_id": PUBLIC.id,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [REDIRECT],
        "response_types": ["code"]
    }));
    json!({
        "clients": clients,
        "token_exchange": true,
        "access_token_ttl": 300,
        "dpop_nonce": knobs.as_dpop_nonce,
        "resource_server": true,
        "resource_nonce": knobs.resource_dpop_nonce,
        "dpop_bound_access_tokens_required": knobs.dpop_required,
        "may_act": if knobs.service_may_act_worker {
            json!({ SERVICE.id: may_act_worker() })
        } else {
            json!({})
        },
    })
}

/// `may_act` naming [`WORKER`].
fn may_act_worker() -> Value {
    json!({ "sub": WORKER.id })
}

/// Generates, for each scenario `async fn name(kind: Kind)` in scope, a module `name` with the
/// tests `testkit` and `oidc_provider`. Extra tokens after the name go to `#[tokio::test(..)]`.
#[macro_export]
macro_rules! per_server {
    ($name:ident $(, $($arg:tt)+)?) => {
        mod $name {
            #[tokio::test$(($($arg)+))?]
            async fn testkit() {
                super::$name($crate::support::servers::Kind::Testkit).await
            }

            #[tokio::test$(($($arg)+))?]
            async fn oidc_provider() {
                super::$name($crate::support::servers::Kind::OidcProvider).await
            }
        }
    };
}
