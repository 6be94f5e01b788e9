import assert from 'node:assert/strict';
import { request } from 'node:http';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, freePort, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * A real HAProxy run by the balancer in front of edges in two regions: the geo map sends each
 * pinned source address (127.0.0.2 → eu-west, 127.0.0.3 → us-east) to its region, agent-check
 * drains, health checks drop a dead edge, a new edge arrives by a hitless reload.
 */

const SECRET = 'haproxy-test-secret-0123456789';
const ADMIN = 'haproxy-test-admin-0123456789';

/** Which node answers a WHEP preflight sent through HAProxy from `source` (null when none does). */
function servedBy(source: string, port: number, stream = 'show'): Promise<string | null> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: `/whep/${stream}`, method: 'OPTIONS', localAddress: source, timeout: 3000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 204 ? String(res.headers['x-relaycast-node']) : null));
    });
    req.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code}`));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

describe('HAProxy run by the balancer', function () {
  let testDb: TestDatabase;
  let haproxyPort: number;
  const nodes = new Map<string, RelaycastProcess>();
  let balancer: RelaycastProcess;
  const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
  const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '300', '--node-ttl-ms', '1500'];
  const edge = async (id: string, region: string, lat: number, lon: number) => {
    const node = await startRelaycast({
      roles: ['edge'],
      databaseUrl: testDb.url,
      env,
      args: ['--node-id', id, '--region', region, '--lat', String(lat), '--lon', String(lon), '--agent-port', String(await freePort()), ...common],
    });
    nodes.set(id, node);
    return node;
  };
  const admin = (path: string) => fetch(`${balancer.url}/api/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });

  before(async () => {
    testDb = await createTestDatabase();
    haproxyPort = await freePort();
    await Promise.all([edge('edge-eu', 'eu-west', 48.8, 2.3), edge('edge-us', 'us-east', 38.9, -77.0)]);
    balancer = await startRelaycast({
      roles: ['balancer'],
      databaseUrl: testDb.url,
      env,
      args: ['--node-id', 'balancer', '--haproxy-bin', 'haproxy', '--haproxy-bind', `127.0.0.1:${haproxyPort}`, '--geo-pins', '127.0.0.2/32=eu-west,127.0.0.3/32=us-east', ...common],
    });
    await waitFor('HAProxy routing to both regions', async () => (await servedBy('127.0.0.2', haproxyPort)) === 'edge-eu' && (await servedBy('127.0.0.3', haproxyPort)) === 'edge-us', 20_000);
  });
  after(async () => {
    await balancer?.stop();
    for (const node of nodes.values()) await node.stop();
    await testDb?.drop();
  });

  it('sends each source address to the edge of its region, and the rest to the balancer', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal(await servedBy('127.0.0.2', haproxyPort), 'edge-eu');
      assert.equal(await servedBy('127.0.0.3', haproxyPort), 'edge-us');
    }
    const health = await fetch(`http://127.0.0.1:${haproxyPort}/healthz`);
    assert.equal(health.headers.get('x-relaycast-node'), 'balancer');
    // The route API behind HAProxy sees the client, not HAProxy (option forwardfor, trusted loopback).
    const route = await new Promise<{ client: { address: string; location: { region?: string } } }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: haproxyPort, path: '/v1/route?stream=show', localAddress: '127.0.0.3' }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(JSON.parse(body)));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(route.client.address, '127.0.0.3');
    assert.equal(route.client.location.region, 'us-east');
  });

  it('moves new requests to the backup region while an edge drains (agent-check)', async () => {
    assert.equal((await admin('/nodes/edge-eu/drain')).status, 200);
    try {
      await waitFor('eu requests on the us edge', async () => (await servedBy('127.0.0.2', haproxyPort)) === 'edge-us', 15_000);
    } finally {
      assert.equal((await admin('/nodes/edge-eu/undrain')).status, 200);
    }
    await waitFor('eu requests back on the eu edge', async () => (await servedBy('127.0.0.2', haproxyPort)) === 'edge-eu', 15_000);
  });

  it('keeps every request answered across three reloads under a steady load', async () => {
    const reloadsBefore = (await metric(balancer.url, 'relaycast_haproxy_reloads_total')) ?? 0;
    let sent = 0;
    let failed = 0;
    let running = true;
    const outcomes: string[] = [];
    const worker = async () => {
      // Bounded: stops when the reloads are done, or after 600 requests per worker.
      for (let i = 0; running && i < 600; i++) {
        sent++;
        const node = await servedBy('127.0.0.2', haproxyPort);
        if (node !== 'edge-eu') {
          failed++;
          outcomes.push(String(node));
        }
      }
    };
    const load = Promise.all([worker(), worker(), worker(), worker()]);
    // Requests answered before, between and after the reloads, however slowly this machine serves them.
    const moreAnswers = async () => {
      const from = sent;
      await waitFor('20 more requests answered', async () => sent >= from + 20, 20_000);
    };
    for (let i = 0; i < 3; i++) {
      await moreAnswers();
      assert.equal((await admin('/haproxy/reload')).status, 204);
    }
    await moreAnswers();
    running = false;
    await load;
    assert.equal(await metric(balancer.url, 'relaycast_haproxy_reloads_total'), reloadsBefore + 3);
    console.log(`      ${sent} requests across the reloads`);
    assert.equal(failed, 0, `${failed} of ${sent} requests failed: ${outcomes.join(', ')}`);
  });

  it('adds a new edge by a reload, and stops sending to a dead one', async () => {
    const dead = nodes.get('edge-us')!;
    await edge('edge-us-2', 'us-east', 40.7, -74.0);
    await waitFor('the new edge in HAProxy', async () => {
      const seen = new Set<string | null>();
      // Signalling is hashed by stream: different streams spread over the region's edges.
      for (let i = 0; i < 12; i++) seen.add(await servedBy('127.0.0.3', haproxyPort, `stream-${i}`));
      return seen.has('edge-us-2');
    }, 20_000);

    await dead.kill();
    const killedAt = Date.now();
    let last: Array<string | null> = [];
    await waitFor('every request answered, none by the dead edge', async () => {
      last = [];
      for (let i = 0; i < 10; i++) last.push(await servedBy('127.0.0.3', haproxyPort, `stream-${i}`));
      return last.every((node) => node === 'edge-us-2' || node === 'edge-eu');
    }, 20_000).catch((error) => {
      throw new Error(`${(error as Error).message}; last round answered by: ${last.join(', ')}`);
    });
    console.log(`      (dead edge out of rotation after ${Date.now() - killedAt} ms)`);
  });
});
