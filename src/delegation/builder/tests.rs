//! The narrowing rules, table by table: no IO, a fixed `now`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

use super::*;
use crate::discovery::resource_matches;
use crate::token::{AccessToken, TokenType};

const V1: &str = "https://api.example/v1";
const ADMIN: &str = "https://api.example/v1/admin";
const OTHER: &str = "https://other.example";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("url")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The agent resource covering `target`, as `Agent::resource_for` picks it: the most specific.
fn covering(parent: &[&str], target: &Url) -> Option<Url> {
    parent
        .iter()
        .map(|r| url(r))
        .filter(|r| resource_matches(r, target))
        .max_by_key(|r| r.path().len())
}

fn request<'a>(resources: &'a [String], audiences: &'a [String]) -> Request<'a> {
    Request {
        scope: None,
        resources,
        audiences,
        lifetime: None,
        params: &[],
    }
}

fn agent_targets(parent: &[&str], req: &Request<'_>) -> Result<Targets> {
    let view = ParentView::Agent {
        resources: strings(parent),
        covering: Box::new(|u| covering(parent, u)),
    };
    targets(&view, req)
}

fn child_targets(parent: &[&str], req: &Request<'_>) -> Result<Targets> {
    let view = ParentView::Child {
        resources: strings(parent),
        covers: Box::new(|u| parent.iter().any(|r| resource_matches(&url(r), u))),
    };
    targets(&view, req)
}

/// `Ok(resources, parent resource)`, or the error's kind and a piece of its message.
type Want =
    std::result::Result<(Vec<&'static str>, Option<&'static str>), (&'static str, &'static str)>;

fn check(name: &str, got: Result<Targets>, want: Want) {
    match (got, want) {
        (Ok(t), Ok((resources, parent))) => {
            let got: Vec<String> = t.resources.iter().map(Url::to_string).collect();
            let want: Vec<String> = resources.iter().map(|r| url(r).to_string()).collect();
            assert_eq!(got, want, "{name}");
            assert_eq!(
                t.parent_resource.map(|i| i.to_string()),
                parent.map(|p| url(p).to_string()),
                "{name}"
            );
        }
        (Err(e), Err((kind, text))) => {
            let k = match &e {
                Error::Delegation(_) => "delegation",
                Error::Config { .. } => "config",
                _ => "other",
            };
            assert_eq!(k, kind, "{name}: {e:?}");
            assert!(e.to_string().contains(text), "{name}: {e}");
        }
        (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn narrow_resources_under_an_agent_parent() {
    let three = [V1, ADMIN, OTHER];
    let cases: &[(&str, &[&str], &[&str], Want)] = &[
        (
            "default: the only resource",
            &[V1],
            &[],
            Ok((vec![V1], Some(V1))),
        ),
        (
            "default: several resources must be named",
            &three,
            &[],
            Err(("delegation", "has 3 resources")),
        ),
        (
            "equal to a parent resource",
            &three,
            &[V1],
            Ok((vec![V1], Some(V1))),
        ),
        (
            "under a parent resource",
            &three,
            &["https://api.example/v1/invoices"],
            Ok((vec!["https://api.example/v1/invoices"], Some(V1))),
        ),
        (
            "the most specific parent resource is exchanged",
            &three,
            &["https://api.example/v1/admin/users"],
            Ok((vec!["https://api.example/v1/admin/users"], Some(ADMIN))),
        ),
        (
            "several under one parent resource",
            &three,
            &["https://other.example/a", "https://other.example/b"],
            Ok((
                vec!["https://other.example/a", "https://other.example/b"],
                Some(OTHER),
            )),
        ),
        (
            "outside every parent resource",
            &three,
            &["https://api.example/v2"],
            Err(("delegation", "not covered by any of the parent's resources")),
        ),
        (
            "a sibling path is outside",
            &[V1],
            &["https://api.example/v10"],
            Err(("delegation", "not covered")),
        ),
        (
            "another origin is outside",
            &[V1],
            &["http://api.example/v1"],
            Err(("delegation", "not covered")),
        ),
        (
            "under two parent resources",
            &three,
            &["https://api.example/v1/x", "https://other.example/y"],
            Err((
                "delegation",
                "one child token is exchanged from one parent token",
            )),
        ),
        (
            "a relative resource",
            &three,
            &["/v1/x"],
            Err(("config", "not an absolute URL")),
        ),
        (
            "a resource with a fragment",
            &three,
            &["https://api.example/v1#f"],
            Err(("config", "fragment")),
        ),
    ];
    for (name, parent, resources, want) in cases {
        let resources = strings(resources);
        check(
            name,
            agent_targets(parent, &request(&resources, &[])),
            want.clone(),
        );
    }
}

#[test]
fn narrow_audiences_are_covered_like_resources() {
    let cases: &[(&str, &[&str], Want)] = &[
        (
            "an audience under the same parent resource",
            &["https://api.example/v1/aud"],
            Ok((vec!["https://api.example/v1/x"], Some(V1))),
        ),
        (
            "an audience outside",
            &["https://evil.example/"],
            Err(("delegation", "not covered")),
        ),
        (
            "an absolute URI that is not a resource",
            &["urn:example:aud"],
            Err(("delegation", "not covered")),
        ),
        (
            "not a URI",
            &["just words"],
            Err(("delegation", "is not an absolute URI")),
        ),
        (
            "an audience under another parent resource",
            &["https://other.example/aud"],
            Err(("delegation", "lies under parent resource")),
        ),
    ];
    let resources = strings(&["https://api.example/v1/x"]);
    for (name, audiences, want) in cases {
        let audiences = strings(audiences);
        let got = agent_targets(&[V1, OTHER], &request(&resources, &audiences));
        check(name, got, want.clone());
    }
}

#[test]
fn narrow_resources_under_a_child_parent() {
    let child = ["https://api.example/v1/invoices"];
    let cases: &[(&str, &[&str], Want)] = &[
        (
            "default: all of the child's",
            &[],
            Ok((vec!["https://api.example/v1/invoices"], None)),
        ),
        (
            "under the child's resource",
            &["https://api.example/v1/invoices/42"],
            Ok((vec!["https://api.example/v1/invoices/42"], None)),
        ),
        (
            "wider than the child",
            &[V1],
            Err(("delegation", "not covered by the parent child's resources")),
        ),
        (
            "beside the child",
            &["https://api.example/v1/payments"],
            Err(("delegation", "parent child's")),
        ),
    ];
    for (name, resources, want) in cases {
        let resources = strings(resources);
        check(
            name,
            child_targets(&child, &request(&resources, &[])),
            want.clone(),
        );
    }
}

#[test]
fn narrow_request_rules_come_first() {
    let resources = strings(&["https://api.example/v2"]);
    let v1 = strings(&[V1]);
    let lifetimes: &[(Option<Duration>, bool)] = &[
        (None, true),
        (Some(Duration::ZERO), false),
        (Some(Duration::from_millis(999)), false),
        (Some(Duration::from_secs(1)), true),
        (Some(Duration::MAX), true),
    ];
    for (lifetime, ok) in lifetimes {
        let req = Request {
            lifetime: *lifetime,
            ..request(&v1, &[])
        };
        let got = agent_targets(&[V1], &req);
        assert_eq!(got.is_ok(), *ok, "{lifetime:?}: {got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains("at least one second"), "{e}");
        }
    }
    for (name, ok) in [
        ("task_id", true),
        ("scope", false),
        ("subject_token", false),
    ] {
        let params = [(name.to_owned(), "x".to_owned())];
        let req = Request {
            params: &params,
            ..request(&v1, &[])
        };
        let got = agent_targets(&[V1], &req);
        assert_eq!(got.is_ok(), ok, "{name}: {got:?}");
    }
    // A reserved parameter is refused before the (uncovered) resource is looked at.
    let params = [("resource".to_owned(), "x".to_owned())];
    let req = Request {
        params: &params,
        ..request(&resources, &[])
    };
    let e = agent_targets(&[V1], &req).expect_err("reserved");
    assert!(e.to_string().contains("cannot be set with param()"), "{e}");
}

fn parent_token(scope: &str, expires_at: Option<SystemTime>) -> TokenSet {
    let mut t = TokenSet::new(
        AccessToken::new("parent"),
        TokenType::Bearer,
        now() - Duration::from_secs(60),
    );
    t.scope = Scope::parse(scope);
    t.expires_at = expires_at;
    t
}

fn some_targets() -> Targets {
    Targets {
        resources: vec![url(V1)],
        audiences: vec![url("https://api.example/v1/aud")],
        parent_resource: None,
    }
}

#[test]
fn narrow_scope_is_a_subset_of_the_parent_token() {
    let cases: &[(&str, Option<&str>, std::result::Result<&str, &str>)] = &[
        ("a b", None, Ok("a b")),
        ("a b", Some("a"), Ok("a")),
        ("a b", Some("b a"), Ok("a b")),
        ("a b", Some("b a a"), Ok("a b")),
        ("a b", Some(""), Ok("")),
        ("a b", Some("a c"), Err("not granted: c")),
        ("a b", Some("a b c d"), Err("not granted: c d")),
        ("", Some("a"), Err("widens the parent's scope ``")),
        ("", None, Ok("")),
    ];
    let expiry = Some(now() + Duration::from_secs(60));
    for (parent, requested, want) in cases {
        let requested = requested.map(Scope::parse);
        let got = narrow(
            some_targets(),
            &parent_token(parent, expiry),
            requested.as_ref(),
            now(),
        );
        match (got, want) {
            (Ok(n), Ok(scope)) => {
                assert_eq!(n.scope, Scope::parse(scope), "{parent} / {requested:?}");
                assert_eq!(n.resources, [url(V1)]);
                assert_eq!(n.audiences, [url("https://api.example/v1/aud")]);
            }
            (Err(Error::Delegation(m)), Err(text)) => assert!(m.contains(text), "{m}"),
            (got, want) => panic!("{parent} / {requested:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn narrow_refuses_an_expired_parent_token() {
    let cases: &[(Option<SystemTime>, bool)] = &[
        (None, true),
        (Some(now() + Duration::from_secs(1)), true),
        (Some(now()), false),
        (Some(now() - Duration::from_secs(1)), false),
        (Some(UNIX_EPOCH), false),
    ];
    for (expires_at, ok) in cases {
        let got = narrow(some_targets(), &parent_token("a", *expires_at), None, now());
        assert_eq!(got.is_ok(), *ok, "{expires_at:?}: {got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains("expired"), "{e}");
        }
    }
    // A wider scope is reported before the expiry.
    let wide = Scope::parse("b");
    let e = narrow(
        some_targets(),
        &parent_token("a", Some(now())),
        Some(&wide),
        now(),
    )
    .expect_err("wider");
    assert!(e.to_string().contains("widens"), "{e}");
}

#[test]
fn narrow_lifetime_is_capped_by_the_parent() {
    let s = Duration::from_secs;
    let cases: &[(Option<Duration>, Option<Duration>, Option<Duration>)] = &[
        (None, None, None),
        (None, Some(s(60)), Some(s(60))),
        (Some(s(10)), None, Some(s(10))),
        (Some(s(10)), Some(s(60)), Some(s(10))),
        (Some(s(60)), Some(s(60)), Some(s(60))),
        (Some(s(600)), Some(s(60)), Some(s(60))),
        (Some(Duration::MAX), Some(s(60)), Some(s(60))),
        (Some(Duration::MAX), None, Some(Duration::MAX)),
        (Some(s(60)), Some(Duration::ZERO), Some(Duration::ZERO)),
    ];
    for (requested, remaining, want) in cases {
        assert_eq!(
            lifetime_cap(*requested, *remaining),
            *want,
            "{requested:?} / {remaining:?}"
        );
    }
}

#[test]
fn narrow_child_expiry_is_the_earliest_bound() {
    let at = now();
    let plus = |secs| Some(at + Duration::from_secs(secs));
    let s = Duration::from_secs;
    type At = Option<SystemTime>;
    // (server's expiry, requested lifetime, parent's expiry) -> child's expiry
    let cases: &[(At, Option<Duration>, At, At)] = &[
        (None, None, None, None),
        (plus(300), None, None, plus(300)),
        (plus(300), Some(s(60)), None, plus(60)),
        (plus(30), Some(s(60)), None, plus(30)),
        (plus(300), Some(s(60)), plus(10), plus(10)),
        (None, None, plus(10), plus(10)),
        (None, Some(s(60)), None, plus(60)),
        // A lifetime too long to add caps nothing (and does not panic).
        (None, Some(Duration::MAX), None, None),
        (plus(300), Some(Duration::MAX), None, plus(300)),
        (None, Some(Duration::MAX), plus(10), plus(10)),
        // A parent without expiry leaves the other bounds.
        (plus(300), Some(s(600)), None, plus(300)),
    ];
    for (server, lifetime, parent, want) in cases {
        assert_eq!(
            capped_expiry(*server, at, *lifetime, *parent),
            *want,
            "{server:?} / {lifetime:?} / {parent:?}"
        );
    }
}
