// An independent OpenID relying party (npm openid-client + jose) that SERVES its redirect URI,
// for the real-browser login test (tests/e2e/test_browser_login.py).
//
// Protocol with the Python test (one JSON object per line):
//   stdout <- {"redirect_uri": "http://127.0.0.1:<port>/cb"}   its callback server is listening
//   stdin  -> the issuer URL (the gateway is started with that redirect URI registered)
//   stdout <- {"authorization_url": "...", "discovery": {...}}  code + PKCE S256 + nonce + state
//   ... the browser lands on /cb: the code is exchanged, the ID token validated (signature via
//   the JWKS, iss, aud, nonce, state, at_hash) and verified a second time with jose:
//   stdout <- {"ok": true, "id_token_claims": {...}, "jose_header": {...}, "callback": "..."}
//          or {"ok": false, "error": "...", "callback": "..."}
//   stdin  -> the issuer URL again: a new login (new PKCE verifier, nonce, state), any number
//             of times, one login in flight at a time
//   stdin  -> "stop"
//   stdout <- {"callbacks": <how many times /cb was hit>}   and the process exits
// Env: CLIENT_ID, CLIENT_SECRET (empty for a public client), SCOPE.
import * as client from 'openid-client';
import * as jose from 'jose';
import http from 'node:http';
import readline from 'node:readline';

const env = process.env;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const lines = readline.createInterface({ input: process.stdin });
const pending = [];
const queued = [];
lines.on('line', (line) => (pending.length ? pending.shift()(line) : queued.push(line)));
const nextLine = () =>
  new Promise((resolve) => (queued.length ? resolve(queued.shift()) : pending.push(resolve)));

let callbacks = 0;
let login = null; // {config, verifier, nonce, state, meta}

async function complete(callbackUrl) {
  const { config, verifier, nonce, state, meta } = login;
  const tokens = await client.authorizationCodeGrant(config, callbackUrl, {
    pkceCodeVerifier: verifier,
    expectedNonce: nonce,
    expectedState: state,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  const verified = await jose.jwtVerify(tokens.id_token, jwks, {
    issuer: meta.issuer,
    audience: env.CLIENT_ID,
    algorithms: ['RS256'],
    requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce'],
  });
  if (verified.payload.nonce !== nonce) throw new Error('nonce mismatch');
  return { ok: true, id_token_claims: claims, jose_header: verified.protectedHeader };
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (url.pathname !== '/cb') {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
    return;
  }
  callbacks += 1;
  let result;
  try {
    if (!login) throw new Error('no login in progress');
    result = await complete(url);
  } catch (err) {
    result = { ok: false, error: err.error || err.code || err.message, detail: String(err.cause || err) };
  }
  result.callback = url.href;
  out(result);
  const text = result.ok ? `Signed in as ${result.id_token_claims.sub}` : `Sign-in failed: ${result.error}`;
  res
    .writeHead(result.ok ? 200 : 400, { 'Content-Type': 'text/html; charset=utf-8' })
    .end(`<!doctype html><title>RP</title><h1 id="rp-result">${esc(text)}</h1>`);
});

async function startLogin(issuer, redirectUri) {
  const auth = env.CLIENT_SECRET ? client.ClientSecretBasic(env.CLIENT_SECRET) : client.None();
  const config = await client.discovery(issuer, env.CLIENT_ID, undefined, auth, {
    // http on 127.0.0.1 in tests; ID token signatures are checked against the JWKS.
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });
  const meta = config.serverMetadata();
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: env.SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    nonce,
    state,
  });
  login = { config, verifier, nonce, state, meta };
  out({ authorization_url: url.href, discovery: meta });
}

async function main() {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  out({ redirect_uri: `http://127.0.0.1:${server.address().port}/cb` });
  const redirectUri = `http://127.0.0.1:${server.address().port}/cb`;
  let line = await nextLine();
  while (line !== 'stop') {
    await startLogin(new URL(line), redirectUri);
    line = await nextLine();
  }
  lines.close();
  server.closeAllConnections();
  server.close();
  // The browser may hold keep-alive connections; exit once the answer is written.
  process.stdout.write(JSON.stringify({ callbacks }) + '\n', () => process.exit(0));
}

main().catch((err) => {
  out({ ok: false, error: err.error || err.code || err.message, detail: String(err.cause || err) });
  process.exit(1);
});
