use agent_oauth::{Error, OAuthError, OAuthErrorCode};

use super::*;

fn oauth(code: OAuthErrorCode) -> Error {
    Error::OAuth(Box::new(OAuthError::new(code, 400)))
}

#[test]
fn cli_exit_code_of_each_error_class() {
    assert_eq!(code_of(&Error::Config("x".into())), code::USAGE);
    assert_eq!(
        code_of(&Error::InsecureUrl {
            url: "http://a".into(),
            reason: "r"
        }),
        code::USAGE
    );
    assert_eq!(
        code_of(&Error::Timeout(std::time::Duration::from_secs(1))),
        code::HTTP
    );
    assert_eq!(
        code_of(&Error::Http {
            status: 500,
            body: String::new(),
            retry_after: None,
            context: None
        }),
        code::HTTP
    );
    assert_eq!(code_of(&oauth(OAuthErrorCode::InvalidClient)), code::OAUTH);
    assert_eq!(code_of(&oauth(OAuthErrorCode::AccessDenied)), code::OAUTH);
    assert_eq!(
        code_of(&oauth(OAuthErrorCode::InsufficientScope)),
        code::USER_ACTION
    );
    assert_eq!(
        code_of(&Error::ReauthorizationRequired("x".into())),
        code::USER_ACTION
    );
    assert_eq!(code_of(&Error::Discovery("x".into())), code::OAUTH);
    assert_eq!(code_of(&Error::InvalidResponse("x".into())), code::OAUTH);
    assert_eq!(code_of(&Error::Store("x".into())), code::FAILURE);
    assert_eq!(code_of(&Error::Crypto("x".into())), code::FAILURE);
    let unreachable = Error::ResourceDiscovery {
        reason: Box::new(Error::Timeout(std::time::Duration::from_secs(1))),
        challenges: Vec::new(),
    };
    assert_eq!(code_of(&unreachable), code::HTTP);
    let refused = Error::ResourceDiscovery {
        reason: Box::new(Error::Discovery("other issuer".into())),
        challenges: Vec::new(),
    };
    assert_eq!(code_of(&refused), code::OAUTH);
}

#[test]
fn cli_errors_are_one_line_plus_a_hint() {
    let e = CliError::from(Error::Discovery("line one\nline two\r\n\tthree".into()));
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert_eq!(lines[0], "error: discovery failed: line one line two three");
    assert!(lines[1].starts_with("hint: "), "{shown}");
    let plain = CliError::usage("no issuer given");
    assert_eq!(plain.to_string(), "error: no issuer given");
    assert_eq!(plain.code, code::USAGE);
}
