//! Dynamic Client Registration (RFC 7591) at the embedded server.

use super::{claims, client_for, server_at, transport, REDIRECT};
use crate::support::prelude::{
    choose_auth_method, register, ClientMetadata, Error, OAuthErrorCode, RegistrationKind,
    TestClientAuth, TestServer, TestServerConfig, TokenParams,
};

async fn dcr_server() -> TestServer {
    TestServer::start_with(TestServerConfig::default().with_dynamic_registration(true)).await
}

/// A client for `client_credentials` only.
fn service_metadata(method: &str) -> ClientMetadata {
    ClientMetadata::new("service agent")
        .grant_types(["client_credentials"])
        .response_types(Vec::<String>::new())
        .token_endpoint_auth_method(method)
        .scope("read write")
}

#[tokio::test]
async fn registration_dcr_then_client_credentials() {
    let server = dcr_server().await;
    let as_ = server_at(server.issuer());
    let md = as_.metadata().await.unwrap();
    let endpoint = md
        .registration_endpoint
        .clone()
        .expect("registration_endpoint");
    assert_eq!(endpoint, format!("{}/register", server.issuer()));
    let method = choose_auth_method(md.token_endpoint_auth_methods_supported.as_deref(), false);
    assert_eq!(method, "client_secret_basic");

    for method in [method, "client_secret_post"] {
        let registration = register(&transport(), &endpoint, &service_metadata(method), None)
            .await
            .unwrap();
        assert_eq!(registration.kind, RegistrationKind::Dynamic);
        assert_eq!(registration.token_endpoint_auth_method, method);
        assert!(registration.client_id_issued_at.is_some());
        assert!(registration.client_secret_expires_at.is_none(), "0: never");
        assert_eq!(registration.metadata.grant_types, ["client_credentials"]);
        assert_eq!(registration.metadata.scope.as_deref(), Some("read write"));
        let secret = registration.client_secret.as_ref().expect("a secret");
        // The server holds the same client.
        let held = server
            .registered_clients()
            .into_iter()
            .find(|c| c.client_id == registration.client_id)
            .expect("registered at the server");
        match &held.auth {
            TestClientAuth::SecretBasic(s) | TestClientAuth::SecretPost(s) => {
                assert_eq!(s, secret.expose_secret());
                assert_eq!(held.auth.method(), method);
            }
            other => panic!("{other:?}"),
        }

        let client = client_for(as_.clone(), &registration);
        let token = client
            .client_credentials(
                &TokenParams::new()
                    .scope("read")
                    .resource(server.resource_url()),
            )
            .await
            .unwrap();
        let c = claims(token.access_token.secret());
        assert_eq!(c["client_id"], registration.client_id.as_str());
        assert_eq!(c["aud"], server.resource_url());
    }
    assert_eq!(server.registered_clients().len(), 2);
}

#[tokio::test]
async fn registration_dcr_public_client_code_flow() {
    let server = dcr_server().await;
    let as_ = server_at(server.issuer());
    let endpoint = format!("{}/register", server.issuer());
    let metadata = ClientMetadata::new("public agent")
        .redirect_uris([REDIRECT])
        .token_endpoint_auth_method("none");
    let registration = register(&transport(), &endpoint, &metadata, None)
        .await
        .unwrap();
    assert!(registration.client_secret.is_none());
    assert_eq!(
        registration.metadata.application_type.as_deref(),
        Some("native")
    );
    assert_eq!(registration.metadata.redirect_uris, [REDIRECT]);
    let client = client_for(as_, &registration);
    let t = super::code_flow_at_testkit(&server, &client).await;
    assert_eq!(
        claims(t.access_token.secret())["client_id"],
        registration.client_id.as_str()
    );
    assert!(t.refresh_token.is_some());
    // A public client cannot use client_credentials.
    let e = client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::UnauthorizedClient)
    );
}

#[tokio::test]
async fn registration_dcr_error_responses_are_typed() {
    let server = dcr_server().await;
    let endpoint = format!("{}/register", server.issuer());
    let cases = [
        (
            ClientMetadata::new("a").redirect_uris(["http://app.example/cb"]),
            "invalid_redirect_uri",
        ),
        (ClientMetadata::new("a"), "invalid_redirect_uri"),
        (
            ClientMetadata::new("a")
                .redirect_uris([REDIRECT])
                .extra("software_statement", "eyJhbGciOiJub25lIn0.e30.".into()),
            "unapproved_software_statement",
        ),
        (
            ClientMetadata::new("a")
                .redirect_uris([REDIRECT])
                .token_endpoint_auth_method("client_secret_jwt"),
            "invalid_client_metadata",
        ),
        (
            ClientMetadata::new("a")
                .redirect_uris([REDIRECT])
                .scope("read unheard-of"),
            "invalid_client_metadata",
        ),
    ];
    for (metadata, code) in cases {
        let e = register(&transport(), &endpoint, &metadata, None)
            .await
            .unwrap_err();
        let o = e.oauth_error().unwrap_or_else(|| panic!("{code}: {e:?}"));
        assert_eq!(o.error, OAuthErrorCode::Extension(code.to_owned()), "{e}");
        assert_eq!(o.status, 400);
        let ctx = e.context().expect("context");
        assert_eq!(ctx.operation, "client registration");
        assert_eq!(ctx.endpoint, endpoint);
    }
    assert!(server.registered_clients().is_empty());
}

#[tokio::test]
async fn registration_dcr_off_by_default() {
    let server = TestServer::start().await;
    let md = server_at(server.issuer()).metadata().await.unwrap();
    assert_eq!(md.registration_endpoint, None);
    assert!(!md
        .extra
        .contains_key("client_id_metadata_document_supported"));
    let e = register(
        &transport(),
        &format!("{}/register", server.issuer()),
        &ClientMetadata::new("a").redirect_uris([REDIRECT]),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e:?}");
    assert!(matches!(e, Error::OAuth(_) | Error::Http { .. }));
}
