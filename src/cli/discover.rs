//! `agent-oauth discover URL`: what an agent does for a resource URL (401 challenge → RFC 9728
//! metadata → authorization server metadata → registration options) or for an issuer
//! (its metadata), one printed step at a time.

use agent_oauth::discovery::{
    challenges_from_headers, discover_resource_metadata, resource_metadata_from_challenges,
};
use agent_oauth::transport::RetryPolicy;
use agent_oauth::{AuthorizationServer, HttpTransport, ServerMetadata};
use serde_json::{json, Value};
use url::Url;

use crate::exit::{CliError, CliResult};

/// Arguments of `discover`.
#[derive(clap::Args, Debug)]
pub(crate) struct DiscoverArgs {
    /// A protected resource URL or an authorization server issuer.
    url: String,
    /// Treat URL as an issuer (skip the resource steps).
    #[arg(long)]
    issuer: bool,
    /// Print the steps as one JSON document.
    #[arg(long)]
    json: bool,
}

/// The steps, printed as they happen (text) or collected (JSON).
struct Steps {
    json: bool,
    steps: Vec<Value>,
}

impl Steps {
    fn add(&mut self, name: &str, text: String, detail: Value) {
        if !self.json {
            println!("{name}: {text}");
        }
        self.steps
            .push(json!({"step": name, "summary": text, "detail": detail}));
    }
}

fn list(v: &Option<Vec<String>>) -> String {
    match v {
        Some(v) if !v.is_empty() => v.join(" "),
        _ => "(not advertised)".to_owned(),
    }
}

/// Follow discovery and print each step.
pub(crate) async fn run(args: DiscoverArgs) -> CliResult {
    let url = Url::parse(&args.url)
        .map_err(|e| CliError::usage(format!("`{}` is not a URL: {e}", args.url)))?;
    let transport = HttpTransport::new()?;
    let mut steps = Steps {
        json: args.json,
        steps: Vec::new(),
    };
    let issuers = if args.issuer {
        vec![args.url.trim_end_matches('/').to_owned()]
    } else {
        resource_steps(&transport, &url, &mut steps).await?
    };
    for issuer in issuers {
        let server = AuthorizationServer::new(&issuer, transport.clone())?;
        let md = server.metadata().await?;
        server_steps(&md, &mut steps);
    }
    if args.json {
        println!("{}", json!({"url": args.url, "steps": steps.steps}));
    }
    Ok(())
}

/// The resource part: an unauthenticated request, its challenge, the resource metadata.
/// Returns the issuers it names (the URL itself when nothing points elsewhere).
async fn resource_steps(
    transport: &HttpTransport,
    url: &Url,
    steps: &mut Steps,
) -> CliResult<Vec<String>> {
    let target = url.clone();
    let resp = transport
        .execute(RetryPolicy::Idempotent, || {
            http::Request::get(target.as_str())
                .body(Vec::new())
                .map_err(|e| agent_oauth::Error::Config(format!("bad request: {e}")))
        })
        .await?;
    let status = resp.status().as_u16();
    let challenges = challenges_from_headers(resp.headers()).unwrap_or_default();
    let shown: Vec<String> = challenges
        .iter()
        .map(|c| {
            let params: Vec<String> = c.params().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{} {}", c.scheme(), params.join(", "))
        })
        .collect();
    steps.add(
        "request",
        format!(
            "GET {url} -> {status}{}",
            if shown.is_empty() {
                String::new()
            } else {
                format!(" (WWW-Authenticate: {})", shown.join("; "))
            }
        ),
        json!({"status": status, "challenges": shown}),
    );
    if status != 401 && challenges.is_empty() {
        steps.add(
            "issuer",
            format!("no 401 challenge: treating {url} as an issuer"),
            Value::Null,
        );
        return Ok(vec![url.as_str().trim_end_matches('/').to_owned()]);
    }
    let challenge_url = resource_metadata_from_challenges(&challenges)
        .map(Url::parse)
        .transpose()
        .map_err(|e| {
            CliError::new(
                crate::exit::code::OAUTH,
                format!("the challenge's resource_metadata is not a URL: {e}"),
            )
        })?;
    match discover_resource_metadata(transport, url, challenge_url.as_ref()).await? {
        Some(md) => {
            steps.add(
                "resource metadata",
                format!(
                    "resource {} served by {}; scopes {}; DPoP algs {}",
                    md.resource,
                    md.authorization_servers().join(" "),
                    list(&md.scopes_supported),
                    list(&md.dpop_signing_alg_values_supported)
                ),
                serde_json::to_value(&md).unwrap_or(Value::Null),
            );
            Ok(md.authorization_servers().to_vec())
        }
        None => {
            let origin = url.origin().ascii_serialization();
            steps.add(
                "resource metadata",
                format!("none (RFC 9728 well-known URLs answer 404): the origin {origin} is the authorization server (MCP 2025-03-26)"),
                Value::Null,
            );
            Ok(vec![origin])
        }
    }
}

/// The authorization server part: endpoints, grants, DPoP, PKCE, registration options.
fn server_steps(md: &ServerMetadata, steps: &mut Steps) {
    steps.add(
        "authorization server",
        format!(
            "{}: token {}, authorize {}, device {}",
            md.issuer,
            md.token_endpoint.as_deref().unwrap_or("-"),
            md.authorization_endpoint.as_deref().unwrap_or("-"),
            md.device_authorization_endpoint.as_deref().unwrap_or("-"),
        ),
        serde_json::to_value(md).unwrap_or(Value::Null),
    );
    steps.add(
        "capabilities",
        format!(
            "grants {}; auth methods {}; PKCE {}; DPoP algs {}",
            list(&md.grant_types_supported),
            list(&md.token_endpoint_auth_methods_supported),
            list(&md.code_challenge_methods_supported),
            list(&md.dpop_signing_alg_values_supported),
        ),
        Value::Null,
    );
    let mut options = vec!["pre-registered client id".to_owned()];
    if md.client_id_metadata_document_supported == Some(true) {
        options.push("client ID metadata document (`agent-oauth client-metadata`)".to_owned());
    }
    if let Some(r) = &md.registration_endpoint {
        options.push(format!(
            "dynamic registration at {r} (`agent-oauth register`)"
        ));
    }
    steps.add("registration", options.join("; "), json!(options));
}
