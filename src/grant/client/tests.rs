use super::*;
use crate::dpop::testing::{self, fast_transport};
use crate::grant::TokenParams;

#[tokio::test]
async fn nonce_token_request_after_503_with_nonce_is_signed_with_the_new_nonce() {
    let s = testing::start().await;
    let transport = HttpTransport::with_config(fast_transport()).expect("transport");
    let md: ServerMetadata = serde_json::from_value(serde_json::json!({
        "issuer": s.base,
        "token_endpoint": format!("{}/token", s.base),
    }))
    .expect("metadata");
    let server = AuthorizationServer::from_metadata(md, transport).expect("server");
    let client = OAuthClient::builder(server, "c")
        .dpop(DpopKey::generate())
        .build();
    let token = client
        .client_credentials(&TokenParams::default())
        .await
        .expect("token");
    assert_eq!(token.token_type, TokenType::Dpop);
    // The transport's retry of the 503 carried the nonce the 503 brought: no nonce round trip.
    assert_eq!(s.nonces("/token"), vec![None, Some("as-n".to_owned())]);
}
