//! Registration, then authorization code + PKCE with the registered client: written once, run
//! against the embedded server and node oidc-provider (`registration: {...}` in
//! `tests/interop/server.mjs`), each with an initial access token.

use serde_json::json;
use url::Url;

use super::{approve_at_testkit, claims, client_for, server_at, transport, REDIRECT};
use crate::per_server;
use crate::support::oidc_provider::OidcProvider;
use crate::support::prelude::{
    choose_auth_method, register, ClientMetadata, Error, OAuthErrorCode, PendingAuthorization,
    RegistrationKind, SecretString, TestServer, TestServerConfig, TokenParams,
};
use crate::support::servers::Kind;

/// The initial access token oidc-provider requires (the embedded server ignores it).
const INITIAL_ACCESS_TOKEN: &str = "initial-access-token-0123456789";

enum Running {
    Testkit(TestServer),
    OidcProvider(OidcProvider),
}

impl Running {
    async fn start(kind: Kind) -> Option<Running> {
        match kind {
            Kind::Testkit => Some(Running::Testkit(
                TestServer::start_with(TestServerConfig::default().with_dynamic_registration(true))
                    .await,
            )),
            Kind::OidcProvider => OidcProvider::start(json!({
                "registration": { "initial_access_token": INITIAL_ACCESS_TOKEN },
                "resource_server": true,
            }))
            .await
            .map(Running::OidcProvider),
        }
    }

    fn issuer(&self) -> String {
        match self {
            Running::Testkit(s) => s.issuer().to_owned(),
            Running::OidcProvider(p) => p.issuer.clone(),
        }
    }

    fn resource(&self) -> String {
        match self {
            Running::Testkit(s) => s.resource_url(),
            Running::OidcProvider(p) => p.resource.clone().expect("resource server"),
        }
    }

    fn log(&self) -> String {
        match self {
            Running::Testkit(_) => String::new(),
            Running::OidcProvider(p) => p.stderr_log(),
        }
    }

    /// The user's part: approved at once by the embedded server, through the headless login
    /// and consent at oidc-provider.
    async fn authorize(&self, pending: &PendingAuthorization) -> Url {
        match self {
            Running::Testkit(_) => approve_at_testkit(pending).await,
            Running::OidcProvider(p) => {
                let query: Vec<(String, String)> = pending.url.query_pairs().into_owned().collect();
                let pairs: Vec<(&str, &str)> = query
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                Url::parse(&p.authorize_redirect(&pairs).await).unwrap()
            }
        }
    }
}

per_server!(registration_dcr_then_code_pkce);
async fn registration_dcr_then_code_pkce(kind: Kind) {
    let Some(s) = Running::start(kind).await else {
        return;
    };
    let as_ = server_at(&s.issuer());
    let md = as_.metadata().await.unwrap();
    let endpoint = md
        .registration_endpoint
        .clone()
        .expect("registration_endpoint advertised");
    let token = SecretString::new(INITIAL_ACCESS_TOKEN);

    // Both servers support client_secret_basic; without a key of our own it is the choice.
    let method = choose_auth_method(md.token_endpoint_auth_methods_supported.as_deref(), false);
    assert_eq!(method, "client_secret_basic");
    for method in [method, "none"] {
        let metadata = ClientMetadata::new("interop agent")
            .redirect_uris([REDIRECT])
            .token_endpoint_auth_method(method);
        let registration = register(&transport(), &endpoint, &metadata, Some(&token))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e:?}\n{}", s.log()));
        assert_eq!(registration.kind, RegistrationKind::Dynamic);
        assert_eq!(registration.token_endpoint_auth_method, method);
        assert_eq!(registration.client_secret.is_some(), method != "none");
        assert_eq!(registration.metadata.redirect_uris, [REDIRECT]);
        assert_eq!(
            registration.metadata.application_type.as_deref(),
            Some("native")
        );
        if let Running::OidcProvider(_) = s {
            // RFC 7592 management credentials come back, and stay out of Debug.
            let rat = registration
                .registration_access_token
                .as_ref()
                .expect("rat");
            assert!(registration.registration_client_uri.is_some());
            assert!(!format!("{registration:?}").contains(rat.expose_secret()));
        }

        let client = client_for(as_.clone(), &registration);
        let pending = client
            .authorization_url(
                REDIRECT,
                &TokenParams::new().scope("read").resource(s.resource()),
            )
            .await
            .unwrap();
        let callback = s.authorize(&pending).await;
        let t = client
            .exchange_code(&pending, &callback)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e:?}\n{}", s.log()));
        let c = claims(t.access_token.secret());
        assert_eq!(c["client_id"], registration.client_id.as_str(), "{c}");
        assert_eq!(c["aud"], s.resource());
        assert!(t.refresh_token.is_some(), "{method}: no refresh token");
    }

    if let Running::OidcProvider(_) = s {
        // Without the initial access token the real server refuses, as RFC 6750 says.
        let e = register(
            &transport(),
            &endpoint,
            &ClientMetadata::new("a").redirect_uris([REDIRECT]),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.oauth_error().map(|o| o.error.clone()),
            Some(OAuthErrorCode::InvalidToken),
            "{e:?}"
        );
    }
    // A native client's http redirect off loopback is `invalid_redirect_uri` at both.
    let e = register(
        &transport(),
        &endpoint,
        &ClientMetadata::new("a")
            .application_type("native")
            .redirect_uris(["http://app.example/cb"]),
        Some(&token),
    )
    .await
    .unwrap_err();
    match &e {
        Error::OAuth(o) => assert_eq!(
            o.error,
            OAuthErrorCode::Extension("invalid_redirect_uri".into())
        ),
        other => panic!("{other:?}\n{}", s.log()),
    }
}
