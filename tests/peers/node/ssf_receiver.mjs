// An independent Shared Signals receiver (Node http + npm jose 6), not our code.
//
// It discovers the transmitter (/.well-known/ssf-configuration and the OP's
// /.well-known/openid-configuration), gets an access token with the client credentials grant,
// registers a stream through the SSF management API (push to itself, or poll), and verifies
// every SET it gets with jose: createRemoteJWKSet(jwks_uri) + jwtVerify with typ
// secevent+jwt, issuer, audience, algorithms ['RS256']; then it checks the CAEP
// interoperability profile's shape (no sub, no exp, sub_id, exactly one event, event body).
//
// Env: TRANSMITTER (issuer URL), CLIENT_ID, CLIENT_SECRET, AUDIENCE, MODE (push | poll),
//      EVENTS (comma-separated event type URIs), FAIL_FIRST (answer 503 to the first N pushes),
//      HANG_FIRST (never answer the first N pushes), PUSH_PATH (default /events),
//      AUTH_HEADER (what the transmitter must send as Authorization), STATIC_PORT (listen
//      port; 0 = any), NO_REGISTER (1 = do not create a stream: an Okta-style receiver),
//      OKTA (1 = also check Okta's event schema: a "subject" object inside each CAEP event).
// Protocol with the Python test, one JSON object per line:
//   stdout <- {"ready": true, "stream_id": ..., "port": ..., "config": {...}}
//   stdout <- {"set": claims, "header": header, "status": 202, "duplicate": bool}  per SET
//   stdout <- {"refused": "...", "status": 400}                                   per bad SET
//   stdin  -> {"cmd": "verify", "state": "..."} | {"cmd": "poll", "ack": [...]}
//             | {"cmd": "status", "status": "paused"} | {"cmd": "get"}
//   stdout <- {"reply": cmd, "status": http status, "body": ...}
import http from 'node:http';
import readline from 'node:readline';
import * as jose from 'jose';

const env = process.env;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const seen = new Set();
let failFirst = Number(env.FAIL_FIRST || 0);
let hangFirst = Number(env.HANG_FIRST || 0);
const pushPath = env.PUSH_PATH || '/events';

const DCC = 'https://schemas.openid.net/secevent/caep/event-type/device-compliance-change';
const REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
const DISABLED = 'https://schemas.openid.net/secevent/risc/event-type/account-disabled';
const VERIFY = 'https://schemas.openid.net/secevent/ssf/event-type/verification';
const UPDATED = 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated';

async function getJson(url, init) {
  const res = await fetch(url, init);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  return { status: res.status, body };
}

function simpleSubject(s) {
  if (!s || typeof s !== 'object') return false;
  if (s.format === 'email') return typeof s.email === 'string' && s.email.includes('@');
  if (s.format === 'iss_sub') return typeof s.iss === 'string' && typeof s.sub === 'string';
  if (s.format === 'opaque') return typeof s.id === 'string' && s.id.length > 0;
  return false;
}

// The CAEP interoperability profile's shape; throws with the reason.
function checkShape(payload, header) {
  if (header.typ !== 'secevent+jwt') throw new Error('typ');
  if (header.alg !== 'RS256' || !header.kid) throw new Error('alg/kid');
  if ('sub' in payload) throw new Error('a SET must not carry sub');
  if ('exp' in payload) throw new Error('a SET must not carry exp');
  for (const c of ['iss', 'aud', 'iat', 'jti', 'txn', 'sub_id', 'events']) {
    if (!(c in payload)) throw new Error(`missing ${c}`);
  }
  const types = Object.keys(payload.events);
  if (types.length !== 1) throw new Error('exactly one event');
  const type = types[0];
  const event = payload.events[type];
  const sub = payload.sub_id;
  if (type === DCC || type === REVOKED) {
    if (sub.format !== 'complex') throw new Error('CAEP events carry a complex subject');
    if (!sub.user && !sub.device) throw new Error('complex subject without user/device');
    if (sub.user && !simpleSubject(sub.user)) throw new Error('bad user member');
    if (sub.device && !simpleSubject(sub.device)) throw new Error('bad device member');
    if (!Number.isInteger(event.event_timestamp)) throw new Error('event_timestamp');
    if (!['admin', 'user', 'policy', 'system'].includes(event.initiating_entity)) {
      throw new Error('initiating_entity');
    }
    if (event.reason_admin && typeof event.reason_admin.en !== 'string') throw new Error('reason_admin');
  }
  if (env.OKTA === '1' && (type === DCC || type === REVOKED)) {
    // Okta's SSF Security Event Tokens API: the event carries a required "subject" object
    // (SecurityEventSubject: user / device / tenant subject identifiers).
    const s = event.subject;
    if (!s || typeof s !== 'object' || (!s.user && !s.device)) throw new Error('event subject');
    for (const k of Object.keys(s)) {
      if (!['user', 'device', 'tenant'].includes(k) || !simpleSubject(s[k])) throw new Error(`event subject ${k}`);
    }
  }
  if (type === DCC) {
    for (const k of ['previous_status', 'current_status']) {
      if (!['compliant', 'not-compliant'].includes(event[k])) throw new Error(k);
    }
  } else if (type === DISABLED) {
    if (!simpleSubject(sub)) throw new Error('RISC subject');
  } else if (type === VERIFY || type === UPDATED) {
    if (sub.format !== 'opaque') throw new Error('stream subject');
  } else if (type !== REVOKED) {
    throw new Error(`unexpected event type ${type}`);
  }
}

async function main() {
  const base = env.TRANSMITTER.replace(/\/$/, '');
  const ssf = (await getJson(`${base}/.well-known/ssf-configuration`)).body;
  const op = (await getJson(`${ssf.issuer}/.well-known/openid-configuration`)).body;
  // A generous fetch timeout: the test machine is shared and may be slow (not a check).
  const jwks = jose.createRemoteJWKSet(new URL(ssf.jwks_uri), { timeoutDuration: 20000 });
  const audience = env.AUDIENCE || env.CLIENT_ID;

  async function verifySet(token) {
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
      issuer: ssf.issuer,
      audience,
      algorithms: ['RS256'],
      typ: 'secevent+jwt',
    });
    checkShape(payload, protectedHeader);
    const duplicate = seen.has(payload.jti);
    seen.add(payload.jti);
    return { payload, protectedHeader, duplicate };
  }

  let accessToken = null;
  if (env.CLIENT_SECRET) {
    const basic = Buffer.from(`${env.CLIENT_ID}:${env.CLIENT_SECRET}`).toString('base64');
    const tok = await getJson(op.token_endpoint, {
      method: 'POST',
      headers: { Authorization: `Basic ${basic}`, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&scope=ssf.manage%20ssf.read',
    });
    if (tok.status !== 200) throw new Error(`token: ${tok.status} ${JSON.stringify(tok.body)}`);
    accessToken = tok.body.access_token;
  }
  const api = (method, url, body) => getJson(url, {
    method,
    headers: { Authorization: `Bearer ${accessToken}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const answer = (status, body) => {
        res.writeHead(status, body ? { 'Content-Type': 'application/json' } : {});
        res.end(body ? JSON.stringify(body) : undefined);
      };
      if (req.method !== 'POST' || req.url !== pushPath) return answer(404, { err: 'invalid_request', description: 'no such endpoint' });
      if (hangFirst > 0) { hangFirst -= 1; out({ hung: true }); return; } // never answered
      if (failFirst > 0) { failFirst -= 1; out({ unavailable: true }); return answer(503); }
      if ((req.headers['content-type'] || '').split(';')[0] !== 'application/secevent+jwt') {
        out({ refused: 'content-type', status: 400 });
        return answer(400, { err: 'invalid_request', description: 'expected application/secevent+jwt' });
      }
      if (env.AUTH_HEADER && req.headers.authorization !== env.AUTH_HEADER) {
        out({ refused: 'authorization', status: 400 });
        return answer(400, { err: 'authentication_failed', description: 'bad authorization header' });
      }
      try {
        const { payload, protectedHeader, duplicate } = await verifySet(Buffer.concat(chunks).toString('ascii'));
        answer(202);
        out({ set: payload, header: protectedHeader, status: 202, duplicate, at: Date.now() });
      } catch (err) {
        // Our own key fetch failing (the transmitter restarting, its JWKS unreachable for a
        // moment) says nothing about the SET: a receiver answers that as temporarily
        // unavailable so the transmitter retries, not 400 (which ends the SET's delivery).
        const jwksDown = err instanceof jose.errors.JWKSTimeout
          || (err instanceof TypeError && /fetch failed/.test(String(err.message)));
        if (jwksDown) {
          out({ unavailable: 'jwks', reason: String(err.message), status: 503 });
          res.writeHead(503, { 'Retry-After': '1' });
          return res.end();
        }
        out({ refused: String(err && err.message || err), status: 400 });
        answer(400, { err: 'invalid_request', description: String(err && err.message || err) });
      }
    });
  });
  await new Promise((resolve) => server.listen(Number(env.STATIC_PORT || 0), '127.0.0.1', resolve));
  const port = server.address().port;

  let streamId = null;
  let config = null;
  if (env.NO_REGISTER !== '1') {
    const delivery = env.MODE === 'poll'
      ? { method: 'urn:ietf:rfc:8936' }
      : {
          method: 'urn:ietf:rfc:8935',
          endpoint_url: `http://127.0.0.1:${port}${pushPath}`,
          ...(env.AUTH_HEADER ? { authorization_header: env.AUTH_HEADER } : {}),
        };
    const events = (env.EVENTS || [DCC, REVOKED, DISABLED].join(',')).split(',');
    const created = await api('POST', ssf.configuration_endpoint, { events_requested: events, delivery, description: 'node receiver' });
    if (created.status !== 201) throw new Error(`create stream: ${created.status} ${JSON.stringify(created.body)}`);
    config = created.body;
    streamId = config.stream_id;
  }
  out({ ready: true, stream_id: streamId, port, config });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const msg = JSON.parse(line);
    try {
      if (msg.cmd === 'verify') {
        const r = await api('POST', ssf.verification_endpoint, { stream_id: streamId, state: msg.state });
        out({ reply: 'verify', status: r.status, body: r.body });
      } else if (msg.cmd === 'status') {
        const r = await api('POST', ssf.status_endpoint, { stream_id: streamId, status: msg.status });
        out({ reply: 'status', status: r.status, body: r.body });
      } else if (msg.cmd === 'get') {
        const r = await api('GET', `${ssf.configuration_endpoint}?stream_id=${streamId}`);
        out({ reply: 'get', status: r.status, body: r.body });
      } else if (msg.cmd === 'poll') {
        const r = await api('POST', config.delivery.endpoint_url, {
          maxEvents: msg.maxEvents ?? 10,
          returnImmediately: msg.returnImmediately ?? false,
          ack: msg.ack || [],
        });
        const sets = [];
        for (const [jti, token] of Object.entries((r.body && r.body.sets) || {})) {
          const v = await verifySet(token);
          if (v.payload.jti !== jti) throw new Error('jti key mismatch');
          sets.push(v.payload);
        }
        out({ reply: 'poll', status: r.status, sets, moreAvailable: r.body && r.body.moreAvailable });
      } else {
        out({ reply: msg.cmd, error: 'unknown command' });
      }
    } catch (err) {
      out({ reply: msg.cmd, error: String(err && err.message || err) });
    }
  }
  server.close();
}

main().catch((err) => { out({ ready: false, error: String(err && err.stack || err) }); process.exit(1); });
