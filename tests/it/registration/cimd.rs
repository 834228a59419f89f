//! Client ID metadata documents at the embedded server: the `client_id` is an HTTPS URL whose
//! document the server was given (it never fetches).

use serde_json::json;

use super::{claims, client_for, http, server_at, REDIRECT};
use crate::support::prelude::{
    client_id_metadata_document_supported, validate_client_id_metadata_document, ClientMetadata,
    Registration, RegistrationKind, TestServer, TestServerConfig, TokenParams,
};

const CLIENT_ID: &str = "https://agent.example/oauth/client-metadata.json";

async fn cimd_server() -> TestServer {
    TestServer::start_with(TestServerConfig::default().with_client_id_metadata_documents(true))
        .await
}

fn metadata() -> ClientMetadata {
    ClientMetadata::new("cimd agent").redirect_uris([REDIRECT])
}

#[tokio::test]
async fn registration_cimd_client_id_accepted_at_authorize_and_token() {
    let server = cimd_server().await;
    let as_ = server_at(server.issuer());
    let md = as_.metadata().await.unwrap();
    assert!(client_id_metadata_document_supported(&md));
    assert_eq!(md.registration_endpoint, None);

    let document = metadata().client_id_metadata_document(CLIENT_ID).unwrap();
    // What the server will check, as a server would after fetching the URL.
    let seen =
        validate_client_id_metadata_document(document.to_string().as_bytes(), CLIENT_ID).unwrap();
    assert_eq!(seen.redirect_uris, [REDIRECT]);
    server.add_client_id_metadata_document(CLIENT_ID, document);
    let registration = Registration::metadata_document(CLIENT_ID, &metadata()).unwrap();
    assert_eq!(registration.kind, RegistrationKind::MetadataDocument);
    let client = client_for(as_, &registration);
    assert_eq!(client.client_id(), CLIENT_ID);

    let t = super::code_flow_at_testkit(&server, &client).await;
    assert_eq!(claims(t.access_token.secret())["client_id"], CLIENT_ID);
    // The refresh token works for the same client.
    let refreshed = client
        .refresh(
            t.refresh_token.as_ref().expect("refresh token"),
            &TokenParams::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        claims(refreshed.access_token.secret())["client_id"],
        CLIENT_ID
    );
    assert!(
        server.registered_clients().is_empty(),
        "nothing was registered"
    );
}

/// The authorization endpoint's answer for `client_id`: its status and JSON error code.
async fn authorize_answer(server: &TestServer, client_id: &str) -> (u16, String) {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/authorize", server.issuer()),
        &[
            ("client_id", client_id),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &"a".repeat(43)),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let resp = http().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn registration_cimd_unknown_or_invalid_documents_refused() {
    let server = cimd_server().await;
    // No document for this URL.
    assert_eq!(
        authorize_answer(&server, CLIENT_ID).await,
        (401, "invalid_client".to_owned())
    );
    // A document that names another client_id, or uses a shared secret, fails validation.
    let other = "https://agent.example/other.json";
    server.add_client_id_metadata_document(
        other,
        metadata().client_id_metadata_document(CLIENT_ID).unwrap(),
    );
    let mut secret_doc = metadata().client_id_metadata_document(other).unwrap();
    secret_doc["token_endpoint_auth_method"] = json!("client_secret_basic");
    let third = "https://agent.example/third.json";
    server.add_client_id_metadata_document(third, {
        let mut d = secret_doc;
        d["client_id"] = json!(third);
        d
    });
    for id in [other, third] {
        assert_eq!(
            authorize_answer(&server, id).await,
            (401, "invalid_client".to_owned()),
            "{id}"
        );
    }
    // A valid one is accepted (a redirect with a code).
    server.add_client_id_metadata_document(
        CLIENT_ID,
        metadata().client_id_metadata_document(CLIENT_ID).unwrap(),
    );
    assert_eq!(authorize_answer(&server, CLIENT_ID).await.0, 302);
    // With documents off, the same document is not looked at.
    let off = TestServer::start().await;
    off.add_client_id_metadata_document(
        CLIENT_ID,
        metadata().client_id_metadata_document(CLIENT_ID).unwrap(),
    );
    assert_eq!(
        authorize_answer(&off, CLIENT_ID).await,
        (401, "invalid_client".to_owned())
    );
}

/// A document with a public key lets the client authenticate with `private_key_jwt`, here for
/// `client_credentials` at the token endpoint.
#[cfg(feature = "josekit")]
#[tokio::test]
async fn registration_cimd_private_key_jwt_at_token_endpoint() {
    use crate::support::prelude::AssertionKey;
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};

    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let point = key.verifying_key().to_encoded_point(false);
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()),
    });
    let metadata = metadata()
        .grant_types(["authorization_code", "client_credentials"])
        .token_endpoint_auth_method("private_key_jwt")
        .jwks(json!({ "keys": [jwk] }));
    let server = cimd_server().await;
    server.add_client_id_metadata_document(
        CLIENT_ID,
        metadata.client_id_metadata_document(CLIENT_ID).unwrap(),
    );
    let registration = Registration::metadata_document(CLIENT_ID, &metadata).unwrap();
    assert!(registration.client_auth(None).is_err(), "the key is needed");
    let auth = registration
        .client_auth(Some(AssertionKey::from_pem("ES256", &pem).unwrap()))
        .unwrap();
    let client = crate::support::prelude::OAuthClient::builder(
        server_at(server.issuer()),
        registration.client_id.clone(),
    )
    .auth(auth)
    .build();
    let t = client
        .client_credentials(&TokenParams::new().resource(server.resource_url()))
        .await
        .unwrap();
    assert_eq!(claims(t.access_token.secret())["client_id"], CLIENT_ID);
}
