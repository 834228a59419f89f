//! `agent-oauth inspect`: decode a JWT access token (header, claims, `cnf`, the nested `act`
//! chain, expiry in local time) or a DPoP proof. With `--issuer`, an access token is verified
//! against the issuer's JWKS (signature, `iss`, expiry) and the `act` chain shown is the
//! verified one; without it nothing is verified, and the output says so.

use agent_oauth::delegation::{unverified_delegation_chain, verify_delegation_chain};
use agent_oauth::discovery::Jwks;
use agent_oauth::jose::PublicJwk;
use agent_oauth::AccessToken;
use agent_oauth::{AuthorizationServer, HttpTransport};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::exit::{CliError, CliResult};
use crate::profile::read_token_source;
use crate::show::{local_time_of_epoch, relative};

/// Largest token accepted.
const MAX_TOKEN: usize = 64 * 1024;

/// Arguments of `inspect`.
#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// Where the token is: `-` (stdin, the default) or `@FILE`. Tokens are not taken as
    /// arguments: process lists show them.
    #[arg(default_value = "-", value_name = "-|@FILE")]
    source: String,
    /// Print the decoded parts as JSON.
    #[arg(long)]
    json: bool,
    /// Verify the access token against this issuer's JWKS (from its metadata's `jwks_uri`): the
    /// signature (never `none` or HMAC), `iss`, `exp` and `nbf`. A token that does not verify
    /// is an error.
    #[arg(long, value_name = "ISSUER")]
    issuer: Option<String>,
}

fn decode_part(part: &str, what: &str) -> CliResult<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| CliError::usage(format!("the JWT {what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(CliError::usage(format!(
            "the JWT {what} is not a JSON object"
        ))),
    }
}

/// Decode `token` into its header and claims.
fn decode(token: &str) -> CliResult<(Map<String, Value>, Map<String, Value>)> {
    if token.len() > MAX_TOKEN {
        return Err(CliError::usage(format!(
            "the token is over {MAX_TOKEN} bytes"
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [h, p, _sig] => Ok((decode_part(h, "header")?, decode_part(p, "payload")?)),
        [_, _, _, _, _] => Err(CliError::usage(
            "the token is an encrypted JWT (JWE): only its issuer can read it",
        )),
        _ => Err(
            CliError::usage("not a JWT (expected three dot-separated parts)")
                .hint("opaque tokens can only be read by their issuer (token introspection)"),
        ),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `exp`/`iat`/`nbf` in local time, when numeric.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    let secs = claims.get(name)?.as_i64()?;
    let local = local_time_of_epoch(secs)?;
    let t = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(u64::try_from(secs).ok()?))?;
    Some(if name == "exp" {
        format!("{local} ({})", relative(t))
    } else {
        local
    })
}

/// Decode and print.
pub(crate) async fn run(args: InspectArgs) -> CliResult {
    let token = read_token_source(&args.source)?;
    let (header, claims) = decode(&token)?;
    let is_proof = header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"));
    if is_proof {
        return show_proof(&header, &claims, args.json);
    }
    let verified = match &args.issuer {
        Some(issuer) => Some(verify(&token, issuer).await?),
        None => None,
    };
    let actors = match &verified {
        Some(chain) => chain.actor_names().into_iter().map(str::to_owned).collect(),
        None => unverified_delegation_chain(&AccessToken::new(token.clone()))
            .map(|c| c.actors)
            .unwrap_or_default(),
    };
    let cnf = claims.get("cnf").cloned();
    if args.json {
        let out = json!({
            "kind": "jwt",
            "verified": verified.is_some(),
            "verified_issuer": verified.as_ref().map(|c| c.issuer.clone()),
            "header": header,
            "claims": claims,
            "cnf": cnf,
            "act_chain": actors,
            "exp_local": time_claim(&claims, "exp"),
        });
        println!("{out}");
        return Ok(());
    }
    match &verified {
        Some(c) => println!("JWT (signature verified with the JWKS of {})", c.issuer),
        None => println!("JWT (signature NOT verified)"),
    }
    println!(
        "header:    alg={} typ={} kid={}",
        text(header.get("alg")),
        text(header.get("typ")),
        text(header.get("kid"))
    );
    println!("issuer:    {}", text(claims.get("iss")));
    println!("subject:   {}", text(claims.get("sub")));
    println!("audience:  {}", text(claims.get("aud")));
    println!("client_id: {}", text(claims.get("client_id")));
    println!("scope:     {}", text(claims.get("scope")));
    if let Some(t) = time_claim(&claims, "iat") {
        println!("issued:    {t}");
    }
    match time_claim(&claims, "exp") {
        Some(t) => println!("expires:   {t}"),
        None => println!("expires:   (no exp)"),
    }
    match cnf.as_ref().and_then(Value::as_object) {
        Some(c) => {
            if let Some(jkt) = c.get("jkt") {
                println!("cnf:       DPoP jkt={}", text(Some(jkt)));
            }
            if let Some(x5t) = c.get("x5t#S256") {
                println!("cnf:       mTLS x5t#S256={}", text(Some(x5t)));
            }
        }
        None => println!("cnf:       none (bearer token)"),
    }
    if actors.is_empty() {
        println!("act:       none (not delegated)");
    } else {
        println!("act chain: {} actor(s), current first", actors.len());
        for (depth, actor) in actors.iter().enumerate() {
            println!("  {}. {actor}", depth + 1);
        }
        println!("  acting for: {}", text(claims.get("sub")));
    }
    println!("claims:    {}", Value::Object(claims));
    Ok(())
}

/// Verify `token` against the JWKS of `issuer`.
async fn verify(token: &str, issuer: &str) -> CliResult<agent_oauth::delegation::VerifiedChain> {
    let server = AuthorizationServer::new(issuer, HttpTransport::new()?)?;
    let jwks = Jwks::new(server);
    verify_delegation_chain(&AccessToken::new(token.to_owned()), &jwks, issuer)
        .await
        .map_err(|e| {
            CliError::from(e).hint("the token is not a valid JWT of that issuer: do not trust it")
        })
}

/// A DPoP proof (RFC 9449 §4.2): method, URL, time, key thumbprint, `ath`, nonce.
fn show_proof(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    as_json: bool,
) -> CliResult {
    let jkt = header
        .get("jwk")
        .and_then(|j| PublicJwk::from_json(j).ok())
        .map(|k| k.thumbprint());
    if as_json {
        let out = json!({
            "kind": "dpop_proof",
            "verified": false,
            "header": header,
            "claims": claims,
            "jkt": jkt,
            "iat_local": time_claim(claims, "iat"),
        });
        println!("{out}");
        return Ok(());
    }
    println!("DPoP proof (signature NOT verified)");
    println!("alg:   {}", text(header.get("alg")));
    println!(
        "jkt:   {}",
        jkt.as_deref()
            .unwrap_or("(no usable public key in the header)")
    );
    println!("htm:   {}", text(claims.get("htm")));
    println!("htu:   {}", text(claims.get("htu")));
    println!(
        "iat:   {}",
        time_claim(claims, "iat").unwrap_or_else(|| "-".to_owned())
    );
    println!("jti:   {}", text(claims.get("jti")));
    println!("ath:   {}", text(claims.get("ath")));
    println!("nonce: {}", text(claims.get("nonce")));
    Ok(())
}
