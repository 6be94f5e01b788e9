import assert from 'node:assert/strict';
import SwaggerParser from '@apidevtools/swagger-parser';
import { SignJWT } from 'jose';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { hashSecret } from '../db/repositories/streamKeys.ts';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playClient, publishClient, type ClientRun } from '../kit/wrtc.ts';

/**
 * The admin REST API on a real balancer, origin and edge (Postgres): every endpoint's success,
 * validation, 401 and 403; pagination; the OpenAPI document; refusals in the audit log; stream
 * tokens on WHIP and WHEP; the first admin token; the POST rate limit.
 */

const ADMIN = 'admin-test-token-0123456789';
const SECRET = 'admin-test-secret-0123456789';
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '500'];

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
}

type Json = Record<string, any>;

describe('admin API', function () {
  let testDb: TestDatabase;
  let db: Database;
  let balancer: RelaycastProcess;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;

  const api = (path: string, init: { method?: string; body?: unknown; token?: string | null; raw?: string; type?: string } = {}) =>
    fetch(`${balancer.url}/api/v1${path}`, {
      method: init.method ?? 'GET',
      headers: {
        ...(init.body !== undefined || init.raw !== undefined ? { 'content-type': init.type ?? 'application/json' } : {}),
        ...(init.token === null ? {} : { authorization: `Bearer ${init.token ?? ADMIN}` }),
      },
      body: init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body)),
    });
  const json = async (res: Response, status: number): Promise<Json> => {
    const text = await res.text();
    assert.equal(res.status, status, text);
    return text ? (JSON.parse(text) as Json) : {};
  };
  const problem = async (res: Response, status: number): Promise<Problem> => {
    assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const body = (await json(res, status)) as Problem;
    assert.equal(body.status, status);
    return body;
  };

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    [balancer, origin, edge] = await Promise.all([
      startRelaycast({ roles: ['balancer'], databaseUrl: testDb.url, env, args: ['--node-id', 'balancer-1', '--region', 'eu', ...common] }),
      startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', '--region', 'eu', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-1', '--region', 'us', ...common] }),
    ]);
  });
  after(async () => {
    await Promise.all([edge?.stop(), origin?.stop(), balancer?.stop()]);
    await db?.close();
    await testDb?.drop();
  });

  describe('the OpenAPI document', () => {
    it('is a valid OpenAPI 3.1 document, served without a token', async () => {
      const doc = await json(await api('/openapi.json', { token: null }), 200);
      assert.equal(doc.openapi, '3.1.0');
      await SwaggerParser.validate(structuredClone(doc) as never);
    });

    it('matches the routes: every documented operation is served, undocumented methods are not', async () => {
      const doc = await json(await api('/openapi.json', { token: null }), 200);
      const operations: Array<[string, string]> = [];
      for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
        for (const method of Object.keys(item)) operations.push([method, path]);
      }
      assert.ok(operations.length >= 17, `${operations.length} operations`);
      for (const [method, path] of operations) {
        if (path === '/openapi.json') continue;
        const concrete = path.replace('{name}', 'some-stream').replace('{id}', '1');
        const res = await api(concrete, { method: method.toUpperCase(), token: null });
        assert.equal(res.status, 401, `${method} ${path} is served and asks for a token`);
        assert.ok(doc.paths[path][method].security[0].adminToken.length === 1, `${method} ${path} names its scope`);
      }
      for (const path of Object.keys(doc.paths as Json)) {
        const undocumented = ['get', 'post', 'patch', 'delete'].filter((m) => !(m in doc.paths[path]));
        for (const method of undocumented) {
          const res = await api(path.replace('{name}', 'x').replace('{id}', '1'), { method: method.toUpperCase(), token: null });
          assert.equal(res.status, 404, `${method} ${path} is not a route`);
        }
      }
    });
  });

  describe('admin tokens and scopes', () => {
    let readOnly: Json;

    it('refuses a missing, unknown or malformed admin token with 401 and records each refusal', async () => {
      for (const token of [null, 'wrong-token-0123456789', '']) {
        const res = await api('/streams', { token });
        const body = await problem(res, 401);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="relaycast-admin"/);
        assert.match(body.detail, /admin token/);
      }
      await waitFor('the refusals in the audit table', async () => {
        const rows = await db.knex('audit').where({ action: 'auth.refused', outcome: 'denied', target: 'GET /api/v1/streams' });
        return rows.length >= 3;
      }, 10_000);
      const serialized = JSON.stringify(await db.knex('audit').where({ action: 'auth.refused' }));
      assert.ok(!serialized.includes('wrong-token-0123456789'), 'the refused token is not in the audit log');
    });

    it('keeps tokens hashed: the operator token is stored as its sha256 only', async () => {
      const rows = await db.knex('tokens').where({ kind: 'admin' });
      assert.deepEqual(rows.map((r) => r.hash), [hashSecret(ADMIN)]);
      assert.ok(!JSON.stringify(rows).includes(ADMIN));
      assert.deepEqual(rows[0].scopes, ['read', 'write']);
    });

    it('creates a read-only token: reads work, writes get 403 and an audit row', async () => {
      readOnly = await json(await api('/tokens', { method: 'POST', body: { label: 'grafana', scopes: ['read'] } }), 201);
      assert.match(readOnly.token, /^rca_[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(readOnly.scopes, ['read']);
      await json(await api('/streams', { token: readOnly.token }), 200);
      await json(await api('/nodes', { token: readOnly.token }), 200);
      await json(await api('/audit', { token: readOnly.token }), 200);
      const refused = await problem(await api('/streams', { method: 'POST', body: { name: 'nope' }, token: readOnly.token }), 403);
      assert.match(refused.detail, /"write" scope/);
      await problem(await api('/nodes/edge-1/drain', { method: 'POST', token: readOnly.token }), 403);
      await problem(await api('/tokens', { method: 'POST', body: { label: 'x', scopes: ['write'] }, token: readOnly.token }), 403);
      await waitFor('the 403 in the audit table', async () => {
        const rows = await db.knex('audit').where({ action: 'auth.refused', target: 'POST /api/v1/streams' }).whereRaw(`detail->>'status' = '403'`);
        return rows.length === 1 && rows[0].actor === 'client:127.0.0.1';
      }, 10_000);
    });

    it('lists tokens without secrets, validates new ones, and revokes', async () => {
      const list = await json(await api('/tokens'), 200);
      assert.deepEqual(list.items.map((t: Json) => t.label), ['RELAYCAST_ADMIN_TOKEN', 'grafana']);
      assert.ok(!JSON.stringify(list).includes(readOnly.token));
      await problem(await api('/tokens', { method: 'POST', body: { label: 'x', scopes: ['root'] } }), 400);
      await problem(await api('/tokens', { method: 'POST', body: { label: 'x', scopes: [] } }), 400);
      await problem(await api('/tokens', { method: 'POST', body: { scopes: ['read'] } }), 400);
      await problem(await api('/tokens/abc', { method: 'DELETE' }), 400);
      await problem(await api('/tokens/999999', { method: 'DELETE' }), 404);
      await json(await api(`/tokens/${readOnly.id}`, { method: 'DELETE' }), 204);
      await problem(await api('/streams', { token: readOnly.token }), 401);
      await problem(await api(`/tokens/${readOnly.id}`, { method: 'DELETE' }), 404);
    });
  });

  describe('streams', () => {
    it('creates a stream with its key, tokens and URLs, and refuses a second one by that name', async () => {
      const body = await json(await api('/streams', { method: 'POST', body: { name: 'show' } }), 201);
      assert.match(body.streamKey, /^sk_[A-Za-z0-9_-]{40,}$/);
      assert.equal(body.rtmpUrl, `rtmp://127.0.0.1:${origin.rtmpPort}/live/${body.streamKey}`, 'the origin, not the balancer');
      assert.equal(body.whipUrl, `${balancer.url}/whip/show`);
      assert.equal(body.whepUrl, `${balancer.url}/whep/show`);
      assert.equal(body.playerUrl, `${balancer.url}/play/show`);
      assert.equal(body.publishToken.split('.').length, 3, 'a JWT');
      assert.equal(body.playToken.split('.').length, 3, 'a JWT');
      assert.equal(body.state, 'idle');
      assert.equal(body.private, false);
      const row = await db.knex('streams').where({ name: 'show' }).first();
      assert.ok(row, 'a row in Postgres');
      await problem(await api('/streams', { method: 'POST', body: { name: 'show' } }), 409);
    });

    it('refuses bad input: names, unknown fields, types, malformed JSON, other content types, oversized bodies', async () => {
      for (const body of [{ name: 'bad name' }, { name: '' }, { name: 'x'.repeat(65) }, { name: 'ok', extra: 1 }, { name: 'ok', private: 'yes' }, {}, []]) {
        const p = await problem(await api('/streams', { method: 'POST', body }), 400);
        assert.equal(p.title, 'Invalid Request', JSON.stringify(body));
      }
      await problem(await api('/streams', { method: 'POST', raw: '{"name":' }), 400);
      await problem(await api('/streams', { method: 'POST', raw: 'name=x', type: 'application/x-www-form-urlencoded' }), 415);
      await problem(await api('/streams', { method: 'POST', raw: JSON.stringify({ name: 'big', pad: 'x'.repeat(100_000) }) }), 413);
      await problem(await api('/streams/bad%20name'), 400);
      assert.equal((await db.knex('streams').whereIn('name', ['ok', 'big'])).length, 0, 'nothing was created');
    });

    it('pages through streams with limit and cursor, and filters by state', async () => {
      for (const name of ['page-a', 'page-b', 'page-c', 'page-d']) await json(await api('/streams', { method: 'POST', body: { name } }), 201);
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 10; i++) {
        const page: Json = await json(await api(`/streams?limit=2${cursor ? `&cursor=${cursor}` : ''}`), 200);
        assert.ok(page.items.length <= 2);
        seen.push(...page.items.map((s: Json) => s.name));
        cursor = page.next;
        if (!cursor) break;
      }
      assert.deepEqual(seen, ['page-a', 'page-b', 'page-c', 'page-d', 'show']);
      assert.deepEqual((await json(await api('/streams?state=live'), 200)).items, []);
      await problem(await api('/streams?limit=0'), 400);
      await problem(await api('/streams?limit=501'), 400);
      await problem(await api('/streams?state=dead'), 400);
      await problem(await api('/streams?colour=red'), 400);
    });

    it('gets one stream, makes it private and public again, 404 for an unknown one', async () => {
      const one = await json(await api('/streams/show'), 200);
      assert.equal(one.name, 'show');
      assert.deepEqual(one.edges, []);
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { private: true } }), 200)).private, true);
      assert.equal((await db.knex('streams').where({ name: 'show' }).first()).private, true);
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { private: false } }), 200)).private, false);
      await problem(await api('/streams/show', { method: 'PATCH', body: { private: 'no' } }), 400);
      await problem(await api('/streams/nobody'), 404);
      await problem(await api('/streams/nobody', { method: 'PATCH', body: { private: true } }), 404);
      await problem(await api('/streams/nobody', { method: 'DELETE' }), 404);
    });

    it('sets a stream\'s RTMP ladder (heights, "off", or null for the origin\'s) and refuses what is not a ladder', async () => {
      assert.equal((await json(await api('/streams/show'), 200)).rtmpLadder, null, 'the origin\'s by default');
      const set = await json(await api('/streams/show', { method: 'PATCH', body: { rtmpLadder: [180, 720, 360] } }), 200);
      assert.deepEqual(set.rtmpLadder, [720, 360, 180], 'highest first');
      assert.equal(set.private, false, 'the rest stays');
      assert.deepEqual((await db.knex('streams').where({ name: 'show' }).first()).rtmp_ladder, [720, 360, 180]);
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { rtmpLadder: 'off' } }), 200)).rtmpLadder, 'off');
      assert.deepEqual((await db.knex('streams').where({ name: 'show' }).first()).rtmp_ladder, []);
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { private: true } }), 200)).rtmpLadder, 'off', 'untouched by other changes');
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { private: false, rtmpLadder: null } }), 200)).rtmpLadder, null);
      for (const rtmpLadder of [[720], [720, 360, 180, 90], [721, 360], [720, 640], [4320, 2160], 'on', '720,360', {}]) {
        const p = await problem(await api('/streams/show', { method: 'PATCH', body: { rtmpLadder } }), 400);
        assert.equal(p.title, 'Invalid Request', JSON.stringify(rtmpLadder));
      }
      const created = await json(await api('/streams', { method: 'POST', body: { name: 'laddered', rtmpLadder: [1080, 540] } }), 201);
      assert.deepEqual(created.rtmpLadder, [1080, 540]);
      assert.deepEqual((await json(await api('/streams?limit=500'), 200)).items.find((s: Json) => s.name === 'laddered').rtmpLadder, [1080, 540]);
      await json(await api('/streams/laddered', { method: 'DELETE' }), 204);
    });

    it('sets a stream\'s HLS packaging (on-demand, always, off, or null for the origin\'s) and names its HLS URL', async () => {
      const shown = await json(await api('/streams/show'), 200);
      assert.equal(shown.hls, null, 'the origin\'s by default');
      assert.equal(shown.hlsViewers, 0);
      assert.deepEqual(shown.hlsEdges, []);
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { hls: 'always' } }), 200)).hls, 'always');
      assert.equal((await db.knex('streams').where({ name: 'show' }).first()).hls, 'always');
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { private: true } }), 200)).hls, 'always', 'untouched by other changes');
      assert.equal((await json(await api('/streams/show', { method: 'PATCH', body: { private: false, hls: null } }), 200)).hls, null);
      for (const hls of ['sometimes', true, 1, {}]) await problem(await api('/streams/show', { method: 'PATCH', body: { hls } }), 400);
      const created = await json(await api('/streams', { method: 'POST', body: { name: 'no-hls', hls: 'off' } }), 201);
      assert.equal(created.hls, 'off');
      assert.match(created.hlsUrl, /\/hls\/no-hls\/index\.m3u8$/);
      await json(await api('/streams/no-hls', { method: 'DELETE' }), 204);
    });

    it('rotates and revokes the RTMP key (the old key stops working in Postgres)', async () => {
      const rotated = await json(await api('/streams/page-a/key', { method: 'POST' }), 201);
      assert.match(rotated.streamKey, /^sk_/);
      const live = await db.knex('tokens').where({ kind: 'stream_key' }).whereNull('revoked_at').join('streams', 'streams.id', 'tokens.stream_id').where('streams.name', 'page-a');
      assert.deepEqual(live.map((t) => t.hash), [hashSecret(rotated.streamKey)]);
      await json(await api('/streams/page-a/key', { method: 'DELETE' }), 204);
      assert.equal((await db.knex('tokens').where({ kind: 'stream_key', hash: hashSecret(rotated.streamKey) }).whereNull('revoked_at')).length, 0);
      await problem(await api('/streams/nobody/key', { method: 'POST' }), 404);
      await problem(await api('/streams/nobody/key', { method: 'DELETE' }), 404);
    });

    it('signs stream tokens for one action, with an expiry', async () => {
      const t = await json(await api('/streams/page-b/tokens', { method: 'POST', body: { action: 'play', ttlSeconds: 120 } }), 201);
      const payload = JSON.parse(Buffer.from(t.token.split('.')[1], 'base64url').toString()) as Json;
      assert.equal(payload.sub, 'page-b');
      assert.equal(payload.act, 'play');
      assert.ok(payload.exp - payload.iat === 120);
      await problem(await api('/streams/page-b/tokens', { method: 'POST', body: { action: 'admin' } }), 400);
      await problem(await api('/streams/page-b/tokens', { method: 'POST', body: { action: 'play', ttlSeconds: 5 } }), 400);
      await problem(await api('/streams/nobody/tokens', { method: 'POST', body: { action: 'play' } }), 404);
    });
  });

  describe('a live stream', () => {
    const stream = 'live-show';

    it('shows its origin, edges and viewers; a private one asks the viewer for a valid play token; DELETE kicks everyone', async function () {
      await json(await api('/streams', { method: 'POST', body: { name: stream } }), 201);
      const publishToken = await signStreamToken(SECRET, { stream, action: 'publish' });
      // Both run until the stream is deleted under them (or the finally below), however slow this
      // machine is: their own time limit is only a backstop.
      const publisher = publishClient(`${origin.url}/whip/${stream}`, publishToken, 150);
      let viewer: ClientRun | undefined;
      try {
        await publisher.next('connected');
        viewer = playClient(`${edge.url}/whep/${stream}`, { seconds: 150 });
        await viewer.next('first-frame');
        await waitFor('one viewer on edge-1 in the API', async () => {
          const s = await json(await api(`/streams/${stream}`), 200);
          return s.viewers === 1 && s.edges.length === 1;
        }, 15_000);
        const view = await json(await api(`/streams/${stream}`), 200);
        assert.equal(view.state, 'live');
        assert.deepEqual(view.origin, { id: 'origin-1', region: 'eu' });
        assert.equal(view.ingestProtocol, 'whip');
        assert.deepEqual(view.edges, [{ id: 'edge-1', region: 'us', viewers: 1, parent: 'origin-1' }]);
        assert.deepEqual((await json(await api('/streams?state=live'), 200)).items.map((s: Json) => s.name), [stream]);

        // Private: the edge asks a play token for exactly this stream and action, unexpired and signed by the cluster.
        await json(await api(`/streams/${stream}`, { method: 'PATCH', body: { private: true } }), 200);
        const whep = async (token?: string) =>
          fetch(`${edge.url}/whep/${stream}`, { method: 'POST', headers: { 'content-type': 'application/sdp', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: 'v=0\r\n' });
        const expired = await new SignJWT({ act: 'play' })
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('relaycast')
          .setSubject(stream)
          .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
          .sign(new TextEncoder().encode(SECRET));
        await problem(await whep(), 401);
        assert.match((await problem(await whep(expired), 401)).detail, /expired/);
        await problem(await whep(await signStreamToken('forged-secret-0123456789', { stream, action: 'play' })), 401);
        await problem(await whep(await signStreamToken(SECRET, { stream: 'show', action: 'play' })), 403);
        await problem(await whep(publishToken), 403);
        await problem(await whep(ADMIN), 401);
        const { token: playToken } = await json(await api(`/streams/${stream}/tokens`, { method: 'POST', body: { action: 'play' } }), 201);
        const privateViewer = playClient(`${edge.url}/whep/${stream}`, { seconds: 4, token: playToken });
        await privateViewer.next('first-frame');
        await privateViewer.done;

        await json(await api(`/streams/${stream}`, { method: 'DELETE' }), 204);
        // Kicked, as the nodes count it: the origin holds no stream, the edge no viewer. (The
        // clients notice in their own time: libwebrtc may wait for ICE consent to lapse.)
        await waitFor('the origin to hold no stream', async () => (await metric(origin.url, 'relaycast_streams')) === 0, 20_000);
        await waitFor('the edge to hold no viewer', async () => (await metric(edge.url, 'relaycast_viewers')) === 0, 20_000);
        assert.equal(await db.knex('streams').where({ name: stream }).first(), undefined, 'the row is gone');
        await waitFor('the relay row gone', async () => (await db.knex('relays')).length === 0, 10_000);
        const audit = await json(await api(`/audit?target=${stream}&action=stream.delete`), 200);
        assert.equal(audit.items[0].detail.kicked, true);
        assert.equal(audit.items[0].actor, 'admin:1');
      } finally {
        publisher.kill();
        viewer?.kill();
        await Promise.all([publisher.done, viewer?.done]);
      }
    });
  });

  describe('nodes', () => {
    it('lists nodes with role, region, load, health and drain; filters and pages', async () => {
      const all = await json(await api('/nodes'), 200);
      assert.deepEqual(all.items.map((n: Json) => n.id), ['balancer-1', 'edge-1', 'origin-1']);
      const e = all.items.find((n: Json) => n.id === 'edge-1');
      assert.deepEqual(e.roles, ['edge']);
      assert.equal(e.region, 'us');
      assert.equal(e.state, 'up');
      assert.equal(e.draining, false);
      assert.ok(e.load >= 0 && e.load <= 1.5, `load ${e.load}`);
      assert.deepEqual((await json(await api('/nodes?role=edge'), 200)).items.map((n: Json) => n.id), ['edge-1']);
      assert.deepEqual((await json(await api('/nodes?region=eu'), 200)).items.map((n: Json) => n.id), ['balancer-1', 'origin-1']);
      const first = await json(await api('/nodes?limit=1'), 200);
      assert.deepEqual(first.items.map((n: Json) => n.id), ['balancer-1']);
      assert.deepEqual((await json(await api(`/nodes?limit=2&cursor=${first.next}`), 200)).items.map((n: Json) => n.id), ['edge-1', 'origin-1']);
      await problem(await api('/nodes?role=viewer'), 400);
    });

    it('drains and undrains a node (Postgres row and the listing), 404 for an unknown one', async () => {
      assert.deepEqual(await json(await api('/nodes/edge-1/drain', { method: 'POST' }), 200), { id: 'edge-1', draining: true });
      assert.equal((await db.knex('nodes').where({ id: 'edge-1' }).first()).draining, true);
      assert.equal((await json(await api('/nodes?role=edge'), 200)).items[0].draining, true);
      assert.deepEqual(await json(await api('/nodes/edge-1/undrain', { method: 'POST' }), 200), { id: 'edge-1', draining: false });
      await problem(await api('/nodes/nobody/drain', { method: 'POST' }), 404);
    });

    it('serves the capacity plan per edge region on the API and on /metrics', async () => {
      const plan = await json(await api('/capacity'), 200);
      assert.equal(plan.settings.targetUtilisation, 0.7);
      assert.deepEqual(plan.regions.map((r: Json) => [r.region, r.edges, r.desiredEdges]), [['us', 1, 1]]);
      const metrics = await (await fetch(`${balancer.url}/metrics`)).text();
      assert.match(metrics, /^relaycast_region_desired_edges\{region="us",node="balancer-1"\} 1$/m);
    });

    it('answers 409 for an HAProxy reload on a balancer that runs none', async () => {
      await problem(await api('/haproxy/reload', { method: 'POST' }), 409);
    });
  });

  describe('audit', () => {
    it('tells who did what, newest first, with filters and pages', async () => {
      const drains = await json(await api('/audit?action=node.drain'), 200);
      assert.equal(drains.items[0].actor, 'admin:1');
      assert.equal(drains.items[0].target, 'edge-1');
      assert.equal(drains.items[0].outcome, 'ok');
      const denied = await json(await api('/audit?outcome=denied&limit=2'), 200);
      assert.equal(denied.items.length, 2);
      assert.ok(denied.items.every((e: Json) => e.action === 'auth.refused' && e.actor === 'client:127.0.0.1'));
      const next = await json(await api(`/audit?outcome=denied&limit=2&cursor=${denied.next}`), 200);
      assert.ok(Number(next.items[0].id) < Number(denied.items[1].id), 'the next page is older');
      await problem(await api('/audit?cursor=abc'), 400);
      await problem(await api('/audit?outcome=maybe'), 400);
    });
  });
});

describe('admin API: the first admin token and the POST rate limit', () => {
  it('makes a token on first start, prints it once (not into the log), and not again on restart', async () => {
    const testDb = await createTestDatabase();
    const first = await startRelaycast({ roles: ['balancer'], databaseUrl: testDb.url });
    try {
      await waitFor('the token printed', () => /rca_[A-Za-z0-9_-]{43}/.test(first.output()), 10_000);
      const token = /rca_[A-Za-z0-9_-]{43}/.exec(first.output())![0];
      const logLines = first.output().split('\n').filter((l) => l.startsWith('{'));
      assert.ok(logLines.length > 0 && logLines.every((l) => !l.includes(token)), 'the token is in no log line');
      const res = await fetch(`${first.url}/api/v1/streams`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
    } finally {
      await first.stop();
    }
    const again = await startRelaycast({ roles: ['balancer'], databaseUrl: testDb.url });
    try {
      assert.doesNotMatch(again.output(), /rca_/);
    } finally {
      await again.stop();
      await testDb.drop();
    }
  });

  it('answers 429 problem+json with Retry-After past the limit of POSTs per address; GETs go on', async () => {
    const node = await startRelaycast({ roles: ['balancer'], env: { RELAYCAST_ADMIN_TOKEN: ADMIN, RELAYCAST_POST_RATE_LIMIT: '3' } });
    try {
      const post = (i: number) =>
        fetch(`${node.url}/api/v1/streams`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: `s${i}` }) });
      for (let i = 0; i < 3; i++) assert.equal((await post(i)).status, 201);
      const limited = await post(3);
      assert.equal(limited.status, 429);
      assert.match(limited.headers.get('content-type') ?? '', /problem\+json/);
      assert.equal(limited.headers.get('retry-after'), '60');
      const whep = await fetch(`${node.url}/whep/s1`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' });
      assert.equal(whep.status, 429, 'WHEP POSTs count too');
      assert.equal((await fetch(`${node.url}/api/v1/streams`, { headers: { authorization: `Bearer ${ADMIN}` } })).status, 200);
    } finally {
      await node.stop();
    }
  });
});
