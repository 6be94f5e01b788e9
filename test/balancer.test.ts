import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { getNode, upsertNode } from '../db/repositories/nodes.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { runRelaycast, startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playClient, publishClient } from '../kit/wrtc.ts';

/**
 * The balancer in front of two edges in two regions, on a real Postgres: clients from source
 * addresses pinned to each region (127.0.0.2, 127.0.0.3) are routed to their region's edge, spill
 * to the other when it drains or dies, and a WHEP viewer follows the 307 and plays.
 */

const SECRET = 'balancer-test-secret-0123456789';
const ADMIN = 'balancer-test-admin-0123456789';

/** A request from a chosen local source address, redirects not followed. */
function from(source: string, url: string, method = 'GET', body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, localAddress: source, headers: body ? { 'content-type': 'application/sdp' } : {} }, (res) => {
      let data = '';
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('geo balancer with edges in two regions', function () {
  let testDb: TestDatabase;
  let origin: RelaycastProcess;
  let originUs: RelaycastProcess;
  let eu: RelaycastProcess;
  let us: RelaycastProcess;
  let balancer: RelaycastProcess;
  const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
  // A TTL of 3 s keeps a node that a loaded test machine delays for a second from being declared dead.
  const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '300', '--node-ttl-ms', '3000'];
  const route = async (source: string, stream = 'show') => JSON.parse((await from(source, `${balancer.url}/v1/route?stream=${stream}&role=edge`)).body) as { choices: Array<{ node: string; url: string }> };
  const firstChoice = async (source: string) => (await route(source)).choices[0]?.node;

  before(async () => {
    testDb = await createTestDatabase();
    const db = testDb.url;
    [origin, originUs, eu, us, balancer] = await Promise.all([
      startRelaycast({ roles: ['origin'], databaseUrl: db, env, args: ['--node-id', 'origin-eu', '--region', 'eu-west', '--lat', '48.8', '--lon', '2.3', ...common] }),
      startRelaycast({ roles: ['origin'], databaseUrl: db, env, args: ['--node-id', 'origin-us', '--region', 'us-east', '--lat', '38.9', '--lon', '-77.0', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: db, env, args: ['--node-id', 'edge-eu', '--region', 'eu-west', '--lat', '48.8', '--lon', '2.3', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: db, env, args: ['--node-id', 'edge-us', '--region', 'us-east', '--lat', '38.9', '--lon', '-77.0', ...common] }),
      startRelaycast({
        roles: ['balancer'],
        databaseUrl: db,
        env,
        args: ['--node-id', 'balancer', '--geo-pins', '127.0.0.1/32=eu-west,127.0.0.2/32=eu-west,127.0.0.3/32=us-east', ...common],
      }),
    ]);
    await waitFor('both edges in the route', async () => (await route('127.0.0.2')).choices.length === 2, 10_000);
  });
  after(async () => {
    for (const node of [balancer, us, eu, originUs, origin]) await node?.stop();
    await testDb?.drop();
  });

  it('routes each pinned client to the edge of its region, by route API and by 307', async () => {
    const fromEu = await route('127.0.0.2');
    assert.deepEqual(fromEu.choices.map((c) => c.node), ['edge-eu', 'edge-us'], 'its region first, the other as spill-over');
    assert.equal(await firstChoice('127.0.0.3'), 'edge-us');

    const redirect = await from('127.0.0.3', `${balancer.url}/whep/show`, 'POST', 'v=0\r\n');
    assert.equal(redirect.status, 307);
    assert.equal(redirect.headers.location, `${us.url}/whep/show`);
    const publisher = await from('127.0.0.2', `${balancer.url}/whip/show`, 'POST', 'v=0\r\n');
    assert.equal(publisher.status, 307);
    assert.equal(publisher.headers.location, `${origin.url}/whip/show`, 'publishers go to an origin');
  });

  it('sends RTMP publishers to the origin of their region: route API and the admin API\'s rtmpUrl', async () => {
    const origins = async (source: string) =>
      (JSON.parse((await from(source, `${balancer.url}/v1/route?stream=show&role=origin`)).body) as { choices: Array<{ node: string; rtmpUrl: string | null }> }).choices;
    assert.deepEqual((await origins('127.0.0.3')).map((c) => [c.node, c.rtmpUrl]), [
      ['origin-us', `rtmp://127.0.0.1:${originUs.rtmpPort}/live`],
      ['origin-eu', `rtmp://127.0.0.1:${origin.rtmpPort}/live`],
    ]);
    // A stream created by an operator in us-east names the us-east origin for OBS; its new key too.
    const created = await new Promise<{ status: number; body: { name: string; streamKey: string; rtmpUrl: string } }>((resolve, reject) => {
      const req = request(`${balancer.url}/api/v1/streams`, { method: 'POST', localAddress: '127.0.0.3', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } }, (res) => {
        let data = '';
        res.on('data', (d) => (data += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(data) }));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ name: 'obs-show' }));
    });
    assert.equal(created.status, 201);
    assert.equal(created.body.rtmpUrl, `rtmp://127.0.0.1:${originUs.rtmpPort}/live/${created.body.streamKey}`);
    const rotated = await fetch(`${balancer.url}/api/v1/streams/obs-show/key`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const key = (await rotated.json()) as { streamKey: string; rtmpUrl: string };
    assert.equal(key.rtmpUrl, `rtmp://127.0.0.1:${origin.rtmpPort}/live/${key.streamKey}`, 'from 127.0.0.1 (eu-west): the eu-west origin');
  });

  it('sends new viewers to the other region while an edge drains', async () => {
    const admin = (path: string) => fetch(`${balancer.url}/api/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal((await admin('/nodes/edge-eu/drain')).status, 200);
    try {
      assert.deepEqual((await route('127.0.0.2')).choices.map((c) => c.node), ['edge-us']);
    } finally {
      assert.equal((await admin('/nodes/edge-eu/undrain')).status, 200);
    }
    assert.equal(await firstChoice('127.0.0.2'), 'edge-eu');
    assert.equal((await admin('/nodes/nobody/drain')).status, 404);
  });

  it('plays through the 307: a WHEP viewer at the balancer lands on its edge', async () => {
    const token = await signStreamToken(SECRET, { stream: 'via-balancer', action: 'publish' });
    const publisher = publishClient(`${origin.url}/whip/via-balancer`, token, 12);
    try {
      await publisher.next('connected');
      // The Node client's fetch follows the 307 and repeats the POST at the edge (from 127.0.0.1: eu-west).
      const viewer = playClient(`${balancer.url}/whep/via-balancer`, { seconds: 4 });
      const answer = await viewer.next('answer');
      assert.equal(answer.status, 201);
      assert.match(String(answer.location), new RegExp(`^${eu.url}/whep/via-balancer/`), 'the session lives on the eu edge');
      const stats = (await viewer.done).find((l) => l.event === 'stats') as unknown as { viewers: Array<{ frames: number }> };
      assert.ok(stats.viewers[0]!.frames > 10, JSON.stringify(stats));
    } finally {
      publisher.kill();
      await publisher.done;
    }
  });

  it('stops routing to an edge that died', async () => {
    await us.kill();
    await waitFor('edge-us out of the route', async () => (await route('127.0.0.3')).choices.every((c) => c.node !== 'edge-us'), 15_000);
    assert.equal(await firstChoice('127.0.0.3'), 'edge-eu', 'the us client spills to eu');
  });
});

describe('relaycast drain / undrain (CLI)', () => {
  it('drains a node in the registry and refuses an unknown one', async () => {
    const testDb = await createTestDatabase();
    const db = Database.open({ url: testDb.url });
    try {
      await db.migrate();
      await upsertNode(db.knex, { id: 'edge-x', roles: ['edge'], region: 'r', lat: 0, lon: 0, publicUrl: 'http://x', announcedIp: '127.0.0.1', version: 't', capacity: 1, egressCapacity: 1e9, agentPort: null, rtmpUrl: null }, { viewers: 0, streams: 0, bitrateOut: 0, cpu: 0 });
      const run = async (args: string[]) => {
        const child = runRelaycast(args, { DATABASE_URL: testDb.url });
        const [code] = await once(child, 'exit');
        return code as number;
      };
      assert.equal(await run(['drain', 'edge-x']), 0);
      assert.equal((await getNode(db.knex, 'edge-x'))?.draining, true);
      assert.equal(await run(['undrain', 'edge-x']), 0);
      assert.equal((await getNode(db.knex, 'edge-x'))?.draining, false);
      assert.equal(await run(['drain', 'nobody']), 1);
    } finally {
      await db.close();
      await testDb.drop();
    }
  });
});
