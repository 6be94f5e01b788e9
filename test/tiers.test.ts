import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { RELAY_PATH } from '../core/internalApi.ts';
import { Database } from '../db/Database.ts';
import { TestBrowser, play, playbackStats, publish } from '../kit/browser.ts';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, freePort, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { publishTestRtmp } from '../kit/testPublish.ts';
import { startOriginEdge, type OriginEdge } from './helpers/originEdge.ts';

/**
 * Relay tiers, for real: an origin that feeds each stream to one edge (--origin-max-relays 1) and
 * three edges, each with a Chromium viewer on its own WHEP endpoint. Exactly one edge pulls from
 * the origin; the others pull from edges, as the placement table and the admin API show. Then the
 * edge fed by the origin is SIGKILLed: the edges below it re-attach, and their viewers keep
 * decoding in the same sessions (the page has no reconnect logic: kit/browser.ts play()).
 */

const SECRET = 'tiers-test-secret-0123456789abc';
const ADMIN = 'tiers-admin-token-0123456789abc';
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000'];

interface EdgeView {
  id: string;
  viewers: number;
  parent: string;
}

describe('relay tiers: an origin that feeds one edge, three edges, a viewer on each (Chromium)', function () {
  this.timeout(180_000);
  let testDb: TestDatabase;
  let db: Database;
  let balancer: RelaycastProcess;
  let origin: RelaycastProcess;
  const edges = new Map<string, RelaycastProcess>();
  let browser: TestBrowser;
  let publisher: Page;
  const viewers = new Map<string, Page>();
  const stream = 'tiered-show';

  const relays = async () =>
    (await db.knex('relays').join('streams', 'streams.id', 'relays.stream_id').where('streams.name', stream).select('relays.edge_node_id', 'relays.upstream_node_id', 'relays.tree_key', 'relays.path_km')) as Array<{
      edge_node_id: string;
      upstream_node_id: string;
      tree_key: string | number;
      path_km: number | null;
    }>;
  const framesOn = async (id: string) => (await playbackStats(viewers.get(id)!)).framesDecoded;

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    [balancer, origin] = await Promise.all([
      startRelaycast({ roles: ['balancer'], databaseUrl: testDb.url, env, args: ['--node-id', 'balancer-1', ...common] }),
      startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', '--origin-max-relays', '1', ...common] }),
    ]);
    for (const id of ['edge-a', 'edge-b', 'edge-c']) {
      edges.set(id, await startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', id, ...common] }));
    }
    browser = await TestBrowser.launch();
    publisher = await browser.page(origin.url);
  });
  after(async () => {
    await publisher?.close().catch(() => undefined);
    for (const page of viewers.values()) await page.close().catch(() => undefined);
    await browser?.close();
    await Promise.all([...edges.values(), origin, balancer].map((n) => n?.stop()));
    await db?.close();
    await testDb?.drop();
  });

  it('every viewer decodes; exactly one edge pulls from the origin, the others from edges', async () => {
    const published = await publish(publisher, `${origin.url}/whip/${stream}`, await signStreamToken(SECRET, { stream, action: 'publish' }), 'video/VP8');
    assert.equal(published.status, 201, published.body);
    // One at a time, so that each edge finds the ones before it relaying already.
    for (const [id, edge] of edges) {
      const page = await browser.page(edge.url);
      viewers.set(id, page);
      const played = await play(page, `${edge.url}/whep/${stream}`);
      assert.equal(played.status, 201, `${id}: ${played.body}`);
      await waitFor(`${id}'s viewer to decode`, async () => (await framesOn(id)) > 10, 30_000, 200);
    }
    const rows = await relays();
    assert.equal(rows.length, 3);
    const fromOrigin = rows.filter((r) => r.upstream_node_id === 'origin-1');
    assert.equal(fromOrigin.length, 1, `exactly one edge pulls from the origin: ${JSON.stringify(rows)}`);
    for (const row of rows) {
      if (row.upstream_node_id === 'origin-1') continue;
      const parent = rows.find((r) => r.edge_node_id === row.upstream_node_id);
      assert.ok(parent, `${row.edge_node_id} pulls from an edge that relays the stream: ${JSON.stringify(rows)}`);
      assert.ok(Number(parent.tree_key) < Number(row.tree_key), 'a parent has the smaller tree key');
    }
    // Every node sits at 0°, 0° here: each path is 0 km, recorded by the edge with its relay.
    assert.deepEqual(rows.map((r) => r.path_km), [0, 0, 0], 'each relay records its path length');
    assert.equal(await metric(origin.url, 'relaycast_relays', { direction: 'out' }), 1, 'the origin feeds one edge');

    const res = await fetch(`${balancer.url}/api/v1/streams/${stream}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(res.status, 200);
    const view = (await res.json()) as { edges: EdgeView[]; viewers: number };
    await waitFor('the viewer counts recorded', async () => {
      const v = (await (await fetch(`${balancer.url}/api/v1/streams/${stream}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { viewers: number };
      return v.viewers === 3;
    }, 10_000, 200);
    assert.deepEqual(
      view.edges.map((e) => [e.id, e.parent]).sort(),
      rows.map((r) => [r.edge_node_id, r.upstream_node_id]).sort(),
      'the admin API shows the tree',
    );

    // The dashboard draws it: each edge's entry nested in its parent's.
    const dashboard = await browser.page(balancer.url);
    await dashboard.goto(`${balancer.url}/dashboard#token=${ADMIN}`);
    await waitFor('the dashboard to draw the tree', async () => (await dashboard.locator(`tr[data-stream="${stream}"] li[data-edge]`).count()) === 3, 30_000, 250);
    for (const row of rows) {
      const nested = await dashboard.locator(`tr[data-stream="${stream}"] li[data-edge="${row.edge_node_id}"]`).evaluate((li) => li.parentElement?.closest('li')?.getAttribute('data-edge') ?? null);
      assert.equal(nested, row.upstream_node_id === 'origin-1' ? null : row.upstream_node_id, `${row.edge_node_id} drawn below its parent`);
    }
    await dashboard.close();
  });

  it('SIGKILL of the edge fed by the origin: the edges below re-attach and their viewers keep decoding in the same sessions', async () => {
    const root = (await relays()).find((r) => r.upstream_node_id === 'origin-1')!.edge_node_id;
    const others = [...edges.keys()].filter((id) => id !== root);
    const before = new Map<string, number>();
    const frozen = new Map<string, number>();
    for (const id of others) {
      const stats = await playbackStats(viewers.get(id)!);
      before.set(id, stats.framesDecoded);
      frozen.set(id, stats.totalFreezesDuration);
    }
    const killed = Date.now();
    await edges.get(root)!.kill();
    edges.delete(root);

    // Decoding again: 30 frames (1 s of the fake camera) past the count at the kill.
    for (const id of others) {
      await waitFor(`${id}'s viewer decoding again`, async () => (await framesOn(id)) > before.get(id)! + 30, 30_000, 100);
      console.log(`      kill -9 ${root}: ${id}'s viewer 30 frames further ${Date.now() - killed} ms after the kill, same session`);
    }
    for (const id of others) {
      const stats = await playbackStats(viewers.get(id)!);
      assert.equal(stats.connectionState, 'connected', `${id}'s viewer kept its session`);
      console.log(`      kill -9 ${root}: ${id}'s picture froze for ${Math.round((stats.totalFreezesDuration - frozen.get(id)!) * 1000)} ms in all (Chromium's totalFreezesDuration)`);
    }
    await waitFor('the relays re-attached in the placement table', async () => {
      const rows = await relays();
      return rows.length === 2 && rows.every((r) => r.upstream_node_id !== root) && rows.filter((r) => r.upstream_node_id === 'origin-1').length === 1;
    }, 10_000, 200);
    console.log(`      tree after the kill: ${JSON.stringify((await relays()).map((r) => `${r.upstream_node_id} → ${r.edge_node_id}`))}`);
  });

  it('SIGTERM of a parent (it drains): its child moves to the origin once the parent lets go, and its viewer keeps decoding in the same session', async () => {
    const rows = await relays();
    const parent = rows.find((r) => r.upstream_node_id === 'origin-1')!.edge_node_id;
    const child = rows.find((r) => r.upstream_node_id === parent)?.edge_node_id;
    assert.ok(child, `a child below ${parent}: ${JSON.stringify(rows)}`);
    const before = await playbackStats(viewers.get(child)!);
    const started = Date.now();
    const parentNode = edges.get(parent)!;
    assert.equal(await parentNode.stop(), 0, 'the parent exits 0');
    edges.delete(parent);
    await waitFor(`${child}'s relay on the origin`, async () => (await relays()).some((r) => r.edge_node_id === child && r.upstream_node_id === 'origin-1'), 15_000, 200).catch(
      (error: unknown) => {
        // What each edge's relay did, for a failure seen only in CI.
        const relayLines = (node: RelaycastProcess) => node.output().split('\n').filter((l) => /relay|attach|upstream|mov/i.test(l)).slice(-20).join('\n');
        throw new Error(`${(error as Error).message}\n${parent}:\n${relayLines(parentNode)}\n${child}:\n${relayLines(edges.get(child)!)}`, { cause: error });
      },
    );
    await waitFor(`${child}'s viewer decoding on`, async () => (await framesOn(child)) > before.framesDecoded + 30, 30_000, 100);
    const after = await playbackStats(viewers.get(child)!);
    assert.equal(after.connectionState, 'connected', `${child}'s viewer kept its session`);
    console.log(
      `      SIGTERM ${parent}: ${child} on the origin, its viewer 30 frames further ${Date.now() - started} ms after; frozen ${Math.round((after.totalFreezesDuration - before.totalFreezesDuration) * 1000)} ms in all`,
    );
  });

  it('counts a relay before it opens it: two edges asking at once past --origin-max-relays 1, one is fed, the other refused (relay-full)', async () => {
    // What re-attaching edges do when their parent dies: ask the origin at the same moment.
    const second = 'tiered-race';
    const page = await browser.page(origin.url);
    try {
      const published = await publish(page, `${origin.url}/whip/${second}`, await signStreamToken(SECRET, { stream: second, action: 'publish' }), 'video/VP8');
      assert.equal(published.status, 201, published.body);
      const aborts = [new AbortController(), new AbortController()];
      const ask = async (edgeNodeId: string, signal: AbortSignal) =>
        fetch(`${origin.url}${RELAY_PATH}`, {
          method: 'POST',
          signal,
          headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
          // A pipe's far end that never answers: the origin sends its media to a closed port.
          body: JSON.stringify({ stream: second, edgeNodeId, ip: '127.0.0.1', port: await freePort(), srtpParameters: { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: randomBytes(44).toString('base64') }, paused: true }),
        });
      try {
        const answers = await Promise.all([ask('edge-race-1', aborts[0]!.signal), ask('edge-race-2', aborts[1]!.signal)]);
        const statuses = answers.map((r) => r.status).sort();
        const refusal = await answers.find((r) => r.status !== 200)?.text();
        assert.deepEqual(statuses, [200, 503], `one fed, one refused: ${refusal}`);
        assert.equal((JSON.parse(refusal!) as { type: string }).type.endsWith('relay-full'), true, 'the refusal is relay-full');
        // A pipe the origin's worker could not connect is a bad request, not a server error.
        const badSuite = await fetch(`${origin.url}${RELAY_PATH}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
          body: JSON.stringify({ stream: second, edgeNodeId: 'edge-race-3', ip: '127.0.0.1', port: 9, srtpParameters: { cryptoSuite: 'AES_CM_128_HMAC_SHA1_80', keyBase64: randomBytes(30).toString('base64') } }),
        });
        assert.equal(badSuite.status, 400, await badSuite.text());
      } finally {
        for (const abort of aborts) abort.abort();
      }
    } finally {
      await page.close();
    }
  });
});

describe('relay tiers: a Constrained Baseline viewer two tiers down gets the RTMP stream\'s rendition through its parent', function () {
  this.timeout(180_000);
  let cluster: OriginEdge;
  let child: RelaycastProcess;
  let browser: TestBrowser;
  let publisher: ChildProcess | undefined;

  before(async () => {
    cluster = await startOriginEdge({ secret: SECRET, admin: ADMIN, originArgs: ['--origin-max-relays', '1'] });
    child = await startRelaycast({
      roles: ['edge'],
      databaseUrl: cluster.testDb.url,
      env: { RELAYCAST_CLUSTER_SECRET: SECRET },
      args: ['--node-id', 'edge-2', ...common],
    });
    browser = await TestBrowser.launch();
  });
  after(async () => {
    publisher?.kill('SIGKILL');
    await browser?.close();
    await child?.stop();
    await cluster?.stop();
  });

  it('plays the stream as sent on the first edge, and its renditions (Constrained Baseline, VP8) on the edge below it', async () => {
    const name = 'tiered-rtmp';
    const { rtmpUrl } = await cluster.createStream(name);
    // x264 High without B-frames is passed through as it is: a Constrained Baseline viewer needs the rendition.
    publisher = spawn(
      'ffmpeg',
      ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
        '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-bf', '0', '-tune', 'zerolatency', '-g', '30', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '120', '-f', 'flv', rtmpUrl],
      { stdio: 'ignore' },
    );
    await waitFor('the stream live', async () => (await cluster.db.knex('streams').where({ name }).first())?.state === 'live', 20_000, 200);
    const first = await browser.page(cluster.edge.url);
    assert.equal((await play(first, `${cluster.edge.url}/whep/${name}`)).status, 201);
    await waitFor('the first edge\'s viewer to decode', async () => (await playbackStats(first)).framesDecoded > 10, 30_000, 200);

    const second = await browser.page(child.url);
    const played = await play(second, `${child.url}/whep/${name}`, undefined, { h264Profiles: ['42e01f'] });
    assert.equal(played.status, 201, played.body);
    assert.match(played.body, /profile-level-id=42e01f/i, 'answered with the viewer\'s Constrained Baseline');
    await waitFor('the baseline viewer to decode', async () => (await playbackStats(second)).framesDecoded > 10, 30_000, 200);
    // A viewer without H.264 (as Firefox without OpenH264) on the same edge: the VP8 rendition comes through the first edge too.
    const third = await browser.page(child.url);
    const vp8 = await play(third, `${child.url}/whep/${name}`, undefined, { codecs: ['video/VP8'] });
    assert.equal(vp8.status, 201, vp8.body);
    await waitFor('the VP8 viewer to decode', async () => {
      const stats = await playbackStats(third);
      return stats.framesDecoded > 10 && stats.videoCodec === 'video/VP8';
    }, 30_000, 200);
    const rows = await cluster.db.knex('relays').join('streams', 'streams.id', 'relays.stream_id').where('streams.name', name).select('relays.edge_node_id', 'relays.upstream_node_id');
    assert.deepEqual(
      rows.map((r) => `${r.upstream_node_id} → ${r.edge_node_id}`).sort(),
      ['edge-1 → edge-2', 'origin-1 → edge-1'],
      'the second edge pulls from the first',
    );
  });
});

describe('relay tiers: a parent at its egress capacity refuses a child, which attaches elsewhere and plays (ffmpeg RTMP, Chromium)', function () {
  this.timeout(180_000);
  let cluster: OriginEdge;
  const edges = new Map<string, RelaycastProcess>();
  let browser: TestBrowser;
  let publisher: ChildProcess | undefined;
  const eu = ['--region', 'eu', '--lat', '48.9', '--lon', '2.3'];
  let agentPort: number;
  /** What edge-a's HAProxy agent-check answers now. */
  const agentLine = async () => {
    const socket = connect(agentPort, '127.0.0.1');
    let line = '';
    for await (const chunk of socket) line += String(chunk);
    return line.trim();
  };

  before(async () => {
    // edge-1 (region "default") and edge-a feed from the origin, which feeds two edges at most;
    // edge-b, in edge-a's region, then asks the origin (full), edge-a (its own region: asked
    // before the far edge-1), then edge-1. edge-a's network sends 3 Mbit/s at most, less than its
    // viewer and a child of a 3 Mbit/s stream. Its heartbeat is a minute apart, so the registry
    // still shows it sending nothing when edge-b looks (a heartbeat behind, as any parent can be),
    // with room for a relay as edge-b reckons one (RELAY_BITRATE, 2.7 Mbit/s): edge-b asks, and
    // edge-a answers for itself with its own measure. Every node's TTL is two minutes, so that no
    // one takes edge-a for dead meanwhile.
    const patient = ['--node-ttl-ms', '120000'];
    cluster = await startOriginEdge({ secret: SECRET, admin: ADMIN, args: patient, originArgs: ['--origin-max-relays', '2'] });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
    agentPort = await freePort();
    const [a, b] = await Promise.all([
      startRelaycast({
        roles: ['edge'],
        databaseUrl: cluster.testDb.url,
        env,
        args: ['--node-id', 'edge-a', ...eu, '--egress-capacity', '3M', '--agent-port', String(agentPort), ...common, '--heartbeat-ms', '60000', ...patient],
      }),
      startRelaycast({ roles: ['edge'], databaseUrl: cluster.testDb.url, env, args: ['--node-id', 'edge-b', ...eu, ...common, ...patient] }),
    ]);
    edges.set('edge-a', a).set('edge-b', b);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    publisher?.kill('SIGKILL');
    await browser?.close();
    await Promise.all([...edges.values()].map((e) => e.stop()));
    await cluster?.stop();
  });

  it('edge-b pulls from edge-1, not from edge-a, which refused it for egress; every viewer decodes', async () => {
    const name = 'egress-show';
    const { rtmpUrl } = await cluster.createStream(name);
    // A constant 3 Mbit/s, so that one viewer and one child are about 6 Mbit/s whenever edge-a measures.
    publisher = publishTestRtmp(rtmpUrl, { seconds: 120, bframes: false, kbps: 3000 });
    await waitFor('the stream live', async () => (await cluster.db.knex('streams').where({ name }).first())?.state === 'live', 20_000, 200);
    const watch = async (id: string, url: string) => {
      const page = await browser.page(url);
      const played = await play(page, `${url}/whep/${name}`);
      assert.equal(played.status, 201, `${id}: ${played.body}`);
      await waitFor(`${id}'s viewer to decode`, async () => (await playbackStats(page)).framesDecoded > 10, 30_000, 200);
    };
    await watch('edge-a', edges.get('edge-a')!.url);
    await watch('edge-1', cluster.edge.url);
    await watch('edge-b', edges.get('edge-b')!.url);

    const rows = await cluster.db.knex('relays').join('streams', 'streams.id', 'relays.stream_id').where('streams.name', name).select('relays.edge_node_id', 'relays.upstream_node_id');
    assert.deepEqual(
      rows.map((r) => `${r.upstream_node_id} → ${r.edge_node_id}`).sort(),
      ['edge-1 → edge-b', 'origin-1 → edge-1', 'origin-1 → edge-a'],
      'edge-b attached below edge-1',
    );
    assert.ok((await metric(edges.get('edge-a')!.url, 'relaycast_relay_refusals_total', { reason: 'egress' }))! >= 1, 'edge-a refused a relay for egress');
    assert.ok((await metric(cluster.origin.url, 'relaycast_relay_refusals_total', { reason: 'limit' }))! >= 1, 'the origin refused one at --origin-max-relays');
    assert.equal((await metric(edges.get('edge-a')!.url, 'relaycast_relays', { direction: 'out' })) ?? 0, 0, 'edge-a feeds no edge');
    // The scrape above measured edge-a's load: its viewer alone passes its egress capacity, so HAProxy is told to send it no one.
    assert.equal(await agentLine(), 'up drain', 'edge-a\'s agent-check drains it');
  });
});

describe('relay tiers: a full origin makes room for an edge on the way to its far relay, which moves below it (Chromium)', function () {
  this.timeout(180_000);
  let testDb: TestDatabase;
  let db: Database;
  let origin: RelaycastProcess;
  let far: RelaycastProcess;
  let near: RelaycastProcess;
  let browser: TestBrowser;
  const pages: Page[] = [];
  const stream = 'room-show';
  const relays = async () =>
    (await db.knex('relays').join('streams', 'streams.id', 'relays.stream_id').where('streams.name', stream).orderBy('relays.edge_node_id').select('relays.edge_node_id', 'relays.upstream_node_id', 'relays.path_km')) as Array<{
      edge_node_id: string;
      upstream_node_id: string;
      path_km: number | null;
    }>;

  before(async () => {
    // The origin at 0°, 0° feeds each stream to one edge. edge-far (0°, 40° E: 4,448 km) asks
    // first and takes it. edge-near (0°, 5° E: 556 km) comes next: edge-far is no bounded parent
    // for it (4,448 + 3,892 km against 2 × 556 + 200), so it asks the full origin to make room,
    // and edge-far's path through edge-near (556 + 3,892 km) is as long as its own.
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
    const limit = ['--origin-max-relays', '1'];
    origin = await startRelaycast({ roles: ['origin', 'balancer'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', ...limit, ...common] });
    [far, near] = await Promise.all([
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-far', '--region', 'far', '--lat', '0', '--lon', '40', ...limit, ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-near', '--region', 'near', '--lat', '0', '--lon', '5', ...limit, ...common] }),
    ]);
    browser = await TestBrowser.launch();
  });
  after(async () => {
    for (const page of pages) await page.close().catch(() => undefined);
    await browser?.close();
    await Promise.all([far, near, origin].map((n) => n?.stop()));
    await db?.close();
    await testDb?.drop();
  });

  it('edge-near takes the origin\'s relay, edge-far moves below it, and edge-far\'s viewer keeps decoding in the same session', async () => {
    const publisher = await browser.page(origin.url);
    pages.push(publisher);
    const published = await publish(publisher, `${origin.url}/whip/${stream}`, await signStreamToken(SECRET, { stream, action: 'publish' }), 'video/VP8');
    assert.equal(published.status, 201, published.body);
    const watch = async (edge: RelaycastProcess) => {
      const page = await browser.page(edge.url);
      pages.push(page);
      const played = await play(page, `${edge.url}/whep/${stream}`);
      assert.equal(played.status, 201, played.body);
      await waitFor('the viewer to decode', async () => (await playbackStats(page)).framesDecoded > 10, 30_000, 200);
      return page;
    };
    const farViewer = await watch(far);
    assert.deepEqual((await relays()).map((r) => [r.edge_node_id, r.upstream_node_id]), [['edge-far', 'origin-1']]);

    await watch(near);
    await waitFor('edge-far below edge-near in the placement table', async () => {
      const rows = await relays();
      return rows.length === 2 && rows.some((r) => r.edge_node_id === 'edge-far' && r.upstream_node_id === 'edge-near');
    }, 15_000, 200).catch((error: unknown) => {
      const lines = (node: RelaycastProcess) => node.output().split('\n').filter((l) => /relay|room|mov|upstream/i.test(l)).slice(-10).join('\n');
      throw new Error(`${(error as Error).message}\norigin:\n${lines(origin)}\nedge-far:\n${lines(far)}`, { cause: error });
    });
    const rows = await relays();
    assert.deepEqual(rows.map((r) => [r.edge_node_id, r.upstream_node_id]), [['edge-far', 'edge-near'], ['edge-near', 'origin-1']]);
    const farPath = rows[0]!.path_km!;
    assert.ok(farPath > 4_440 && farPath <= 2 * 4_448 + 200, `edge-far's path through edge-near is recorded, and bounded: ${farPath} km`);
    assert.equal(await metric(origin.url, 'relaycast_relay_demotions_total'), 1, 'the origin made room once');
    await waitFor('the origin back at its limit', async () => (await metric(origin.url, 'relaycast_relays', { direction: 'out' })) === 1, 10_000, 200);

    const before = await playbackStats(farViewer);
    await waitFor('edge-far\'s viewer decoding on', async () => (await playbackStats(farViewer)).framesDecoded > before.framesDecoded + 30, 30_000, 100);
    const after = await playbackStats(farViewer);
    assert.equal(after.connectionState, 'connected', 'edge-far\'s viewer kept its session');
    console.log(`      edge-far moved below edge-near (path ${Math.round(farPath)} km); its picture froze for ${Math.round(after.totalFreezesDuration * 1000)} ms in all (Chromium's totalFreezesDuration)`);
  });
});
