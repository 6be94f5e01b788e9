import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { HaproxyRuntime } from '../balancer/HaproxyRuntime.ts';
import { Database } from '../db/Database.ts';
import { TestBrowser } from '../kit/browser.ts';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, freePort, type TestDatabase } from '../kit/postgres.ts';
import { spawnTracked, stopProcess, waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { playing, playerStats } from './helpers/player.ts';

/**
 * RTMP publisher failover through one address, with clients we did not write: the balancer's
 * HAProxy takes RTMP (--haproxy-rtmp-port) and forwards it to the live origins; ffmpeg publishes
 * x264 with its defaults (High, B-frames) to the address the admin API hands out, with its own
 * reconnect (the fifo muxer's recovery); a Chromium viewer plays on the web player page. The
 * origin holding the stream is SIGKILLed: ffmpeg reconnects through the same address, lands on the
 * other origin once the dead one's placement is released (node TTL), and the player plays again by
 * itself. Then a third origin joins (HAProxy's runtime API, no reload) and the same happens again.
 * Recovery times are printed; nothing is asserted on them.
 */

const SECRET = 'rtmp-failover-secret-0123456789';
const ADMIN = 'rtmp-failover-admin-0123456789';
/** Short heartbeats and TTL, as in test/failover.test.ts: a dead origin's placement is released after the TTL. */
const TTL_MS = 3000;
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', String(TTL_MS), '--relay-linger-ms', '1000'];

/**
 * ffmpeg publishing a 640x360 test picture and a tone with x264's defaults (High profile,
 * B-frames; 2 s keyframes as OBS sets them) and AAC, through the fifo muxer: when the RTMP output
 * fails it reopens it every second, forever, dropping what queued meanwhile (an outage longer than
 * the queue's ~1.5 s of packets flushes it) and restarting at a key frame. Its stderr lines are
 * kept with their times.
 */
function publishWithRecovery(url: string): { child: ChildProcess; log: Array<{ at: number; line: string }> } {
  const child = spawnTracked(
    'ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'info', '-nostats', '-nostdin', '-re'],
      ...['-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100'],
      // The fifo muxer names no default codecs, so ffmpeg picks no streams for it by itself.
      ...['-map', '0:v', '-map', '1:a'],
      ...['-c:v', 'libx264', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '600'],
      ...['-f', 'fifo', '-fifo_format', 'flv', '-attempt_recovery', '1', '-recover_any_error', '1', '-recovery_wait_time', '1'],
      ...['-drop_pkts_on_overflow', '1', '-queue_size', '120', '-restart_with_keyframe', '1', url],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const log: Array<{ at: number; line: string }> = [];
  let rest = '';
  child.stderr!.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split(/\r?\n/);
    rest = lines.pop()!;
    for (const line of lines) if (line.trim()) log.push({ at: Date.now(), line });
  });
  return { child, log };
}

describe('RTMP publisher failover through HAProxy (ffmpeg with its own reconnect, Chromium player)', function () {
  this.timeout(240_000);
  let testDb: TestDatabase;
  let db: Database;
  let balancer: RelaycastProcess;
  let rtmpPort: number;
  const nodes = new Map<string, RelaycastProcess>();
  let browser: TestBrowser;
  let viewer: Page;
  let publisher: ReturnType<typeof publishWithRecovery> | undefined;
  const stream = 'rtmp-failover';

  const startNode = async (role: 'origin' | 'edge', id: string) => {
    const node = await startRelaycast({ roles: [role], databaseUrl: testDb.url, env: { RELAYCAST_CLUSTER_SECRET: SECRET }, args: ['--node-id', id, ...common] });
    nodes.set(id, node);
    return node;
  };
  const streamRow = async () => db.knex('streams').where({ name: stream }).first();
  const runtime = () => new HaproxyRuntime(join(balancer.dataDir, 'haproxy', 'runtime.sock'));
  /** The RTMP backend's servers in HAProxy: name → UP (op state 2) and its current connections. */
  const rtmpServers = async () => {
    const up = new Map((await runtime().serversState('rtmp_origins')).map((s) => [s.name, s.opState === 2]));
    // `show stat` CSV: pxname, svname, qcur, qmax, scur (current sessions), …
    const rows = (await runtime().command('show stat')).split('\n').map((l) => l.split(',')).filter((f) => f[0] === 'rtmp_origins' && up.has(f[1]!));
    return new Map(rows.map((f) => [f[1]!, { up: up.get(f[1]!)!, sessions: Number(f[4]) }]));
  };
  /** Rethrows a failed wait with what ffmpeg and the origins said. */
  const explained = (error: Error): never => {
    const origins = [...nodes].filter(([id]) => id.startsWith('origin')).map(([id, node]) => `--- ${id} ---\n${node.output().slice(-3000)}`);
    throw new Error(`${error.message}\n--- ffmpeg ---\n${publisher?.log.map((l) => l.line).join('\n').slice(-3000)}\n${origins.join('\n')}`, { cause: error });
  };
  const reloads = async () => (await metric(balancer.url, 'relaycast_haproxy_reloads_total')) ?? 0;

  /** kill -9 of the origin holding the stream; ffmpeg, the registry and the player are timed until they recover on `expected`. */
  const killOriginHolding = async (expected: string) => {
    const dead = (await streamRow()).origin_node_id as string;
    assert.notEqual(dead, expected);
    const before = await playerStats(viewer);
    const recoveries = publisher!.log.length;
    const started = Date.now();
    await nodes.get(dead)!.kill();
    nodes.delete(dead);
    const since = (at: number) => `${at - started} ms`;
    await waitFor('ffmpeg to reconnect through HAProxy to the live origin', async () => (await rtmpServers()).get(expected)?.sessions === 1, 60_000, 100);
    const connected = Date.now();
    await waitFor('the stream live on the other origin', async () => {
      const row = await streamRow();
      return row.state === 'live' && row.origin_node_id === expected;
    }, 60_000, 100).catch(explained);
    const live = Date.now();
    const after = await playing(viewer, 'the player again after the origin died', { afterSession: before.sessions, timeoutMs: 60_000 });
    const played = Date.now();
    const fifo = publisher!.log.slice(recoveries).filter((l) => /Recovery (successful|failed)|Error|error/.test(l.line));
    const firstRecovery = fifo.find((l) => /Recovery successful/.test(l.line));
    console.log(
      `      kill -9 ${dead}: ffmpeg reconnected (first fifo recovery) ${firstRecovery ? since(firstRecovery.at) : 'n/a'}, ` +
        `connected to ${expected} through HAProxy ${since(connected)}, stream live there ${since(live)}, player playing ${since(played)} ` +
        `(${fifo.filter((l) => /Recovery successful/.test(l.line)).length} fifo recoveries, ${after.reconnects} player reconnects in all)`,
    );
    assert.equal(publisher!.child.exitCode, null, 'the same ffmpeg process, reconnected by itself');
    await waitFor('HAProxy to drop the dead origin (runtime API, once the registry declares it dead)', async () => !(await rtmpServers()).has(dead), TTL_MS * 5);
  };

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    const [haproxyPort, rtmp] = [await freePort(), await freePort()];
    rtmpPort = rtmp;
    [balancer] = await Promise.all([
      startRelaycast({
        roles: ['balancer'],
        databaseUrl: testDb.url,
        env: { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN },
        args: ['--node-id', 'balancer-1', '--haproxy-bin', 'haproxy', '--haproxy-bind', `127.0.0.1:${haproxyPort}`, '--haproxy-rtmp-port', String(rtmpPort), '--haproxy-geo-map', 'pins', ...common],
      }),
      startNode('origin', 'origin-1'),
      startNode('origin', 'origin-2'),
      startNode('edge', 'edge-1'),
    ]);
    browser = await TestBrowser.launch();
    viewer = await browser.page(balancer.url);
  });
  after(async () => {
    if (publisher) await stopProcess(publisher.child, 5000);
    await viewer?.close().catch(() => undefined);
    await browser?.close();
    await Promise.all([...nodes.values(), balancer].map((n) => n?.stop()));
    await db?.close();
    await testDb?.drop();
  });

  it('hands out HAProxy\'s RTMP address; ffmpeg publishes through it and the player plays', async () => {
    await waitFor('both origins UP in HAProxy\'s RTMP backend', async () => {
      const servers = await rtmpServers().catch(() => new Map());
      return servers.get('origin-1')?.up === true && servers.get('origin-2')?.up === true;
    }, 20_000);
    const res = await fetch(`${balancer.url}/api/v1/streams`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: stream }) });
    assert.equal(res.status, 201);
    const { rtmpUrl, streamKey } = (await res.json()) as { rtmpUrl: string; streamKey: string };
    assert.equal(rtmpUrl, `rtmp://127.0.0.1:${rtmpPort}/live/${streamKey}`, 'the admin API names HAProxy\'s RTMP port, not an origin\'s');
    publisher = publishWithRecovery(rtmpUrl);
    await waitFor('the stream live', async () => (await streamRow())?.state === 'live', 30_000).catch(explained);
    const row = await streamRow();
    assert.equal(row.ingest_protocol, 'rtmp');
    assert.equal((await rtmpServers()).get(row.origin_node_id)?.sessions, 1, 'the publish goes through HAProxy');
    await viewer.goto(`${balancer.url}/play/${stream}`);
    const stats = await playing(viewer, 'the player to play', { timeoutMs: 60_000 });
    assert.equal(stats.edge, 'edge-1');
  });

  it('kill -9 of the origin holding the stream: ffmpeg reconnects through the same address to the other origin, the player plays again', async () => {
    const holding = (await streamRow()).origin_node_id as string;
    await killOriginHolding(holding === 'origin-1' ? 'origin-2' : 'origin-1');
  });

  it('a third origin joins through the runtime API (no reload); kill -9 again: the stream moves to it', async () => {
    const reloadsBefore = await reloads();
    await startNode('origin', 'origin-3');
    await waitFor('origin-3 UP in HAProxy\'s RTMP backend', async () => (await rtmpServers()).get('origin-3')?.up === true, 20_000);
    assert.equal(await reloads(), reloadsBefore, 'origins join and leave without a reload');
    await killOriginHolding('origin-3');
    assert.equal(await reloads(), reloadsBefore, 'origins join and leave without a reload');
  });
});
