import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderHaproxy, type HaproxyLayout } from '../balancer/HaproxyConfig.ts';
import type { NodeSnapshot } from '../balancer/policies.ts';
import { FakeEdge, servedBy } from '../kit/FakeEdge.ts';
import { freePort } from '../kit/postgres.ts';
import { spawnTracked, stopProcess, waitFor } from '../kit/processes.ts';

/**
 * What `hash-balance-factor` does to a stream's signalling in a real HAProxy (2.6) running the
 * config the balancer renders, in front of ten stand-in edges (kit/FakeEdge.ts) of one region:
 * while one request of a stream is in flight on its edge, where does the stream's next request
 * go? Another edge would open a second relay of the stream. HAProxy gives each server its weight's
 * share of ceil((requests in flight + 1) × factor / 100) slots, at least one; with few requests
 * in flight that is one slot, so any factor up to ~10 × the servers' count moves it
 * (bench/simulator/haproxy.ts models the same rule).
 */

const EDGES = 10;
const STREAMS = Array.from({ length: 10 }, (_, i) => `bounded-${i}`);
/** How long a `/slow` request stays in flight (ms): long enough for three requests after it on loopback. */
const SLOW_MS = 400;

function snapshot(edge: FakeEdge): NodeSnapshot {
  return { id: edge.id, roles: ['edge'], region: 'eu', lat: 48.8, lon: 2.3, publicUrl: edge.url, capacity: 100, viewers: 0, cpu: 0, draining: false, streams: new Set(), agentPort: edge.agentPort };
}

describe('HAProxy bounded-load hashing: a stream\'s next request while one is in flight on its edge (HAProxy 2.6)', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-haproxy-bounded-'));
  const edges: FakeEdge[] = [];
  let port: number;
  let layout: HaproxyLayout;

  before(async () => {
    for (let i = 0; i < EDGES; i++) edges.push(await FakeEdge.start(`e${i}`, SLOW_MS));
    port = await freePort();
    layout = {
      nodeId: 'test',
      bind: `127.0.0.1:${port}`,
      mapPath: join(dir, 'geo.map'),
      runtimeSocket: join(dir, 'runtime.sock'),
      serverStateFile: join(dir, 'server-state'),
      balancer: `127.0.0.1:${await freePort()}`,
      defaultRegion: 'eu',
    };
  });

  after(async () => {
    for (const edge of edges) await edge.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Requests the edges have had (health checks aside): the test's own, one at a time. */
  const total = () => edges.reduce((sum, e) => sum + e.requests, 0);

  /**
   * Whether the stream's next request goes to another edge than the one holding its slow request.
   * Counted only when the slow one was still unanswered as the next one came back (on a loaded
   * machine a request can take longer than SLOW_MS); asked again otherwise, a bounded number of
   * times. The edge holding the slow one is the stream's edge as HAProxy sees it then (a health
   * check failing under load can move a stream between the test's looks).
   */
  async function movedWhileInFlight(stream: string): Promise<boolean> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const before = total();
      let slowAnswered = false;
      const slow = servedBy(port, `/whep/${stream}/slow`).finally(() => (slowAnswered = true));
      await waitFor(`the slow request of ${stream} at an edge`, () => total() > before, 5000, 5);
      const next = await servedBy(port, `/whep/${stream}`);
      const inFlight = !slowAnswered;
      const holder = await slow;
      assert.ok(edges.some((e) => e.id === holder), `the slow request of ${stream} answered by an edge: ${holder}`);
      if (inFlight) return next !== holder;
    }
    return assert.fail(`${stream}: no request came back while its slow one was in flight, in 5 tries`);
  }

  /** With HAProxy at `factor`: per stream, its edge, and the edge its requests reach while a slow one is in flight there. */
  async function moved(factor: number): Promise<number> {
    const rendered = renderHaproxy(edges.map(snapshot), [{ cidr: '10.0.0.0/8', region: 'eu' }], layout);
    assert.match(rendered.cfg, /hash-balance-factor 125\n/, 'the rendered config bounds load at 125');
    const cfg = factor === 0 ? rendered.cfg.replace(/ *hash-balance-factor 125\n/, '') : rendered.cfg.replace('hash-balance-factor 125', `hash-balance-factor ${factor}`);
    writeFileSync(layout.mapPath, rendered.map);
    writeFileSync(join(dir, 'haproxy.cfg'), cfg);
    const haproxy = spawnTracked('haproxy', ['-W', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
    try {
      await waitFor(`HAProxy (factor ${factor}) serving every edge`, async () => {
        const seen = new Set<string | null>();
        for (let i = 0; i < 40; i++) seen.add(await servedBy(port, `/whep/probe-${i}`));
        return edges.every((e) => seen.has(e.id));
      }, 20_000, 200);
      let count = 0;
      for (const stream of STREAMS) if (await movedWhileInFlight(stream)) count++;
      return count;
    } finally {
      await stopProcess(haproxy, 5000);
    }
  }

  it('sends every stream\'s next request to a second edge at 125 (and at 200), none without a bound or at 2000', async () => {
    const results: Record<number, number> = {};
    for (const factor of [0, 125, 200, 2000]) results[factor] = await moved(factor);
    console.log(`      (streams whose next request went to a second edge, of ${STREAMS.length}: ${JSON.stringify(results)})`);
    assert.equal(results[0], 0, 'no bound: a stream stays on its edge');
    assert.equal(results[125], STREAMS.length, '125: one request in flight is the edge’s whole share');
    assert.equal(results[200], STREAMS.length, '200: still one slot per edge');
    assert.equal(results[2000], 0, '2000: two slots per edge at one request in flight');
  });
});
