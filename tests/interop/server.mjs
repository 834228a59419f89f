// Real authorization server for the agent-oauth interoperability tests.
//
// Usage: node server.mjs <config.json>
//
// Starts oidc-provider 9.x on 127.0.0.1 with an ephemeral port and prints
//
//     RESOURCE <origin>/api     (only when "resource_server" is true)
//     READY <origin>            (always last; the origin is the real issuer)
//
// on stdout, then logs errors to stderr. The process exits when its stdin
// reaches EOF (so a dead parent never leaves it running), on SIGTERM and on
// SIGINT.
//
// Config JSON (every field optional):
//   clients              oidc-provider client metadata objects, passed through.
//   scopes               extra (non-resource) scopes the AS knows, besides
//                        openid and offline_access.
//   resource_indicators  resource URLs the AS issues tokens for. "{origin}"
//                        inside a value is replaced by the server origin. With
//                        "resource_server" the built-in "<origin>/api" is
//                        always added.
//   resource_scopes      scopes of every resource server (string or array,
//                        default "read write").
//   default_resource     resource used when a request names none (default:
//                        none, so such tokens are opaque).
//   access_token_ttl     seconds (default 3600), also used for client
//                        credentials tokens and exchanged tokens.
//   refresh_token_ttl    seconds (default 86400). Refresh tokens always rotate;
//                        presenting an already rotated refresh token revokes
//                        the whole grant (every token of the grant).
//   dpop_nonce           true: the token and userinfo endpoints demand a
//                        server-provided DPoP nonce.
//   tls                  {cert, key, ca} PEM file paths: serve HTTPS, ask for a
//                        client certificate (never reject on it) and enable
//                        RFC 8705 (tls_client_auth, self_signed_tls_client_auth,
//                        certificate-bound tokens, mtls_endpoint_aliases).
//   issuer_override      issuer value advertised by the discovery documents
//                        (only there) instead of the real one: a mix-up AS.
//   token_exchange       true: RFC 8693 token exchange grant (see below).
//   registration         true: Dynamic Client Registration (RFC 7591) at
//                        <origin>/reg, advertised as registration_endpoint, open
//                        to anyone; or {"initial_access_token": "..."}: the
//                        same, requiring that Bearer token (RFC 7591 §3).
//   resource_server      true: protected resource at <origin>/api (see below).
//   resource_nonce       true: the resource server demands a DPoP nonce.
//   dpop_bound_access_tokens_required
//                        true: the resource server refuses Bearer tokens and
//                        says so in its RFC 9728 metadata.
//   may_act              {"<client_id>": <object>}: every access token issued to that
//                        client (JWT access tokens and exchanged tokens) carries
//                        may_act: <object> (RFC 8693 section 4.4).
//   verbose              true: log every grant/interaction error to stderr.
//   dev_interactions     true: serve oidc-provider's own login and consent pages
//                        (devInteractions: any login name with any password, then
//                        a "Continue" consent button) instead of the headless
//                        login below, for tests that drive a real browser.
//
// Test endpoints: GET /test/refresh-stats answers {presentations, distinct, reused,
// revoked_grants}: refresh tokens presented at the token endpoint (in total, distinct, and
// how many were presented more than once) and grants revoked.
//
// Headless login (authorization code flow without a browser):
//   The authorization endpoint redirects to GET /interaction/<uid>. That
//   handler logs in account "agent-user" (or the login_hint of the request)
//   without any page, and on the following consent interaction grants every
//   requested scope, resource and claim, then 303-redirects back to the
//   authorization endpoint, which redirects to redirect_uri?code=...
//   A client that follows redirects and replays the cookies it is given (the
//   _interaction / _interaction_resume / _session cookies, all HttpOnly, path
//   scoped) ends at the redirect_uri.
//
// Headless device flow:
//   POST /test/approve-device with JSON or form body {"user_code": "..."}
//   (optionally "account") approves the pending device authorization for
//   "agent-user" with every requested scope and resource: 200
//   {"approved":true}; 404 {"error":"not_found"} for an unknown code.
//   POST /test/deny-device does the same but denies (access_denied).
//
// Token exchange (token_exchange: true):
//   grant_type urn:ietf:params:oauth:grant-type:token-exchange with
//   subject_token (an access token of this AS: opaque tokens are looked up,
//   JWT ones verified with the AS keys), subject_token_type
//   urn:ietf:params:oauth:token-type:access_token (or :jwt), optional scope
//   (must be a subset of the subject token scope, else invalid_scope),
//   resource / audience (each must be a configured resource indicator, else
//   invalid_target), actor_token + actor_token_type (issued token carries
//   act: {sub: <actor sub or client_id>, act: <subject act>}), DPoP header
//   (token is bound: cnf.jkt, token_type DPoP). The issued token is a JWT
//   (typ at+jwt) signed directly by this script with the AS's ES256 key, not
//   an oidc-provider model; it is therefore not introspectable or revocable.
//
// JWT bearer grant (jwt_bearer: {"trusted": [{"issuer": "...", "jwks": {"keys": [...]}}]}):
//   grant_type urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523) with
//   assertion: a JWT of a trusted issuer (signature checked with its JWKS,
//   aud this issuer or its token endpoint, exp in the future, sub present).
//   An ID-JAG (header typ oauth-id-jag+jwt) must name the authenticated client
//   in client_id; its resource claim becomes the token's audience, and the
//   requested scope must be within its scope. Optional scope, resource, DPoP as
//   for token exchange. Issued tokens are JWTs (at+jwt) like exchanged ones.
//   Every successful grant counts in GET /test/counters.
//
// ID-JAG issuance (id_jag: true, with token_exchange: true): token exchange
//   with requested_token_type urn:ietf:params:oauth:token-type:id-jag and an
//   ID token of this provider (subject_token_type ...:id_token, aud the
//   requesting client), audience (the target AS issuer) and resource: answers
//   an ID-JAG (typ oauth-id-jag+jwt; iss, sub, aud, resource, client_id, scope,
//   jti, iat, exp), token_type N_A. Counted in GET /test/counters.
//
// Protected resource (resource_server: true):
//   ANY /api/...                 JSON {ok, sub, scope, client_id, act, cnf,
//                                aud} for a valid JWT access token of this AS
//                                with aud <origin>/api. /api/require/<scope>
//                                additionally demands <scope> (403
//                                insufficient_scope). 401 with WWW-Authenticate
//                                Bearer resource_metadata="..." without token.
//   GET /.well-known/oauth-protected-resource/api   RFC 9728 metadata.
//   DPoP-bound tokens (cnf.jkt) need the DPoP scheme and a full proof (typ,
//   ES256, htm, htu, iat within 60 s, jti replay, ath, key thumbprint); with
//   resource_nonce a nonce from a DPoP-Nonce header as well. mTLS-bound tokens
//   (cnf.x5t#S256) need the same client certificate on the connection.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as querystring from 'node:querystring';

import Provider, { errors } from 'oidc-provider';
// Internal helpers of oidc-provider (its package has no "exports" map); the
// version is pinned by package-lock.json. Used by the token exchange grant so
// DPoP proofs are validated exactly like the built-in grants do.
import validateDpop, { checkDpopReplay } from 'oidc-provider/lib/helpers/validate_dpop.js';
import { normalize as normalizeUserCode } from 'oidc-provider/lib/helpers/user_codes.js';
import * as jose from 'jose';

const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const DEFAULT_ACCOUNT = 'agent-user';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ID_JAG_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const counters = { jwt_bearer: 0, id_jag: 0 };

function fail(message) {
  process.stderr.write(`server.mjs: ${message}\n`);
  process.exit(1);
}

if (!process.argv[2]) fail('usage: node server.mjs <config.json>');
let cfg;
try {
  cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
} catch (err) {
  fail(`cannot read config: ${err.message}`);
}

const epoch = () => Math.floor(Date.now() / 1000);
const list = (v) => {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  return String(v).split(' ').filter(Boolean);
};

// ---------------------------------------------------------------- lifecycle

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

// ---------------------------------------------------------------- keys

function keyPair(kind, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(kind, options);
  const jwk = privateKey.export({ format: 'jwk' });
  const pub = crypto.createPublicKey(privateKey).export({ format: 'jwk' });
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  return {
    privateKey,
    jwk: { ...jwk, kid, alg, use: 'sig' },
    publicJwk: { ...pub, kid, alg, use: 'sig' },
  };
}

const es256 = keyPair('ec', { namedCurve: 'P-256' }, 'ES256');
const rs256 = keyPair('rsa', { modulusLength: 2048 }, 'RS256');
const localJwks = jose.createLocalJWKSet({ keys: [es256.publicJwk, rs256.publicJwk] });

// ---------------------------------------------------------------- server

const tls = cfg.tls
  ? {
    cert: fs.readFileSync(cfg.tls.cert),
    key: fs.readFileSync(cfg.tls.key),
    ca: cfg.tls.ca ? fs.readFileSync(cfg.tls.ca) : undefined,
    requestCert: true,
    rejectUnauthorized: false,
  }
  : undefined;

const server = tls ? https.createServer(tls) : http.createServer();
server.on('clientError', (err, socket) => {
  if (cfg.verbose) process.stderr.write(`client error: ${err.message}\n`);
  socket.destroy();
});

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});

const { port } = server.address();
const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
const issuer = origin;
const apiResource = `${origin}/api`;

const resourceIndicators = new Set(list(cfg.resource_indicators).map((r) => r.replaceAll('{origin}', origin)));
if (cfg.resource_server) resourceIndicators.add(apiResource);
const resourceScopes = list(cfg.resource_scopes ?? 'read write').join(' ');
const accessTokenTtl = cfg.access_token_ttl ?? 3600;
const refreshTokenTtl = cfg.refresh_token_ttl ?? 86400;
const defaultResource = cfg.default_resource?.replaceAll('{origin}', origin);

// ---------------------------------------------------------------- mTLS helpers

function peerCertificate(ctx) {
  const socket = ctx.req?.socket ?? ctx.socket;
  if (typeof socket?.getPeerCertificate !== 'function') return undefined;
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw) return undefined;
  return new crypto.X509Certificate(peer.raw);
}

function getCertificate(ctx) {
  return peerCertificate(ctx)?.toString();
}

function dnSet(dn) {
  return new Set(String(dn).split(/[,\n]/).map((s) => s.trim()).filter(Boolean)
    .map((rdn) => {
      const i = rdn.indexOf('=');
      return `${rdn.slice(0, i).trim().toUpperCase()}=${rdn.slice(i + 1).trim()}`;
    }));
}

function certificateSubjectMatches(ctx, property, expected) {
  const cert = peerCertificate(ctx);
  if (!cert) return false;
  const sans = (cert.subjectAltName || '').split(', ').map((s) => {
    const i = s.indexOf(':');
    return [s.slice(0, i), s.slice(i + 1)];
  });
  const san = (type) => sans.filter(([t]) => t === type).map(([, v]) => v);
  switch (property) {
    case 'tls_client_auth_subject_dn': {
      const a = dnSet(cert.subject);
      const b = dnSet(expected);
      return a.size === b.size && [...a].every((x) => b.has(x));
    }
    case 'tls_client_auth_san_dns': return san('DNS').includes(expected);
    case 'tls_client_auth_san_uri': return san('URI').includes(expected);
    case 'tls_client_auth_san_ip': return san('IP Address').includes(expected);
    case 'tls_client_auth_san_email': return san('email').includes(expected);
    default: return false;
  }
}

function certificateThumbprint(cert) {
  return crypto.createHash('sha256').update(cert.raw).digest('base64url');
}

// ---------------------------------------------------------------- provider

const configuration = {
  clients: cfg.clients ?? [],
  jwks: { keys: [es256.jwk, rs256.jwk] },
  scopes: ['openid', 'offline_access', ...list(cfg.scopes)],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() { return { sub: id }; },
    };
  },
  // A plain OAuth AS: a refresh token whenever the client may use the
  // refresh_token grant (no offline_access / prompt=consent dance), and
  // tokens that do not die with the browser session.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  async expiresWithSession() { return false; },
  async extraTokenClaims(_ctx, token) {
    const mayAct = cfg.may_act?.[token.clientId];
    return mayAct ? { may_act: mayAct } : undefined;
  },
  rotateRefreshToken: true,
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    RefreshToken: refreshTokenTtl,
    AuthorizationCode: 60,
    DeviceCode: 600,
    IdToken: 3600,
    Interaction: 600,
    Session: 86400,
    Grant: Math.max(refreshTokenTtl, 86400),
  },
  features: {
    devInteractions: { enabled: !!cfg.dev_interactions },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    ...(cfg.registration ? {
      registration: {
        enabled: true,
        initialAccessToken: cfg.registration.initial_access_token ?? false,
      },
    } : {}),
    dPoP: {
      enabled: true,
      ...(cfg.dpop_nonce ? { nonceSecret: crypto.randomBytes(32), requireNonce: () => true } : {}),
    },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, _client, oneOf) {
        return oneOf ?? defaultResource;
      },
      async getResourceServerInfo(_ctx, resource) {
        if (!resourceIndicators.has(resource)) throw new errors.InvalidTarget();
        return {
          scope: resourceScopes,
          audience: resource,
          accessTokenTTL: accessTokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
      async useGrantedResource() { return true; },
    },
    ...(tls ? {
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: true,
        getCertificate,
        certificateAuthorized: (ctx) => !!(ctx.req?.socket ?? ctx.socket)?.authorized,
        certificateSubjectMatches,
      },
    } : {}),
  },
  clientAuthMethods: [
    'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none',
    ...(tls ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
  ],
  ...(tls ? {
    discovery: {
      // Every endpoint accepts client certificates on the same origin.
      mtls_endpoint_aliases: {
        token_endpoint: `${origin}/token`,
        revocation_endpoint: `${origin}/token/revocation`,
        introspection_endpoint: `${origin}/token/introspection`,
        device_authorization_endpoint: `${origin}/device/auth`,
        userinfo_endpoint: `${origin}/me`,
        pushed_authorization_request_endpoint: `${origin}/request`,
      },
    },
  } : {}),
};

let provider;
try {
  provider = new Provider(issuer, configuration);
} catch (err) {
  fail(`invalid provider configuration: ${err.stack || err.message}`);
}

provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`server_error: ${err.stack || err}\n`);
});
if (cfg.verbose) {
  for (const ev of ['grant.error', 'authorization.error', 'userinfo.error', 'introspection.error',
    'revocation.error', 'device_authorization.error', 'interaction.error']) {
    provider.on(ev, (ctx, err) => {
      process.stderr.write(`${ev}: ${err.error || err.message} ${err.error_description || ''} ${err.error_detail || ''}\n`);
    });
  }
}

// Refresh tokens presented at the token endpoint (how often each), and grants revoked:
// GET /test/refresh-stats reports them, so a test can show no refresh token was sent twice.
const presentedRefreshTokens = new Map();
let revokedGrants = 0;
provider.on('grant.revoked', () => { revokedGrants += 1; });

// ---------------------------------------------------------------- helpers

async function readBody(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  if (!raw) return {};
  if ((ctx.get('content-type') || '').includes('json')) return JSON.parse(raw);
  return querystring.parse(raw);
}

function json(ctx, status, body, headers = {}) {
  ctx.status = status;
  for (const [k, v] of Object.entries(headers)) ctx.set(k, v);
  ctx.set('cache-control', 'no-store');
  ctx.body = body;
}

// Builds a Grant covering every requested scope / resource / claim.
async function grantEverything({ accountId, clientId, scope, resource, claims, grant }) {
  grant ??= new provider.Grant({ accountId, clientId });
  const scopes = list(scope);
  const known = new Set(configuration.scopes);
  const oidc = scopes.filter((s) => known.has(s));
  if (oidc.length) grant.addOIDCScope(oidc.join(' '));
  for (const r of list(resource)) {
    const rsScopes = new Set(resourceScopes.split(' '));
    const wanted = scopes.filter((s) => rsScopes.has(s));
    grant.addResourceScope(r, wanted.join(' '));
  }
  if (claims) {
    const parsed = typeof claims === 'string' ? JSON.parse(claims) : claims;
    const names = new Set();
    for (const c of ['id_token', 'userinfo']) Object.keys(parsed[c] || {}).forEach((n) => names.add(n));
    if (names.size) grant.addOIDCClaims([...names]);
  }
  await grant.save();
  return grant;
}

// interaction handler: login, then consent to everything requested.
async function headlessInteraction(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  let result;
  let merge = false;
  if (prompt.name === 'login') {
    result = { login: { accountId: params.login_hint || DEFAULT_ACCOUNT } };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({
      accountId: session.accountId,
      clientId: params.client_id,
    });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scope] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scope.join(' '));
      }
    }
    const grantId = await grant.save();
    result = { consent: details.grantId ? {} : { grantId } };
    merge = true;
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: merge,
  });
  ctx.status = 303;
  ctx.set('cache-control', 'no-store');
  ctx.redirect(returnTo);
}

async function approveDevice(ctx, approve) {
  const body = await readBody(ctx);
  const userCode = body.user_code;
  if (!userCode) return json(ctx, 400, { error: 'invalid_request', error_description: 'user_code missing' });
  const code = await provider.DeviceCode.findByUserCode(normalizeUserCode(String(userCode)));
  if (!code || code.accountId || code.error) return json(ctx, 404, { error: 'not_found' });
  if (!approve) {
    Object.assign(code, { error: 'access_denied', errorDescription: 'End-User denied the authorization' });
    await code.save();
    return json(ctx, 200, { denied: true });
  }
  const accountId = body.account || DEFAULT_ACCOUNT;
  const { params } = code;
  const grant = await grantEverything({
    accountId,
    clientId: code.clientId,
    scope: params.scope,
    resource: params.resource,
    claims: params.claims,
  });
  const resources = list(params.resource);
  Object.assign(code, {
    accountId,
    authTime: epoch(),
    grantId: grant.jti,
    scope: params.scope,
    resource: resources.length > 1 ? resources : resources[0],
  });
  if (!code.resource) delete code.resource;
  await code.save();
  return json(ctx, 200, { approved: true });
}

// ---------------------------------------------------------------- token inspection

const isJwt = (v) => typeof v === 'string' && v.split('.').length === 3;

// Returns {sub, scope, client_id, exp, aud, act, cnf} of a valid access token
// issued by this AS, or undefined.
async function inspectAccessToken(value) {
  if (typeof value !== 'string' || !value) return undefined;
  if (isJwt(value)) {
    try {
      const { payload } = await jose.jwtVerify(value, localJwks, {
        issuer,
        typ: 'at+jwt',
        algorithms: ['ES256', 'RS256'],
      });
      return payload;
    } catch {
      return undefined;
    }
  }
  const token = (await provider.AccessToken.find(value)) || (await provider.ClientCredentials.find(value));
  if (!token || token.isExpired) return undefined;
  const cnf = {};
  if (token['x5t#S256']) cnf['x5t#S256'] = token['x5t#S256'];
  if (token.jkt) cnf.jkt = token.jkt;
  return {
    sub: token.accountId || token.clientId,
    scope: token.scope,
    client_id: token.clientId,
    exp: token.exp,
    aud: token.aud,
    cnf: Object.keys(cnf).length ? cnf : undefined,
  };
}

// ---------------------------------------------------------------- token exchange

async function tokenExchangeHandler(ctx) {
  const p = ctx.oidc.params;
  const { client } = ctx.oidc;
  if (cfg.id_jag && p.requested_token_type === ID_JAG_TOKEN_TYPE) return issueIdJag(ctx);
  for (const name of ['subject_token', 'subject_token_type']) {
    if (!p[name]) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  }
  const supportedTypes = [ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE];
  if (!supportedTypes.includes(p.subject_token_type)) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  if (p.requested_token_type && !supportedTypes.includes(p.requested_token_type)) {
    throw new errors.InvalidRequest('unsupported requested_token_type');
  }
  if (p.actor_token && !p.actor_token_type) {
    throw new errors.InvalidRequest("missing required parameter 'actor_token_type'");
  }
  if (p.actor_token_type && !p.actor_token) {
    throw new errors.InvalidRequest("actor_token_type given without actor_token");
  }

  const dPoP = await validateDpop(provider, ctx);

  const subject = await inspectAccessToken(p.subject_token);
  if (!subject) throw new errors.InvalidGrant('subject_token is invalid, expired or not issued by this server');

  let actor;
  if (p.actor_token) {
    if (!supportedTypes.includes(p.actor_token_type)) throw new errors.InvalidRequest('unsupported actor_token_type');
    actor = await inspectAccessToken(p.actor_token);
    if (!actor) throw new errors.InvalidGrant('actor_token is invalid, expired or not issued by this server');
  }

  const subjectScopes = list(subject.scope);
  const requested = p.scope ? list(p.scope) : subjectScopes;
  const missing = requested.filter((s) => !subjectScopes.includes(s));
  if (missing.length) {
    throw new errors.InvalidScope('requested scope exceeds the scope of the subject_token', missing.join(' '));
  }

  const targets = [...new Set([...list(p.resource), ...list(p.audience)])];
  for (const t of targets) {
    if (!resourceIndicators.has(t)) throw new errors.InvalidTarget(`unknown target ${t}`);
  }
  const aud = targets.length === 0 ? subject.aud : (targets.length === 1 ? targets[0] : targets);

  if (client.dpopBoundAccessTokens && !dPoP) throw new errors.InvalidGrant('DPoP proof JWT not provided');
  if (dPoP) await checkDpopReplay(provider, ctx, dPoP, client.clientId, errors.InvalidGrant);

  const cnf = {};
  if (dPoP) cnf.jkt = dPoP.thumbprint;
  if (tls && client.tlsClientCertificateBoundAccessTokens) {
    const cert = peerCertificate(ctx);
    if (!cert) throw new errors.InvalidGrant('mutual TLS client certificate not provided');
    cnf['x5t#S256'] = certificateThumbprint(cert);
  }

  let act = subject.act;
  if (actor) {
    act = { sub: actor.sub || actor.client_id };
    if (subject.act) act.act = subject.act;
  }

  const now = epoch();
  const exp = Math.min(subject.exp ?? now + accessTokenTtl, now + accessTokenTtl);
  if (exp <= now) throw new errors.InvalidGrant('subject_token is expired');

  const payload = {
    iss: issuer,
    sub: subject.sub,
    aud,
    client_id: client.clientId,
    scope: requested.length ? requested.join(' ') : undefined,
    jti: crypto.randomUUID(),
    iat: now,
    exp,
    ...(act ? { act } : {}),
    ...(Object.keys(cnf).length ? { cnf } : {}),
    ...(cfg.may_act?.[client.clientId] ? { may_act: cfg.may_act[client.clientId] } : {}),
  };
  const accessToken = await new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', kid: es256.jwk.kid, typ: 'at+jwt' })
    .sign(es256.privateKey);

  ctx.set('cache-control', 'no-store');
  ctx.body = {
    access_token: accessToken,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: dPoP ? 'DPoP' : 'Bearer',
    expires_in: exp - now,
    ...(payload.scope ? { scope: payload.scope } : {}),
  };
}

// ---------------------------------------------------------------- ID-JAG and JWT bearer

async function issueIdJag(ctx) {
  const p = ctx.oidc.params;
  const { client } = ctx.oidc;
  for (const name of ['subject_token', 'subject_token_type', 'audience', 'resource']) {
    if (!p[name]) throw new errors.InvalidRequest(`missing required parameter '${name}'`);
  }
  if (p.subject_token_type !== ID_TOKEN_TYPE) throw new errors.InvalidRequest('an ID-JAG is issued for an ID token');
  let subject;
  try {
    ({ payload: subject } = await jose.jwtVerify(p.subject_token, localJwks, {
      issuer, audience: client.clientId, algorithms: ['ES256', 'RS256'],
    }));
  } catch (e) {
    throw new errors.InvalidGrant(`subject_token refused: ${e.code || e.message}`);
  }
  const now = epoch();
  const payload = {
    iss: issuer,
    sub: subject.sub,
    aud: list(p.audience)[0],
    resource: list(p.resource)[0],
    client_id: client.clientId,
    ...(p.scope ? { scope: list(p.scope).join(' ') } : {}),
    jti: crypto.randomUUID(),
    iat: now,
    exp: now + 300,
  };
  const jag = await new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', kid: es256.jwk.kid, typ: 'oauth-id-jag+jwt' })
    .sign(es256.privateKey);
  counters.id_jag += 1;
  ctx.set('cache-control', 'no-store');
  ctx.body = {
    access_token: jag,
    issued_token_type: ID_JAG_TOKEN_TYPE,
    token_type: 'N_A',
    expires_in: 300,
    ...(payload.scope ? { scope: payload.scope } : {}),
  };
}

async function jwtBearerHandler(ctx) {
  const p = ctx.oidc.params;
  const { client } = ctx.oidc;
  if (!p.assertion) throw new errors.InvalidRequest("missing required parameter 'assertion'");
  const dPoP = await validateDpop(provider, ctx);
  let header;
  let unverified;
  try {
    header = jose.decodeProtectedHeader(p.assertion);
    unverified = jose.decodeJwt(p.assertion);
  } catch {
    throw new errors.InvalidGrant('assertion is not a JWT');
  }
  const trusted = list(cfg.jwt_bearer?.trusted).find((t) => t.issuer === unverified.iss);
  if (!trusted) throw new errors.InvalidGrant('assertion issuer is not trusted');
  let claims;
  try {
    ({ payload: claims } = await jose.jwtVerify(p.assertion, jose.createLocalJWKSet(trusted.jwks), {
      issuer: trusted.issuer,
      audience: [issuer, `${origin}/token`],
      algorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'],
    }));
  } catch (e) {
    throw new errors.InvalidGrant(`assertion refused: ${e.code || e.message}`);
  }
  if (!claims.sub) throw new errors.InvalidGrant('assertion has no sub');
  const idJag = header.typ === 'oauth-id-jag+jwt';
  let targets = list(p.resource);
  let granted;
  if (idJag) {
    if (claims.client_id !== client.clientId) throw new errors.InvalidGrant('the ID-JAG was issued to another client');
    if (targets.some((t) => t !== claims.resource)) throw new errors.InvalidTarget('the ID-JAG is for another resource');
    targets = [claims.resource];
    granted = list(claims.scope);
  }
  for (const t of targets) {
    if (!resourceIndicators.has(t)) throw new errors.InvalidTarget(`unknown target ${t}`);
  }
  const requested = p.scope ? list(p.scope) : (granted ?? []);
  if (granted && requested.some((s) => !granted.includes(s))) {
    throw new errors.InvalidScope('requested scope exceeds the ID-JAG scope');
  }
  if (client.dpopBoundAccessTokens && !dPoP) throw new errors.InvalidGrant('DPoP proof JWT not provided');
  if (dPoP) await checkDpopReplay(provider, ctx, dPoP, client.clientId, errors.InvalidGrant);
  const now = epoch();
  const payload = {
    iss: issuer,
    sub: claims.sub,
    aud: targets.length === 1 ? targets[0] : (targets.length ? targets : undefined),
    client_id: client.clientId,
    scope: requested.length ? requested.join(' ') : undefined,
    jti: crypto.randomUUID(),
    iat: now,
    exp: now + accessTokenTtl,
    ...(dPoP ? { cnf: { jkt: dPoP.thumbprint } } : {}),
  };
  const accessToken = await new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', kid: es256.jwk.kid, typ: 'at+jwt' })
    .sign(es256.privateKey);
  counters.jwt_bearer += 1;
  ctx.set('cache-control', 'no-store');
  ctx.body = {
    access_token: accessToken,
    token_type: dPoP ? 'DPoP' : 'Bearer',
    expires_in: accessTokenTtl,
    ...(payload.scope ? { scope: payload.scope } : {}),
  };
}

if (cfg.jwt_bearer) {
  provider.registerGrantType(JWT_BEARER, jwtBearerHandler, ['assertion', 'resource', 'scope'], ['resource']);
}

if (cfg.token_exchange) {
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    tokenExchangeHandler,
    ['audience', 'resource', 'scope', 'requested_token_type', 'subject_token',
      'subject_token_type', 'actor_token', 'actor_token_type'],
    ['audience', 'resource'],
  );
}

// ---------------------------------------------------------------- resource server

const rsMetadataUrl = `${origin}/.well-known/oauth-protected-resource/api`;
const rsDpopRequired = !!cfg.dpop_bound_access_tokens_required;
const rsJtis = new Map(); // jti -> expiry (epoch seconds)
const rsNonces = new Map(); // nonce -> expiry
const RS_NONCE_TTL = 120;

function newRsNonce() {
  const nonce = crypto.randomBytes(16).toString('base64url');
  rsNonces.set(nonce, epoch() + RS_NONCE_TTL);
  return nonce;
}

function sweep(map) {
  const now = epoch();
  for (const [k, exp] of map) if (exp < now) map.delete(k);
}

function challenge(scheme, params) {
  const parts = Object.entries(params).filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}="${String(v).replaceAll('"', "'")}"`);
  return parts.length ? `${scheme} ${parts.join(', ')}` : scheme;
}

class RsError extends Error {
  constructor(status, error, description, { scheme = 'Bearer', headers = {}, scope } = {}) {
    super(description);
    Object.assign(this, { status, error, description, scheme, headers, scope });
  }
}

async function verifyDpopProof(ctx, accessToken, jkt) {
  const proof = ctx.get('dpop');
  if (!proof) throw new RsError(401, 'invalid_token', 'DPoP proof missing', { scheme: 'DPoP' });
  let header;
  let payload;
  try {
    ({ payload, protectedHeader: header } = await jose.jwtVerify(proof, jose.EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ['ES256'],
    }));
  } catch (err) {
    throw new RsError(401, 'invalid_dpop_proof', `DPoP proof invalid: ${err.message}`, { scheme: 'DPoP' });
  }
  const bad = (why) => new RsError(401, 'invalid_dpop_proof', why, { scheme: 'DPoP' });
  if (header.jwk.d !== undefined) throw bad('DPoP proof jwk contains a private key');
  if (payload.htm !== ctx.method) throw bad('DPoP proof htm mismatch');
  const htu = URL.parse(payload.htu ?? '');
  if (!htu) throw bad('DPoP proof htu mismatch');
  htu.search = '';
  htu.hash = '';
  if (htu.href !== `${origin}${ctx.path}`) throw bad('DPoP proof htu mismatch');
  const now = epoch();
  if (typeof payload.iat !== 'number' || Math.abs(now - payload.iat) > 60) throw bad('DPoP proof iat is not recent enough');
  if (typeof payload.jti !== 'string' || !payload.jti) throw bad('DPoP proof jti missing');
  const ath = crypto.createHash('sha256').update(accessToken).digest('base64url');
  if (payload.ath !== ath) throw bad('DPoP proof ath mismatch');
  const thumbprint = await jose.calculateJwkThumbprint(header.jwk, 'sha256');
  if (thumbprint !== jkt) {
    throw new RsError(401, 'invalid_token', 'DPoP proof key does not match the token binding', { scheme: 'DPoP' });
  }
  if (cfg.resource_nonce) {
    sweep(rsNonces);
    if (!payload.nonce || !rsNonces.has(payload.nonce)) {
      throw new RsError(401, 'use_dpop_nonce', 'Resource server requires nonce in DPoP proof', {
        scheme: 'DPoP',
        headers: { 'DPoP-Nonce': newRsNonce() },
      });
    }
  }
  sweep(rsJtis);
  if (rsJtis.has(payload.jti)) throw bad('DPoP proof replayed');
  rsJtis.set(payload.jti, now + 120);
}

async function resourceServer(ctx) {
  const authz = ctx.get('authorization');
  const [scheme, token, ...rest] = authz.split(' ');
  const schemeLc = (scheme || '').toLowerCase();
  if (!authz) {
    const headers = [challenge('Bearer', { resource_metadata: rsMetadataUrl })];
    headers.push(challenge('DPoP', { algs: 'ES256', resource_metadata: rsMetadataUrl }));
    ctx.set('WWW-Authenticate', rsDpopRequired ? headers[1] : headers.join(', '));
    return json(ctx, 401, { error: 'invalid_request', error_description: 'no access token' });
  }
  try {
    if (!token || rest.length || !['bearer', 'dpop'].includes(schemeLc)) {
      throw new RsError(400, 'invalid_request', 'malformed Authorization header');
    }
    const useScheme = schemeLc === 'dpop' ? 'DPoP' : 'Bearer';
    if (!isJwt(token)) throw new RsError(401, 'invalid_token', 'not a JWT access token of this issuer', { scheme: useScheme });
    let claims;
    try {
      ({ payload: claims } = await jose.jwtVerify(token, localJwks, {
        issuer,
        audience: apiResource,
        typ: 'at+jwt',
        algorithms: ['ES256', 'RS256'],
      }));
    } catch (err) {
      throw new RsError(401, 'invalid_token', `access token invalid: ${err.message}`, { scheme: useScheme });
    }
    const jkt = claims.cnf?.jkt;
    if (jkt) {
      if (useScheme !== 'DPoP') throw new RsError(401, 'invalid_token', 'DPoP-bound token presented as Bearer', { scheme: 'DPoP' });
      await verifyDpopProof(ctx, token, jkt);
    } else if (useScheme === 'DPoP') {
      throw new RsError(401, 'invalid_token', 'token is not DPoP-bound', { scheme: 'DPoP' });
    } else if (rsDpopRequired) {
      throw new RsError(401, 'invalid_token', 'this resource requires DPoP-bound tokens', { scheme: 'DPoP' });
    }
    const x5t = claims.cnf?.['x5t#S256'];
    if (x5t) {
      const cert = peerCertificate(ctx);
      if (!cert || certificateThumbprint(cert) !== x5t) {
        throw new RsError(401, 'invalid_token', 'certificate-bound token presented without its certificate', { scheme: useScheme });
      }
    }
    const required = ctx.path.match(/^\/api\/require\/([^/]+)/)?.[1];
    if (required && !list(claims.scope).includes(decodeURIComponent(required))) {
      throw new RsError(403, 'insufficient_scope', `scope ${required} required`, { scheme: useScheme, scope: decodeURIComponent(required) });
    }
    return json(ctx, 200, {
      ok: true,
      sub: claims.sub,
      scope: claims.scope ?? null,
      client_id: claims.client_id ?? null,
      act: claims.act ?? null,
      cnf: claims.cnf ?? null,
      aud: claims.aud,
    });
  } catch (err) {
    if (!(err instanceof RsError)) throw err;
    ctx.set('WWW-Authenticate', challenge(err.scheme, {
      error: err.error,
      error_description: err.description,
      scope: err.scope,
      algs: err.scheme === 'DPoP' ? 'ES256' : undefined,
      resource_metadata: rsMetadataUrl,
    }));
    return json(ctx, err.status, { error: err.error, error_description: err.description }, err.headers);
  }
}

function resourceMetadata(ctx) {
  json(ctx, 200, {
    resource: apiResource,
    authorization_servers: [issuer],
    scopes_supported: resourceScopes.split(' '),
    bearer_methods_supported: ['header'],
    dpop_signing_alg_values_supported: ['ES256'],
    dpop_bound_access_tokens_required: rsDpopRequired,
    ...(tls ? { tls_client_certificate_bound_access_tokens: true } : {}),
  });
}

// ---------------------------------------------------------------- routing

provider.use(async (ctx, next) => {
  const { path, method } = ctx;
  if (!cfg.dev_interactions && method === 'GET' && /^\/interaction\/[^/]+$/.test(path)) {
    return headlessInteraction(ctx);
  }
  if (method === 'POST' && path === '/test/approve-device') return approveDevice(ctx, true);
  if (method === 'POST' && path === '/test/deny-device') return approveDevice(ctx, false);
  if (method === 'GET' && path === '/test/counters') return json(ctx, 200, counters);
  if (method === 'GET' && path === '/test/refresh-stats') {
    let reused = 0;
    let presentations = 0;
    for (const n of presentedRefreshTokens.values()) {
      presentations += n;
      if (n > 1) reused += 1;
    }
    return json(ctx, 200, { presentations, distinct: presentedRefreshTokens.size, reused, revoked_grants: revokedGrants });
  }
  if (cfg.resource_server) {
    if (method === 'GET' && path === '/.well-known/oauth-protected-resource/api') return resourceMetadata(ctx);
    if (path === '/api' || path.startsWith('/api/')) return resourceServer(ctx);
  }
  await next();
  if (ctx.oidc?.route === 'token' && ctx.oidc.params?.grant_type === 'refresh_token') {
    const rt = String(ctx.oidc.params.refresh_token || '');
    presentedRefreshTokens.set(rt, (presentedRefreshTokens.get(rt) || 0) + 1);
  }
  if (cfg.issuer_override && ctx.oidc?.route === 'discovery' && ctx.status === 200 && ctx.body) {
    ctx.body.issuer = cfg.issuer_override;
  }
  return undefined;
});

server.on('request', provider.callback());

if (cfg.resource_server) process.stdout.write(`RESOURCE ${apiResource}\n`);
process.stdout.write(`READY ${issuer}\n`);
