// An independent OpenID relying party (npm openid-client + jose) driving the gateway's provider.
//
// Protocol with the Python test (one JSON object per line):
//   stdout <- {"authorization_url": "..."}       after discovery, with PKCE S256 + nonce + state
//   stdin  -> the callback URL the "browser" was redirected to
//   stdout <- {"ok": true, ...results}            or {"ok": false, "error": "..."}
// Env: ISSUER, CLIENT_ID, CLIENT_SECRET (empty for a public client), REDIRECT_URI, SCOPE.
import * as client from 'openid-client';
import * as jose from 'jose';
import readline from 'node:readline';

const env = process.env;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

async function main() {
  const issuer = new URL(env.ISSUER);
  const auth = env.CLIENT_SECRET ? client.ClientSecretBasic(env.CLIENT_SECRET) : client.None();
  const config = await client.discovery(issuer, env.CLIENT_ID, undefined, auth, {
    // http on 127.0.0.1 in tests; ID token signatures are checked against the JWKS.
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });
  const meta = config.serverMetadata();
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const nonce = client.randomNonce();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: env.REDIRECT_URI,
    scope: env.SCOPE,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    nonce,
    state,
  });
  out({ authorization_url: url.href, discovery: meta });

  const rl = readline.createInterface({ input: process.stdin });
  const callback = await new Promise((resolve) => rl.once('line', resolve));
  rl.close();

  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedNonce: nonce,
    expectedState: state,
    idTokenExpected: true,
  });
  const claims = tokens.claims();

  // Second, fully independent check of the ID token with jose and the published JWKS.
  const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
  const verified = await jose.jwtVerify(tokens.id_token, jwks, {
    issuer: meta.issuer,
    audience: env.CLIENT_ID,
    algorithms: ['RS256'],
    requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce'],
  });
  if (verified.payload.nonce !== nonce) throw new Error('nonce mismatch');

  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

  const result = {
    ok: true,
    id_token_claims: claims,
    jose_header: verified.protectedHeader,
    userinfo,
    scope: tokens.scope,
  };

  if (tokens.refresh_token) {
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    result.refresh_rotated = refreshed.refresh_token !== tokens.refresh_token;
    result.userinfo_after_refresh = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
    result.introspection_active = await client.tokenIntrospection(config, refreshed.access_token);
    await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
    result.introspection_after_revoke = await client.tokenIntrospection(config, refreshed.access_token);
  }

  // The code a second time: refused, and what the first exchange issued is revoked.
  try {
    await client.authorizationCodeGrant(config, new URL(callback), {
      pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state,
    });
    result.reuse_error = null;
  } catch (err) {
    result.reuse_error = err.error || err.code || String(err);
  }
  try {
    await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    result.access_after_reuse = 'accepted';
  } catch (err) {
    result.access_after_reuse = err.status || err.code || String(err);
  }
  result.end_session_url = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: env.LOGOUT_URI || '',
    state: 'bye',
  }).href;
  out(result);
}

main().catch((err) => {
  out({ ok: false, error: err.error || err.code || err.message, detail: String(err.cause || err) });
  process.exitCode = 1;
});
