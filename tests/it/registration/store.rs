//! A registration stored as a record in a `FileStore`, read back by another store on the same
//! directory (another process would), and used.

use super::{client_for, server_at, transport};
use crate::support::prelude::{
    register, ClientMetadata, Error, FileStore, Registration, RegistrationKind, TestServer,
    TestServerConfig, TokenParams, TokenStore,
};

#[tokio::test]
async fn registration_record_round_trip_through_file_store() {
    let server =
        TestServer::start_with(TestServerConfig::default().with_dynamic_registration(true)).await;
    let metadata = ClientMetadata::new("stored agent")
        .grant_types(["client_credentials"])
        .response_types(Vec::<String>::new())
        .token_endpoint_auth_method("client_secret_post");
    let registration = register(
        &transport(),
        &format!("{}/register", server.issuer()),
        &metadata,
        None,
    )
    .await
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let key = format!("registration:{}\0stored agent", server.issuer());
    let record = registration.to_record().unwrap();
    {
        let store = FileStore::new(&dir).unwrap();
        assert!(store.store_record(&key, Some(&record)).await.unwrap());
    }
    let secret = registration.client_secret.as_ref().unwrap().expose_secret();

    let store = FileStore::new(&dir).unwrap();
    let bytes = store.load_record(&key).await.unwrap().expect("stored");
    let loaded = Registration::from_record(&bytes).unwrap();
    assert_eq!(loaded.client_id, registration.client_id);
    assert_eq!(loaded.kind, RegistrationKind::Dynamic);
    assert_eq!(loaded.token_endpoint_auth_method, "client_secret_post");
    assert_eq!(
        loaded.client_secret.as_ref().map(|s| s.expose_secret()),
        Some(secret)
    );
    assert_eq!(loaded.client_id_issued_at, registration.client_id_issued_at);
    assert_eq!(loaded.metadata, registration.metadata);

    // The reloaded registration still gets tokens.
    let client = client_for(server_at(server.issuer()), &loaded);
    client
        .client_credentials(&TokenParams::new().resource(server.resource_url()))
        .await
        .unwrap();

    // Grants under the same key are unaffected, and removing the record removes it only.
    assert!(store.load(&key).await.unwrap().is_none());
    assert!(store.store_record(&key, None).await.unwrap());
    assert!(store.load_record(&key).await.unwrap().is_none());

    // Garbage stored under a key is a typed error when read as a registration.
    assert!(store.store_record(&key, Some(b"{\"v\":1}")).await.unwrap());
    let bytes = store.load_record(&key).await.unwrap().unwrap();
    assert!(matches!(
        Registration::from_record(&bytes),
        Err(Error::Store(_))
    ));
}
