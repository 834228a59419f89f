//! User grants on demand through the authorization hook: first use, step-up to more scope with
//! the union of held and asked scope, the step-up bound, and grants without refresh tokens.

use std::sync::{Arc, Mutex};

use url::Url;

use crate::support::prelude::{
    Agent, AuthorizationPrompt, AuthorizationReason, ClientAuth, Error, Result, Scope, TestServer,
    TokenParams,
};
use crate::support::server::{Reply, Scripted};

const REDIRECT: &str = "http://127.0.0.1:8765/cb";

type Prompts = Arc<Mutex<Vec<(AuthorizationReason, Scope, Option<String>)>>>;

/// Follow an authorization request that the embedded server approves at once, as a browser
/// would, and return the redirect.
pub(crate) async fn approve(prompt: AuthorizationPrompt) -> Result<Url> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = http
        .get(prompt.url.as_str())
        .send()
        .await
        .expect("authorize");
    if !resp.status().is_redirection() {
        panic!("{} {:?}", resp.status(), resp.text().await);
    }
    Ok(Url::parse(resp.headers()["location"].to_str().expect("location")).expect("url"))
}

/// A public-client agent at `server` whose user authorizations are recorded in `prompts`.
async fn user_agent(server: &TestServer, prompts: &Prompts, max_step_ups: Option<u32>) -> Agent {
    let seen = prompts.clone();
    let mut b = Agent::builder()
        .issuer(server.issuer())
        .client_id("public-agent")
        .client_auth(ClientAuth::none())
        .scope("read")
        .resource(server.resource_url())
        .on_authorization(REDIRECT, move |p: AuthorizationPrompt| {
            seen.lock()
                .expect("prompts")
                .push((p.reason, p.scope.clone(), p.resource.clone()));
            approve(p)
        });
    if let Some(n) = max_step_ups {
        b = b.max_step_ups(n);
    }
    b.build().await.expect("agent")
}

#[tokio::test]
async fn user_grant_step_up_asks_the_hook_for_the_union_then_succeeds() {
    let server = TestServer::start().await;
    let prompts = Prompts::default();
    let agent = user_agent(&server, &prompts, None).await;

    // First use: the hook is called, the token has the agent's scope.
    let resp = agent
        .get(format!("{}/things", server.resource_url()))
        .send()
        .await
        .expect("first call");
    assert_eq!(resp.status(), 200);
    // `/api/admin` needs `admin`: 403 insufficient_scope, then a step-up through the hook with
    // the scope held and the scope asked, then the retry succeeds.
    let resp = agent
        .get(format!("{}/admin/report", server.resource_url()))
        .send()
        .await
        .expect("stepped-up call");
    assert_eq!(resp.status(), 200);

    let prompts = prompts.lock().expect("prompts").clone();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert_eq!(prompts[0].0, AuthorizationReason::FirstUse);
    assert!(prompts[0].1.contains("read"), "{:?}", prompts[0].1);
    // The server lists offline_access: the agent asks for a refresh token.
    assert!(
        prompts[0].1.contains("offline_access"),
        "{:?}",
        prompts[0].1
    );
    assert_eq!(
        prompts[0].2.as_deref(),
        Some(server.resource_url().as_str())
    );
    assert_eq!(prompts[1].0, AuthorizationReason::StepUp);
    assert!(
        prompts[1].1.contains("read") && prompts[1].1.contains("admin"),
        "the step-up asks for the union: {:?}",
        prompts[1].1
    );
    assert_eq!(server.stats().grants.authorization_code, 2);

    // The widened scope is kept for the resource: no further prompt.
    let resp = agent
        .get(format!("{}/admin/other", server.resource_url()))
        .send()
        .await
        .expect("third call");
    assert_eq!(resp.status(), 200);
    assert_eq!(server.stats().grants.authorization_code, 2);
}

#[tokio::test]
async fn user_grant_step_up_is_bounded_then_a_typed_error() {
    let server = TestServer::start().await;
    // A resource that names the embedded server but asks for more scope on every request.
    let api = Scripted::start().await;
    api.route(
        "/.well-known/oauth-protected-resource/api",
        Reply::json(
            200,
            &serde_json::json!({
                "resource": api.url("/api"),
                "authorization_servers": [server.issuer()],
            }),
        ),
    );
    let prompts = Prompts::default();
    let seen = prompts.clone();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("public-agent")
        .client_auth(ClientAuth::none())
        .scope("read")
        .on_authorization(REDIRECT, move |p: AuthorizationPrompt| {
            seen.lock()
                .expect("prompts")
                .push((p.reason, p.scope.clone(), p.resource.clone()));
            approve(p)
        })
        .max_step_ups(2)
        .build()
        .await
        .expect("agent");
    api.push(Reply::status(401).header(
        "www-authenticate",
        &format!(
            r#"Bearer resource_metadata="{}""#,
            api.url("/.well-known/oauth-protected-resource/api")
        ),
    ));
    for _ in 0..8 {
        api.push(Reply::status(403).header(
            "www-authenticate",
            r#"Bearer error="insufficient_scope", scope="write""#,
        ));
    }
    let err = agent
        .get(api.url("/api/tool"))
        .send()
        .await
        .expect_err("the resource never accepts");
    match &err {
        Error::StepUpExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 2);
            assert_eq!(
                last.oauth_error().map(|o| o.error.to_string()),
                Some("insufficient_scope".into())
            );
        }
        other => panic!("expected StepUpExhausted, got {other:?}"),
    }
    // One first authorization and one step-up authorization (the second step-up asks for
    // the scope already granted: a refresh, not the user).
    let prompts = prompts.lock().expect("prompts").clone();
    assert!(prompts.len() <= 3, "{prompts:?}");
    assert_eq!(prompts[0].0, AuthorizationReason::FirstUse);
    assert!(prompts
        .iter()
        .skip(1)
        .all(|p| p.0 == AuthorizationReason::StepUp));
    // Three token-bearing attempts: the first and one per step-up.
    assert_eq!(api.hits_for("/api/tool"), 4, "probe + 3 attempts");
    // The count resets: a later call may step up again, within the same bound.
    let err = agent
        .get(api.url("/api/tool"))
        .send()
        .await
        .expect_err("again");
    assert!(
        matches!(err, Error::StepUpExhausted { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(api.hits_for("/api/tool"), 7);
}

#[tokio::test]
async fn user_grant_without_refresh_token_is_an_access_token_session() {
    let server = TestServer::start().await;
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(server.resource_url())
        .build()
        .await
        .expect("agent");
    // Tokens obtained elsewhere with no refresh token (client credentials never give one).
    let client = agent.client().expect("configured issuer");
    let tokens = client
        .client_credentials(&TokenParams::new().resource(server.resource_url()))
        .await
        .expect("token");
    assert!(tokens.refresh_token.is_none());
    let before = server.stats().token_requests;
    let adopted = agent.adopt_grant(tokens.clone()).await.expect("adopted");
    assert_eq!(adopted.access_token.secret(), tokens.access_token.secret());
    // The adopted access token is used as it is: no new token request.
    let resp = agent
        .get(format!("{}/x", server.resource_url()))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(server.stats().token_requests, before);
    let held = agent
        .access_token(Some(&server.resource_url()))
        .await
        .expect("held");
    assert_eq!(
        held.token().access_token.secret(),
        tokens.access_token.secret()
    );
}

#[tokio::test]
async fn user_grant_device_flow_hook_runs_on_first_use_and_step_up() {
    use crate::support::prelude::{AgentEvent, TestServerConfig};
    use std::time::Duration;

    let server = Arc::new(
        TestServer::start_with(
            TestServerConfig::default().with_device_interval(Duration::from_secs(1)),
        )
        .await,
    );
    let approver = server.clone();
    let shown: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = shown.clone();
    let reasons: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let reasons_seen = reasons.clone();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("public-agent")
        .client_auth(ClientAuth::none())
        .scope("read")
        .resource(server.resource_url())
        .on_device_authorization(move |d| {
            // The user enters the code elsewhere; here the server is told at once.
            seen.lock().expect("codes").push(d.user_code.clone());
            let (server, code) = (approver.clone(), d.user_code.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert!(server.approve_device(&code));
            });
        })
        .on_event(move |e| {
            if let AgentEvent::AuthorizationRequired { reason, .. } = e {
                reasons_seen.lock().expect("reasons").push(reason);
            }
        })
        .build()
        .await
        .expect("agent");
    let resp = agent
        .get(format!("{}/x", server.resource_url()))
        .send()
        .await
        .expect("first call");
    assert_eq!(resp.status(), 200);
    let resp = agent
        .get(format!("{}/admin/x", server.resource_url()))
        .send()
        .await
        .expect("step-up");
    assert_eq!(resp.status(), 200);
    assert_eq!(shown.lock().expect("codes").len(), 2);
    assert_eq!(*reasons.lock().expect("reasons"), ["first_use", "step_up"]);
    assert_eq!(server.stats().grants.device_code, 2);
}
