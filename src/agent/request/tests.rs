use crate::dpop::testing::{self, fast_transport};
use crate::{Agent, ClientAuth};

#[tokio::test]
async fn nonce_resource_retry_after_503_with_nonce_is_signed_with_the_new_nonce() {
    let s = testing::start().await;
    let url = format!("{}/data", s.base);
    let agent = Agent::builder()
        .issuer(&s.base)
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("secret"))
        .resource(&url)
        .transport_config(fast_transport())
        .build()
        .await
        .expect("agent");
    let resp = agent.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    // The first attempt carried no nonce: the token endpoint's nonce (same origin) is the
    // authorization server's, not the resource's. The transport's retry of the 503 used the
    // nonce the 503 brought, as the token path does.
    assert_eq!(s.nonces("/data"), vec![None, Some("rs-n".to_owned())]);
}
