//! `agent-oauth register` (RFC 7591 dynamic client registration) and
//! `agent-oauth client-metadata` (a Client ID Metadata Document to host at the client id URL).

use std::path::PathBuf;

use agent_oauth::registration::{register, ClientMetadata};
use agent_oauth::{AuthorizationServer, HttpTransport, SecretString};
use serde_json::json;

use crate::exit::{CliError, CliResult};
use crate::keygen::write_private;

/// Client metadata flags shared by `register` and `client-metadata`.
#[derive(clap::Args, Debug)]
pub(crate) struct MetadataArgs {
    /// `client_name`.
    #[arg(long, default_value = "agent-oauth")]
    client_name: String,
    /// A redirect URI (repeatable; default `http://127.0.0.1/callback`, any port on loopback).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// A grant type (repeatable; default authorization_code and refresh_token).
    #[arg(long = "grant-type", value_name = "GRANT")]
    grant_types: Vec<String>,
    /// `token_endpoint_auth_method` (e.g. none, client_secret_basic, private_key_jwt).
    #[arg(long, value_name = "METHOD")]
    auth_method: Option<String>,
    /// Scope the client asks to be allowed.
    #[arg(long)]
    scope: Option<String>,
    /// `client_uri`.
    #[arg(long, value_name = "URL")]
    client_uri: Option<String>,
    /// `jwks`: a JSON file with the client's public keys, or one public JWK (as `keygen --json`
    /// prints it in `public_jwk`), for `private_key_jwt`.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
}

impl MetadataArgs {
    fn metadata(&self) -> CliResult<ClientMetadata> {
        let redirects = if self.redirect_uris.is_empty() {
            vec!["http://127.0.0.1/callback".to_owned()]
        } else {
            self.redirect_uris.clone()
        };
        let mut m = ClientMetadata::new(self.client_name.as_str()).redirect_uris(redirects);
        if !self.grant_types.is_empty() {
            m = m.grant_types(self.grant_types.clone());
        }
        if let Some(a) = &self.auth_method {
            m = m.token_endpoint_auth_method(a.as_str());
        }
        if let Some(s) = &self.scope {
            m = m.scope(s.as_str());
        }
        if let Some(u) = &self.client_uri {
            m = m.client_uri(u.as_str());
        }
        if let Some(path) = &self.jwks {
            let text = std::fs::read(path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
            let value: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| CliError::usage(format!("{} is not JSON: {e}", path.display())))?;
            let jwks = if value.get("keys").is_some() {
                value
            } else {
                json!({ "keys": [value] })
            };
            m = m.jwks(jwks);
        }
        Ok(m)
    }
}

/// Arguments of `register`.
#[derive(clap::Args, Debug)]
pub(crate) struct RegisterArgs {
    /// Authorization server issuer URL (its metadata names the registration endpoint).
    #[arg(long, env = "AGENT_OAUTH_ISSUER")]
    issuer: String,
    #[command(flatten)]
    metadata: MetadataArgs,
    /// Read an initial access token (RFC 7591 §3) from FILE.
    #[arg(long, value_name = "FILE")]
    initial_access_token_file: Option<PathBuf>,
    /// Write an issued client secret to FILE (mode 0600); it is never printed.
    #[arg(long, value_name = "FILE")]
    secret_out: Option<PathBuf>,
    /// Print the registration as JSON (without secrets).
    #[arg(long)]
    json: bool,
}

/// Register and print the client id (a secret goes to --secret-out only).
pub(crate) async fn run_register(args: RegisterArgs) -> CliResult {
    let transport = HttpTransport::new()?;
    let server = AuthorizationServer::new(&args.issuer, transport.clone())?;
    let metadata = server.metadata().await?;
    let Some(endpoint) = metadata.registration_endpoint.as_deref() else {
        return Err(CliError::new(
            crate::exit::code::OAUTH,
            format!(
                "{} offers no dynamic registration (no registration_endpoint)",
                args.issuer
            ),
        )
        .hint("register the client with the server's administrator, then pass --client-id"));
    };
    let initial = match &args.initial_access_token_file {
        Some(p) => Some(SecretString::new(
            std::fs::read_to_string(p)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", p.display())))?
                .trim(),
        )),
        None => None,
    };
    let registration = register(
        &transport,
        endpoint,
        &args.metadata.metadata()?,
        initial.as_ref(),
    )
    .await?;
    if registration.client_secret.is_some() && args.secret_out.is_none() {
        return Err(CliError::usage(format!(
            "the server issued a client secret for {} but there is no --secret-out FILE to keep it in",
            registration.client_id
        ))
        .hint("run again with --secret-out FILE (the secret is never printed)"));
    }
    if let (Some(secret), Some(path)) = (&registration.client_secret, &args.secret_out) {
        write_private(path, secret.expose_secret())?;
    }
    if args.json {
        println!(
            "{}",
            json!({
                "client_id": registration.client_id,
                "token_endpoint_auth_method": registration.token_endpoint_auth_method,
                "client_secret_file": args.secret_out.as_ref().filter(|_| registration.client_secret.is_some()).map(|p| p.display().to_string()),
                "redirect_uris": registration.metadata.redirect_uris,
                "grant_types": registration.metadata.grant_types,
            })
        );
    } else {
        println!("client_id:   {}", registration.client_id);
        println!("auth method: {}", registration.token_endpoint_auth_method);
        if let (Some(_), Some(p)) = (&registration.client_secret, &args.secret_out) {
            println!("secret:      written to {}", p.display());
        }
    }
    Ok(())
}

/// Arguments of `client-metadata`.
#[derive(clap::Args, Debug)]
pub(crate) struct ClientMetadataArgs {
    /// The HTTPS URL the document is served at: it is the client id.
    #[arg(long, value_name = "URL")]
    client_id: String,
    #[command(flatten)]
    metadata: MetadataArgs,
}

/// Render the document to stdout.
pub(crate) fn run_client_metadata(args: ClientMetadataArgs) -> CliResult {
    let document = args
        .metadata
        .metadata()?
        .client_id_metadata_document(&args.client_id)?;
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| CliError::failure(format!("cannot encode the document: {e}")))?;
    println!("{text}");
    Ok(())
}
