import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { getStream, releaseStreamsOfOrigins } from '../db/repositories/streams.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * WHIP/WHEP over HTTP against a real `relaycast all` process: every kind of bad input gets its
 * status and a problem+json body, and the node keeps serving. No media flows here; see
 * webrtc.test.ts for that.
 */

const SECRET = 'signalling-test-secret-0123456789';
const OFFER = readFileSync(new URL('./fixtures/sdp/chromium-whip-offer.sdp', import.meta.url), 'utf8');

async function problem(res: Response, status: number): Promise<{ title: string; detail: string; status: number }> {
  const body = await res.text();
  assert.equal(res.status, status, body);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  const json = JSON.parse(body);
  assert.equal(json.status, status);
  assert.ok(json.title);
  return json;
}

describe('WHIP and WHEP signalling', () => {
  let testDb: TestDatabase;
  let db: Database;
  let node: RelaycastProcess;
  let token: string;

  const whip = (stream: string, init: RequestInit & { token?: string | null } = {}) =>
    fetch(`${node.url}/whip/${stream}`, {
      method: 'POST',
      body: OFFER,
      ...init,
      headers: {
        'content-type': 'application/sdp',
        ...(init.token === null ? {} : { authorization: `Bearer ${init.token ?? token}` }),
        ...(init.headers as Record<string, string>),
      },
    });

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    node = await startRelaycast({ roles: ['all'], databaseUrl: testDb.url, env: { RELAYCAST_CLUSTER_SECRET: SECRET }, args: ['--rtc-listen-ip', '127.0.0.1', '--ice-servers', 'stun:stun.example.net:3478,turn:alice:s3cret@turn.example.net:3478'] });
    token = await signStreamToken(SECRET, { stream: 'show', action: 'publish' });
  });
  afterEach(async () => {
    const health = await fetch(`${node.url}/healthz`);
    assert.equal(health.status, 200, 'the node still serves');
  });
  after(async () => {
    await node?.stop();
    await db?.close();
    await testDb?.drop();
  });

  it('answers CORS preflight with Accept-Post', async () => {
    const res = await fetch(`${node.url}/whip/show`, { method: 'OPTIONS', headers: { origin: 'https://player.example', 'access-control-request-method': 'POST' } });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('accept-post'), 'application/sdp');
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.match(res.headers.get('access-control-allow-headers') ?? '', /Authorization/);
    assert.match(res.headers.get('access-control-expose-headers') ?? '', /Location/);
  });

  it('refuses missing, forged, expired and misdirected tokens', async () => {
    const missing = await whip('show', { token: null });
    await problem(missing, 401);
    assert.match(missing.headers.get('www-authenticate') ?? '', /^Bearer/);
    await problem(await whip('show', { token: await signStreamToken('another-secret-0123456789', { stream: 'show', action: 'publish' }) }), 401);
    const expired = await new SignJWT({ act: 'publish' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('relaycast')
      .setSubject('show')
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(new TextEncoder().encode(SECRET));
    assert.match((await problem(await whip('show', { token: expired }), 401)).detail, /expired/);
    await problem(await whip('show', { token: await signStreamToken(SECRET, { stream: 'other', action: 'publish' }) }), 403);
    await problem(await whip('show', { token: await signStreamToken(SECRET, { stream: 'show', action: 'play' }) }), 403);
    await problem(await whip('show', { token: 'not-a-jwt' }), 401);
  });

  it('refuses bad bodies: wrong type, empty, 1 MB, malformed SDP', async () => {
    await problem(await whip('show', { headers: { 'content-type': 'text/plain' } }), 415);
    await problem(await whip('show', { body: '' }), 400);
    await problem(await whip('show', { body: `v=0\r\n${'a=x\r\n'.repeat(200_000)}` }), 413);
    await problem(await whip('show', { body: 'hello, I am not SDP' }), 400);
    const noFingerprint = OFFER.replace(/^a=fingerprint:.*\r\n/gm, '');
    assert.match((await problem(await whip('show', { body: noFingerprint }), 400)).detail, /fingerprint/);
  });

  it('refuses stream names outside [A-Za-z0-9_-]{1,64}', async () => {
    for (const name of ['bad.name', 'with%20space', 'x'.repeat(65), '%C3%A9t%C3%A9']) {
      await problem(await whip(name), 400);
    }
  });

  it('refuses an offer with only unsupported codecs with 422, and publishes nothing', async () => {
    const t = await signStreamToken(SECRET, { stream: 'odd', action: 'publish' });
    const unsupported = OFFER.replace(/opus\/48000\/2/g, 'L16/48000/2').replace(/VP8\/90000/g, 'H265/90000');
    const body = await problem(await whip('odd', { body: unsupported, token: t }), 422);
    assert.match(body.detail, /supported are/);
    assert.equal(await getStream(db.knex, 'odd'), undefined);
  });

  it('places a publish in Postgres, refuses a second publisher with 409, and ends it on DELETE', async () => {
    const first = await whip('show');
    assert.equal(first.status, 201, await first.clone().text());
    assert.equal(first.headers.get('content-type'), 'application/sdp; charset=utf-8');
    const location = first.headers.get('location')!;
    assert.match(location, new RegExp(`^${node.url}/whip/show/[A-Za-z0-9_-]{20,}$`));
    assert.match(first.headers.get('etag') ?? '', /^".+"$/);
    assert.match(await first.text(), /a=ice-lite[\s\S]*a=recvonly/);
    assert.equal(
      first.headers.get('link'),
      '<stun:stun.example.net:3478>; rel="ice-server", <turn:turn.example.net:3478>; rel="ice-server"; username="alice"; credential="s3cret"; credential-type="password"',
    );
    const live = await getStream(db.knex, 'show');
    assert.equal(live?.state, 'live');
    assert.equal(live?.ingestProtocol, 'whip');
    assert.deepEqual(live?.codecs, { audio: 'opus', video: 'VP8' });

    await problem(await whip('show'), 409);
    assert.equal((await getStream(db.knex, 'show'))?.state, 'live', 'the first publisher is undisturbed');

    const auth = { authorization: `Bearer ${token}` };
    assert.equal((await fetch(location, { method: 'DELETE', headers: auth })).status, 200);
    await problem(await fetch(location, { method: 'DELETE', headers: auth }), 404);
    assert.equal((await getStream(db.knex, 'show'))?.state, 'idle');
  });

  it('follows RFC 9725 on PATCH: 428 without If-Match, 412 on a stale ETag, 204 for candidates, 200 for an ICE restart', async () => {
    const t = await signStreamToken(SECRET, { stream: 'patchy', action: 'publish' });
    const res = await whip('patchy', { token: t });
    assert.equal(res.status, 201);
    const location = res.headers.get('location')!;
    const etag = res.headers.get('etag')!;
    const patch = (body: string, headers: Record<string, string>) =>
      fetch(location, { method: 'PATCH', body, headers: { authorization: `Bearer ${t}`, 'content-type': 'application/trickle-ice-sdpfrag', ...headers } });
    const candidate = 'a=ice-ufrag:' + /a=ice-ufrag:(\S+)/.exec(OFFER)![1] + '\r\na=ice-pwd:' + /a=ice-pwd:(\S+)/.exec(OFFER)![1] + '\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2122194687 127.0.0.1 50000 typ host\r\n';

    await problem(await patch(candidate, {}), 428);
    await problem(await patch(candidate, { 'if-match': '"stale"' }), 412);
    await problem(await patch(candidate, { 'if-match': etag, 'content-type': 'application/sdp' }), 415);
    assert.equal((await patch(candidate, { 'if-match': etag })).status, 204);

    const restart = await patch('a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n', { 'if-match': '*' });
    assert.equal(restart.status, 200);
    const newEtag = restart.headers.get('etag');
    assert.ok(newEtag && newEtag !== etag, 'a new ETag after an ICE restart');
    const frag = await restart.text();
    assert.match(frag, /^a=ice-ufrag:/m);
    assert.match(frag, /^a=candidate:/m);
    await problem(await patch(candidate, { 'if-match': etag }), 412);

    await problem(await fetch(`${location}x`, { method: 'PATCH', body: candidate, headers: { authorization: `Bearer ${t}`, 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '*' } }), 404);
    await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${t}` } });
  });

  it('places its live streams again when it comes back after being declared dead', async () => {
    const t = await signStreamToken(SECRET, { stream: 'revived', action: 'publish' });
    const res = await whip('revived', { token: t });
    assert.equal(res.status, 201);
    const [node] = (await db.knex('nodes').select('id')) as Array<{ id: string }>;
    // What another node's reaper does when this one misses its heartbeats.
    await db.knex.transaction(async (trx) => {
      await trx('nodes').where({ id: node!.id }).update({ state: 'dead' });
      await releaseStreamsOfOrigins(trx, [node!.id]);
    });
    assert.equal((await getStream(db.knex, 'revived'))?.state, 'idle');
    await waitFor('the stream placed again', async () => (await getStream(db.knex, 'revived'))?.state === 'live', 10_000);
    assert.equal((await getStream(db.knex, 'revived'))?.originNodeId, node!.id);
    await fetch(res.headers.get('location')!, { method: 'DELETE', headers: { authorization: `Bearer ${t}` } });
  });

  it('answers WHEP for a stream that is not live with 404', async () => {
    const res = await fetch(`${node.url}/whep/nobody-here`, { method: 'POST', body: OFFER.replace(/a=sendonly/g, 'a=recvonly'), headers: { 'content-type': 'application/sdp' } });
    await problem(res, 404);
  });
});
