import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { Database } from '../db/Database.ts';
import { listAudit } from '../db/repositories/audit.ts';
import { reportNodeLost } from '../db/repositories/nodes.ts';
import { TestBrowser, publishWithRetry } from '../kit/browser.ts';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, freePort, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playing, playerStats } from './helpers/player.ts';

/**
 * Failures, for real: a Chromium publisher that republishes through the route API, a Chromium
 * viewer on the web player page, a balancer, two origins and two edges (then a third) on Postgres.
 * An edge is stopped with SIGTERM (it drains and moves its viewers), an edge is SIGKILLed, an
 * origin is SIGKILLed; each time the player plays again by itself. Recovery times are printed.
 * A killed node is declared dead before its TTL, by the balancer checking the node a client says
 * it lost; a live node named as lost (by a client or a peer) stays up and keeps its stream.
 */

const SECRET = 'failover-test-secret-0123456789';
const TTL_MS = 3000;
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', String(TTL_MS), '--relay-linger-ms', '1000'];

/** The agent-check line an edge answers HAProxy with. */
function agentLine(port: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const socket = connect(port, '127.0.0.1');
    socket.on('data', (d) => (text += d));
    socket.on('close', () => resolve(text.trim()));
    socket.on('error', () => resolve(''));
  });
}

describe('failover: edge drain, edge death, origin death (Chromium player)', function () {
  this.timeout(180_000);
  let testDb: TestDatabase;
  let db: Database;
  let balancer: RelaycastProcess;
  const nodes = new Map<string, RelaycastProcess>();
  const agentPorts = new Map<string, number>();
  let browser: TestBrowser;
  let publisher: Page;
  let viewer: Page;
  const stream = 'failover-show';

  const startNode = async (role: 'origin' | 'edge', id: string) => {
    const agent = role === 'edge' ? await freePort() : 0;
    const node = await startRelaycast({
      roles: [role],
      databaseUrl: testDb.url,
      env: { RELAYCAST_CLUSTER_SECRET: SECRET },
      args: ['--node-id', id, ...common, ...(agent ? ['--agent-port', String(agent)] : [])],
    });
    nodes.set(id, node);
    agentPorts.set(id, agent);
    return node;
  };
  const row = async (table: string, where: Record<string, unknown>) => db.knex(table).where(where).first();
  const route = async (query: string) => {
    const res = await fetch(`${balancer.url}/v1/route?stream=${stream}&${query}`);
    return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as { choices: Array<{ node: string }> } };
  };
  /** Why the node was declared dead, from the audit log (the declaring node's reason, if it gave one). */
  const deathReason = async (id: string) => {
    const entries = await listAudit(db.knex, { action: 'node.dead' });
    return (entries.find((e) => e.target === id)?.detail as { reason?: string } | undefined)?.reason;
  };

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    [balancer] = await Promise.all([
      startRelaycast({ roles: ['balancer'], databaseUrl: testDb.url, env: { RELAYCAST_CLUSTER_SECRET: SECRET }, args: ['--node-id', 'balancer-1', ...common] }),
      startNode('origin', 'origin-1'),
      startNode('origin', 'origin-2'),
      startNode('edge', 'edge-1'),
      startNode('edge', 'edge-2'),
    ]);
    browser = await TestBrowser.launch();
    publisher = await browser.page(balancer.url);
    viewer = await browser.page(balancer.url);
  });
  after(async () => {
    await publisher?.close().catch(() => undefined);
    await viewer?.close().catch(() => undefined);
    await browser?.close();
    await Promise.all([...nodes.values(), balancer].map((n) => n?.stop()));
    await db?.close();
    await testDb?.drop();
  });

  it('a publisher that retries through the route API, and the player page, play', async () => {
    await publishWithRetry(publisher, balancer.url, stream, await signStreamToken(SECRET, { stream, action: 'publish' }));
    await viewer.goto(`${balancer.url}/play/${stream}`);
    await viewer.evaluate(() => ((window as any).sameDocument = true));
    const stats = await playing(viewer, 'the player to play');
    assert.ok(['edge-1', 'edge-2'].includes(stats.edge!), `played from ${stats.edge}`);
  });

  it('a live node named as lost (a forged hint, a false peer report) is probed, answers, and keeps its viewers and its stream', async () => {
    const { edge } = await playerStats(viewer);
    const originId = (await row('streams', { name: stream })).origin_node_id as string;
    const hinted = await route(`role=edge&lost=${edge}`);
    assert.equal(hinted.status, 200);
    assert.ok(hinted.body.choices.some((c) => c.node === edge), `the live edge is still offered: ${JSON.stringify(hinted.body)}`);
    const bad = await route('role=edge&lost=not%20a%20node!');
    assert.equal(bad.status, 400);
    assert.match(String(bad.type), /^application\/problem\+json/);
    assert.equal((await route('role=edge&lost=no-such-node')).status, 200, 'an unknown node is nobody to check');
    assert.equal(await reportNodeLost(db.knex, { nodeId: originId, reporterId: 'edge-x', reason: 'a false report' }), true);
    assert.equal(await reportNodeLost(db.knex, { nodeId: edge!, reporterId: 'edge-x', reason: 'a false report' }), true);
    // Several heartbeat intervals, registry ticks and hints later, both are up and serving.
    for (let i = 0; i < 8; i++) {
      await route(`role=origin&lost=${originId}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.equal((await row('nodes', { id: originId })).state, 'up');
    assert.equal((await row('nodes', { id: edge })).state, 'up');
    const s = await row('streams', { name: stream });
    assert.equal(s.state, 'live');
    assert.equal(s.origin_node_id, originId, 'the live origin keeps its stream');
    const now = await playerStats(viewer);
    assert.equal(now.state, 'playing');
    assert.equal(now.edge, edge);
  });

  it('preStop drain, then SIGTERM on the edge: it drains (agent-check and registry), moves its viewer, exits 0, and leaves no rows', async () => {
    const before = await playerStats(viewer);
    const id = before.edge!;
    const node = nodes.get(id)!;
    // A Kubernetes preStop hook drains the node ahead of SIGTERM (internal API, cluster secret).
    const drain = (token?: string) => fetch(`${node.url}/internal/v1/drain`, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {} });
    assert.equal((await drain()).status, 401);
    assert.equal((await drain('not-the-secret-0123456789')).status, 401);
    assert.equal((await drain(SECRET)).status, 200);
    assert.equal(await agentLine(agentPorts.get(id)!), 'up drain');
    assert.equal((await row('nodes', { id })).draining, true, 'drained in the registry while it keeps its viewers');
    await waitFor('the balancer to route around the drained edge', async () => {
      const routed = (await (await fetch(`${balancer.url}/v1/route?stream=${stream}&role=edge`)).json()) as { choices: Array<{ node: string }> };
      return routed.choices.length > 0 && routed.choices.every((c) => c.node !== id);
    }, 5000);
    assert.equal((await playerStats(viewer)).sessions, before.sessions, 'the viewer stays until SIGTERM');

    const started = Date.now();
    const stopped = node.stop();
    await waitFor('the agent-check to answer drain', async () => (await agentLine(agentPorts.get(id)!)) === 'up drain', 5000, 100);
    assert.equal((await row('nodes', { id })).draining, true, `drained in the registry while it moves its viewers\n${node.output().slice(-3000)}`);
    const after = await playing(viewer, 'the player on another edge', { afterSession: before.sessions });
    console.log(`      SIGTERM ${id}: player playing again from ${after.edge} after ${Date.now() - started} ms`);
    assert.notEqual(after.edge, id);
    assert.equal(await stopped, 0, 'exit code');
    nodes.delete(id);
    const gone = await row('nodes', { id });
    assert.equal(gone.state, 'gone');
    assert.equal(gone.draining, false, 'the shutdown drain is undone, so the next start is not drained');
    assert.equal((await db.knex('relays').where({ edge_node_id: id })).length, 0);
    assert.equal(await viewer.evaluate(() => (window as any).sameDocument), true, 'no reload');
  });

  it('kill -9 of the edge: the player plays from another, the edge is declared dead before the TTL (on the player\'s or a peer\'s word), the origin frees its relay', async () => {
    await startNode('edge', 'edge-3');
    const before = await playerStats(viewer);
    const id = before.edge!;
    const originId = (await row('streams', { name: stream })).origin_node_id as string;
    const started = Date.now();
    await nodes.get(id)!.kill();
    nodes.delete(id);
    const after = await playing(viewer, 'the player on a live edge', { afterSession: before.sessions });
    console.log(`      kill -9 ${id}: player playing again from ${after.edge} after ${Date.now() - started} ms`);
    assert.notEqual(after.edge, id);
    await waitFor('the dead edge declared dead', async () => (await row('nodes', { id })).state === 'dead', TTL_MS * 4);
    console.log(`      kill -9 ${id}: declared dead after ${Date.now() - started} ms`);
    // Early, not by the TTL: whoever noticed first, the balancer checking what the player named or a
    // registry checking the origin's report of the dropped relay connection.
    const edgeDeath = String(await deathReason(id));
    console.log(`      kill -9 ${id}: ${edgeDeath}`);
    assert.match(edgeDeath, /a client lost it|reported lost by/, 'declared dead early, not by the TTL');
    assert.equal((await db.knex('relays').where({ edge_node_id: id })).length, 0, "the dead edge's relay rows are gone");
    const routed = (await (await fetch(`${balancer.url}/v1/route?stream=${stream}&role=edge`)).json()) as { choices: Array<{ node: string }> };
    assert.ok(!routed.choices.some((c) => c.node === id), 'the balancer no longer routes there');
    const origin = nodes.get(originId)!;
    await waitFor('the origin to have one relay out (to the live edge)', async () => (await metric(origin.url, 'relaycast_relays', { direction: 'out' })) === 1, 15_000);
  });

  it('kill -9 of the origin: the publisher republishes on the other origin, the edges re-pull, the player plays again', async () => {
    const originId = (await row('streams', { name: stream })).origin_node_id as string;
    const other = originId === 'origin-1' ? 'origin-2' : 'origin-1';
    const before = await playerStats(viewer);
    const started = Date.now();
    await nodes.get(originId)!.kill();
    nodes.delete(originId);
    await waitFor('the stream placed on the other origin', async () => {
      const s = await row('streams', { name: stream });
      return s.state === 'live' && s.origin_node_id === other;
    }, 60_000, 250);
    console.log(`      kill -9 ${originId}: stream live on ${other} after ${Date.now() - started} ms`);
    const after = await playing(viewer, 'the player again after the origin died', { afterSession: before.sessions, timeoutMs: 60_000 });
    console.log(`      kill -9 ${originId}: player playing again after ${Date.now() - started} ms (${after.reconnects} reconnects in all)`);
    const { log, losses, maxGapMs } = (await publisher.evaluate(() => ({ log: (window as any).publishLog, losses: (window as any).publishLosses, maxGapMs: (window as any).publishMaxGapMs }))) as {
      log: Array<{ origin: string; status: unknown }>;
      losses: Array<{ origin: string; why: string; at: number }>;
      maxGapMs: number;
    };
    const loss = losses.at(-1);
    console.log(`      kill -9 ${originId}: the publisher noticed after ${loss ? loss.at - started : '?'} ms (${loss?.why}); longest silence from a healthy origin ${Math.round(maxGapMs)} ms`);
    assert.deepEqual(log.at(-1), { origin: other, status: 201 }, JSON.stringify(log));
    assert.equal(loss?.origin, originId, JSON.stringify(losses));
    assert.equal((await row('nodes', { id: originId })).state, 'dead');
    // Early, not by the TTL: the publisher's word, or the edges' reports of their dropped relays.
    const originDeath = String(await deathReason(originId));
    console.log(`      kill -9 ${originId}: ${originDeath}`);
    assert.match(originDeath, /a client lost it|reported lost by/, 'declared dead early, not by the TTL');
    const relays = await db.knex('relays').join('streams', 'streams.id', 'relays.stream_id').where('streams.name', stream);
    assert.ok(relays.length >= 1 && relays.every((r) => r.upstream_node_id === other), 'the edges pull from the new origin');
    // What the operator's webhooks are told, in the outbox's order: the end on the dead origin, the move, the new publish
    // (stream.viewers events come between as the balancers count the player leaving and coming back).
    const events: Array<{ type: string; data: Record<string, unknown> }> = await db.knex('webhook_events').where({ subject: `stream:${stream}` }).orderBy('seq');
    const placements = events.filter((e) => e.type !== 'stream.viewers');
    const tail = placements.slice(-3).map((e) => [e.type, e.data.from ?? null, e.data.to ?? null]);
    assert.deepEqual(tail, [['stream.unpublished', null, null], ['stream.moved', originId, other], ['stream.published', null, null]], JSON.stringify(events.map((e) => e.type)));
  });
});
