//! `agent-oauth keygen`: a P-256 key as PKCS#8 PEM and its RFC 7638 thumbprint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use agent_oauth::DpopKey;

use crate::exit::{CliError, CliResult};

/// Arguments of `keygen`.
#[derive(clap::Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Write the private key to FILE (mode 0600) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the thumbprint and public JWK as JSON (the key still goes to --out or stdout).
    #[arg(long)]
    json: bool,
}

/// Create a key, write it, show its thumbprint.
pub(crate) fn run(args: KeygenArgs) -> CliResult {
    let key = DpopKey::generate();
    let pem = key.to_pkcs8_pem()?;
    let public: serde_json::Value = serde_json::from_str(&key.public_jwk().to_json())
        .map_err(|e| CliError::failure(format!("cannot encode the public key: {e}")))?;
    let summary = serde_json::json!({
        "thumbprint": key.thumbprint(),
        "public_jwk": public,
        "file": args.out.as_ref().map(|p| p.display().to_string()),
    });
    match &args.out {
        Some(path) => {
            write_private(path, pem.expose_secret())?;
            if args.json {
                println!("{summary}");
            } else {
                println!("wrote {} (PKCS#8 PEM, P-256)", path.display());
                println!("thumbprint (jkt): {}", key.thumbprint());
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(pem.expose_secret().as_bytes());
            let _ = out.flush();
            if args.json {
                eprintln!("{summary}");
            } else {
                eprintln!("thumbprint (jkt): {}", key.thumbprint());
            }
        }
    }
    Ok(())
}

/// Write a private file: parent directories created (0700), the file created new with mode
/// 0600 (an existing file is refused, so a key is never overwritten by accident).
pub(crate) fn write_private(path: &Path, contents: &str) -> CliResult {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut dirs = fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
        dirs.create(parent)
            .map_err(|e| CliError::failure(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        let err = CliError::failure(format!("cannot create {}: {e}", path.display()));
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            err.hint("the file exists; choose another --out or remove it first")
        } else {
            err
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))
}
