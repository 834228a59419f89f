//! A token's delegation chain (the nested `act` claims of RFC 8693 §4.1): verified against the
//! issuer's keys ([`verify_delegation_chain`], [`VerifiedChain`]), or read without any check
//! ([`unverified_delegation_chain`], for servers whose tokens the client cannot verify).

use serde_json::{Map, Value};

use crate::discovery::Jwks;
use crate::error::{Error, Result, VerificationError};
use crate::jose::{Validation, VerifiedJwt};
use crate::token::{AccessToken, Scope};

use super::*;

/// The claims of a JWT access token, decoded WITHOUT verifying its signature, issuer, audience
/// or expiry. Fine for display, audit and tests; never for an authorization decision.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedClaims(Map<String, Value>);

impl UnverifiedClaims {
    /// A claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// Who a token is for and who acts for them (RFC 8693 §4.1 `act`, §4.4 `may_act`), read from
/// [`UnverifiedClaims`]: nothing here is verified (see [`VerifiedChain`] for the verified
/// counterpart).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UnverifiedChain {
    /// `sub`: the party the token is about (the original subject).
    pub sub: Option<String>,
    /// The `act` chain, outermost first: `actors[0]` is the current actor, each next one the
    /// actor before it. An actor without `sub` is named by its `client_id`, else `""`.
    pub actors: Vec<String>,
    /// `may_act`, as sent.
    pub may_act: Option<Value>,
    /// `scope`.
    pub scope: Scope,
    /// `aud` (a single string becomes one element).
    pub aud: Vec<String>,
    /// `exp` (seconds since the epoch).
    pub exp: Option<i64>,
    /// `cnf.jkt`: the thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
    /// `client_id` (RFC 9068).
    pub client_id: Option<String>,
    /// Every claim.
    pub claims: UnverifiedClaims,
}

/// Decode a JWT access token's payload WITHOUT verification and read its delegation chain,
/// for display and audit with servers whose keys the client cannot get; for decisions use
/// [`verify_delegation_chain`]. `None` when the token is not a JWT with a JSON object
/// payload, or is over 64 KiB.
pub fn unverified_delegation_chain(token: &AccessToken) -> Option<UnverifiedChain> {
    let claims = crate::jwt::unverified_claims(token.secret()).ok()?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut actors = Vec::new();
    let mut act = claims.get("act");
    while let Some(Value::Object(a)) = act {
        if actors.len() >= MAX_ACT_DEPTH {
            break;
        }
        actors.push(
            text(a.get("sub"))
                .or_else(|| text(a.get("client_id")))
                .unwrap_or_default(),
        );
        act = a.get("act");
    }
    let aud = crate::jwt::audiences(&claims);
    Some(UnverifiedChain {
        sub: text(claims.get("sub")),
        actors,
        may_act: claims.get("may_act").cloned(),
        scope: claims
            .get("scope")
            .and_then(Value::as_str)
            .map(Scope::parse)
            .unwrap_or_default(),
        aud,
        exp: claims.get("exp").and_then(Value::as_i64),
        jkt: text(claims.get("cnf").and_then(|c| c.get("jkt"))),
        client_id: text(claims.get("client_id")),
        claims: UnverifiedClaims(claims),
    })
}

/// One actor of a [`VerifiedChain`]: an `act` claim (RFC 8693 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainActor {
    /// 1 for the current actor (the outermost `act`), 2 for the one before it, ...
    pub depth: usize,
    /// The actor's `sub`.
    pub sub: Option<String>,
    /// The actor's `client_id`.
    pub client_id: Option<String>,
    /// The actor's `iss`, when it names one.
    pub iss: Option<String>,
}

impl ChainActor {
    /// The actor's name: its `sub`, else its `client_id`, else `""`.
    pub fn name(&self) -> &str {
        self.sub
            .as_deref()
            .or(self.client_id.as_deref())
            .unwrap_or_default()
    }
}

/// Who a token is for and who acts for them, from claims whose signature, issuer and
/// validity were verified against the issuer's JWKS ([`verify_delegation_chain`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedChain {
    /// `iss`: the issuer the token was verified for.
    pub issuer: String,
    /// `sub`: the party the token is about (the original subject).
    pub sub: Option<String>,
    /// The `act` chain, outermost (current actor) first; its length is the [`depth`](Self::depth).
    pub actors: Vec<ChainActor>,
    /// `may_act` (RFC 8693 §4.4): who may act for the subject, as sent.
    pub may_act: Option<Value>,
    /// `scope`.
    pub scope: Scope,
    /// `aud` (a single string becomes one element).
    pub aud: Vec<String>,
    /// `exp` (seconds since the epoch).
    pub exp: i64,
    /// `cnf.jkt`: the thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
    /// `client_id` (RFC 9068).
    pub client_id: Option<String>,
    /// The verified token.
    pub jwt: VerifiedJwt,
}

impl VerifiedChain {
    /// How many actors the chain has (0: nobody acts for the subject).
    pub fn depth(&self) -> usize {
        self.actors.len()
    }

    /// The actors' names ([`ChainActor::name`]), outermost first.
    pub fn actor_names(&self) -> Vec<&str> {
        self.actors.iter().map(ChainActor::name).collect()
    }

    /// Does `may_act` name `party` (its `sub` or `client_id`)? `false` without `may_act`.
    pub fn may_act_names(&self, party: &str) -> bool {
        self.may_act.as_ref().is_some_and(|m| {
            ["sub", "client_id"]
                .iter()
                .any(|k| m.get(k).and_then(Value::as_str) == Some(party))
        })
    }

    /// Read the chain of a JWT already verified (with [`verify_jwt`](crate::jose::verify_jwt)
    /// or [`Jwks::verify`]).
    ///
    /// # Errors
    /// [`Error::Verification`] with [`VerificationError::InvalidClaim`] for claims of the
    /// wrong shape: an `act` that is not an object (or nests deeper than 32), `may_act` that
    /// is not an object, a non-string `sub`, `client_id`, `scope` or `cnf.jkt`.
    pub fn from_verified(jwt: VerifiedJwt) -> Result<Self> {
        let claims = jwt.claims();
        let bad = |why: String| Error::Verification(VerificationError::InvalidClaim(why));
        let text = |obj: &Map<String, Value>, name: &str, at: &str| -> Result<Option<String>> {
            match obj.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(format!("`{at}{name}` is not a string"))),
            }
        };
        let mut actors = Vec::new();
        let mut act = claims.get("act");
        while let Some(a) = act {
            let Value::Object(a) = a else {
                return Err(bad("`act` is not an object".into()));
            };
            if actors.len() >= MAX_ACT_DEPTH {
                return Err(bad(format!(
                    "the `act` chain nests deeper than {MAX_ACT_DEPTH}"
                )));
            }
            actors.push(ChainActor {
                depth: actors.len() + 1,
                sub: text(a, "sub", "act.")?,
                client_id: text(a, "client_id", "act.")?,
                iss: text(a, "iss", "act.")?,
            });
            act = a.get("act");
        }
        let may_act = match claims.get("may_act") {
            None => None,
            Some(m @ Value::Object(_)) => Some(m.clone()),
            Some(_) => return Err(bad("`may_act` is not an object".into())),
        };
        let jkt = match claims.get("cnf") {
            None => None,
            Some(Value::Object(c)) => text(c, "jkt", "cnf.")?,
            Some(_) => return Err(bad("`cnf` is not an object".into())),
        };
        Ok(VerifiedChain {
            issuer: text(claims, "iss", "")?.unwrap_or_default(),
            sub: text(claims, "sub", "")?,
            actors,
            may_act,
            scope: text(claims, "scope", "")?
                .map(|s| Scope::parse(&s))
                .unwrap_or_default(),
            aud: crate::jwt::audiences(claims),
            // Checked to be a number by the verification; fractions are cut.
            exp: claims
                .get("exp")
                .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
                .unwrap_or_default(),
            jkt,
            client_id: text(claims, "client_id", "")?,
            jwt,
        })
    }
}

/// Verify a JWT access token against its issuer's keys and read its delegation chain: the
/// signature (ES256, RS256, PS256 or EdDSA with a key of `jwks`, chosen by `kid`), `iss`
/// equal to `expected_issuer`, `exp`/`nbf`/`iat` with 60 seconds of skew. Use
/// [`verify_delegation_chain_with`] to check an audience or change the skew.
///
/// # Errors
/// [`Error::Verification`] naming what failed (also for an opaque token, which is not a
/// JWT); the errors of fetching the JWKS.
pub async fn verify_delegation_chain(
    token: &AccessToken,
    jwks: &Jwks,
    expected_issuer: &str,
) -> Result<VerifiedChain> {
    verify_delegation_chain_with(token, jwks, &Validation::new(expected_issuer)).await
}

/// As [`verify_delegation_chain`], with the claims checked against `validation`.
///
/// # Errors
/// As [`verify_delegation_chain`].
pub async fn verify_delegation_chain_with(
    token: &AccessToken,
    jwks: &Jwks,
    validation: &Validation,
) -> Result<VerifiedChain> {
    VerifiedChain::from_verified(jwks.verify(token.secret(), validation).await?)
}

#[cfg(test)]
mod tests;
