// An independent SAML 2.0 service provider (npm @node-saml/node-saml) that SERVES its
// Assertion Consumer Service, for the SAML IdP tests (tests/e2e/test_saml_*.py, the bench).
//
// It builds AuthnRequests for the HTTP-Redirect binding (optionally signed, RSA-SHA256) and
// validates every Response POSTed to its ACS with validatePostResponseAsync: the IdP's
// signature against the certificate it was given (never one from the message), Issuer,
// Audience, Destination/Recipient, timestamps and InResponseTo (against the request ids it
// generated itself, single use).
//
// Protocol with the Python side (one JSON object per line):
//   stdout <- {"acs_url": "http://127.0.0.1:<port>/acs", "entity_id": "..."}  listening
//   stdin  -> {"cmd": "configure", "idp_cert": PEM, "entry_point": SSO URL, "idp_issuer": id,
//              "in_response_to": "always" | "ifPresent" | "never"}
//   stdout <- {"configured": true}
//   stdin  -> {"cmd": "login", "relay_state": "...", "force_authn": bool, "passive": bool}
//   stdout <- {"url": "<SSO URL>?SAMLRequest=...", "request_id": "_..."}
//   ... a browser POSTs the IdP's Response to /acs:
//   stdout <- {"ok": true, "profile": {...}, "relay_state": "...", "via": "acs"}
//          or {"ok": false, "error": "...", "status": "...", "via": "acs"}
//   stdin  -> {"cmd": "validate", "saml_response": base64, "relay_state": "..."}  (an HTTP
//             client got the auto-submitting form itself): the same check, "via": "validate"
//   stdin  -> {"cmd": "stop"}
//   stdout <- {"callbacks": <how many times /acs was hit>}   and the process exits
// Env: SP_ENTITY_ID; SP_KEY_PEM + SP_CERT_PEM sign the AuthnRequests (absent: unsigned);
// WANT_RESPONSE_SIGNED (default 1), WANT_ASSERTIONS_SIGNED (default 1); DECRYPTION_PVK (PEM)
// decrypts an EncryptedAssertion.
import { SAML } from '@node-saml/node-saml';
import { InMemoryCacheProvider } from '@node-saml/node-saml/lib/in-memory-cache-provider.js';
import http from 'node:http';
import readline from 'node:readline';

const env = process.env;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const flag = (name, fallback) => (env[name] === undefined ? fallback : env[name] === '1');

const entityId = env.SP_ENTITY_ID || 'urn:test:node-saml-sp';
// One request-id cache for every configuration: an id is valid once, for 10 minutes.
const cache = new InMemoryCacheProvider({ keyExpirationPeriodMs: 10 * 60 * 1000 });
let saml = null;
let callbacks = 0;
let acsUrl = '';

function configure(cmd) {
  saml = new SAML({
    issuer: entityId,
    callbackUrl: acsUrl,
    entryPoint: cmd.entry_point,
    idpCert: cmd.idp_cert,
    idpIssuer: cmd.idp_issuer,
    audience: entityId,
    wantAuthnResponseSigned: flag('WANT_RESPONSE_SIGNED', true),
    wantAssertionsSigned: flag('WANT_ASSERTIONS_SIGNED', true),
    validateInResponseTo: cmd.in_response_to || 'always',
    cacheProvider: cache,
    requestIdExpirationPeriodMs: 10 * 60 * 1000,
    acceptedClockSkewMs: 5000,
    identifierFormat: 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified',
    disableRequestedAuthnContext: true,
    ...(env.SP_KEY_PEM
      ? { privateKey: env.SP_KEY_PEM, publicCert: env.SP_CERT_PEM, signatureAlgorithm: 'sha256' }
      : {}),
    ...(env.DECRYPTION_PVK ? { decryptionPvk: env.DECRYPTION_PVK } : {}),
  });
}

async function validate(samlResponse, relayState, via) {
  if (!saml) return { ok: false, error: 'not configured', via };
  try {
    const { profile } = await saml.validatePostResponseAsync({
      SAMLResponse: samlResponse,
      RelayState: relayState ?? '',
    });
    return { ok: true, profile, relay_state: relayState ?? null, via };
  } catch (err) {
    // A SAML error status (e.g. AuthnFailed, NoPassive) arrives as SamlStatusError.
    const status = err.xmlStatus?.Status?.[0]?.StatusCode?.[0];
    const second = status?.StatusCode?.[0]?.$?.Value;
    return {
      ok: false,
      error: err.message,
      status: status?.$?.Value ?? null,
      sub_status: second ?? null,
      relay_state: relayState ?? null,
      via,
    };
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1024 * 1024) reject(new Error('body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (url.pathname !== '/acs' || req.method !== 'POST') {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
    return;
  }
  callbacks += 1;
  const form = new URLSearchParams(await readBody(req));
  const result = await validate(form.get('SAMLResponse') || '', form.get('RelayState'), 'acs');
  out(result);
  const text = result.ok
    ? `Signed in as ${result.profile.nameID}`
    : `Sign-in failed: ${result.status || result.error}`;
  res
    .writeHead(result.ok ? 200 : 400, { 'Content-Type': 'text/html; charset=utf-8' })
    .end(`<!doctype html><title>SP</title><h1 id="sp-result">${esc(text)}</h1>` +
      `<p id="sp-relay-state">${esc(result.relay_state ?? '')}</p>`);
});

const lines = readline.createInterface({ input: process.stdin });

async function handle(cmd) {
  if (cmd.cmd === 'configure') {
    configure(cmd);
    return { configured: true };
  }
  if (cmd.cmd === 'login') {
    if (!saml) return { error: 'not configured' };
    saml.options.forceAuthn = Boolean(cmd.force_authn);
    saml.options.passive = Boolean(cmd.passive);
    const urlText = await saml.getAuthorizeUrlAsync(cmd.relay_state ?? '', undefined, {});
    const request = new URL(urlText).searchParams.get('SAMLRequest');
    const { inflateRawSync } = await import('node:zlib');
    const xml = inflateRawSync(Buffer.from(request, 'base64')).toString('utf8');
    const id = /\sID="([^"]+)"/.exec(xml)?.[1] ?? null;
    return { url: urlText, request_id: id, request_xml: xml };
  }
  if (cmd.cmd === 'validate') return validate(cmd.saml_response, cmd.relay_state, 'validate');
  return { error: `unknown command ${cmd.cmd}` };
}

async function main() {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  acsUrl = `http://127.0.0.1:${server.address().port}/acs`;
  out({ acs_url: acsUrl, entity_id: entityId });
  for await (const line of lines) {
    const cmd = JSON.parse(line);
    if (cmd.cmd === 'stop') break;
    try {
      out(await handle(cmd));
    } catch (err) {
      out({ error: err.message });
    }
  }
  server.closeAllConnections();
  server.close();
  process.stdout.write(JSON.stringify({ callbacks }) + '\n', () => process.exit(0));
}

main().catch((err) => {
  out({ ok: false, error: err.message });
  process.exit(1);
});
