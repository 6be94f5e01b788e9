/**
 * WebRTC benchmark (reports, does not pass or fail): an origin and an edge process on a real
 * Postgres, a Node publisher (libwebrtc, 320x180 VP8 + Opus), and Node viewers in a separate
 * process.
 *
 *   time to first frame  — from the viewer's WHEP POST to its first decoded frame, on a cold edge
 *                          (the relay is created on demand) and on a warm one (relay in place),
 *                          side by side in the same run; the ratio is cold / warm.
 *   viewers per core     — the edge's CPU (its Node process and its one mediasoup worker) with N
 *                          viewers, less its CPU with the relay and no viewers; CPU per viewer and
 *                          the viewers one core would carry at that rate.
 *
 *   npm run bench:webrtc [-- --viewers 10,25,50 --runs 5 --seconds 10]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { signStreamToken } from '../core/tokens.ts';
import { createTestDatabase } from '../test/helpers/postgres.ts';
import { startRelaycast, waitFor } from '../test/helpers/processes.ts';
import { metric } from '../test/helpers/metrics.ts';
import { runClient, type ClientLine } from '../test/helpers/wrtcClient.ts';

const { values } = parseArgs({
  options: {
    viewers: { type: 'string', default: '10,25,50' },
    runs: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '10' },
  },
});
const VIEWER_COUNTS = values.viewers.split(',').map(Number);
const RUNS = Number(values.runs);
const SECONDS = Number(values.seconds);
const SECRET = 'bench-cluster-secret-0123456789';
const LINGER_MS = 500;
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds used so far by a process and its children that are still running (mediasoup workers). */
function cpuSeconds(pid: number): number {
  const ticks = (p: number) => {
    const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  };
  let total = ticks(pid);
  for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
    total += ticks(Number(child));
  }
  return total / CLOCK_TICKS;
}

async function cpuOver(pid: number, ms: number): Promise<number> {
  const before = cpuSeconds(pid);
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  return (cpuSeconds(pid) - before) / ((Date.now() - t0) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const statsOf = (lines: ClientLine[]) =>
  (lines.find((l) => l.event === 'stats') as unknown as { viewers: Array<{ frames: number; firstFrameMs: number | null }> } | undefined)?.viewers ?? [];

async function main(): Promise<void> {
  const db = await createTestDatabase();
  const common = ['--rtc-listen-ip', '127.0.0.1', '--workers', '1', '--relay-linger-ms', String(LINGER_MS), '--log-level', 'warn'];
  const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
  const origin = await startRelaycast({ roles: ['origin'], databaseUrl: db.url, env, args: ['--node-id', 'bench-origin', ...common] });
  const edge = await startRelaycast({ roles: ['edge'], databaseUrl: db.url, env, args: ['--node-id', 'bench-edge', ...common] });
  const publishSeconds = RUNS * 8 + VIEWER_COUNTS.length * (SECONDS + 8) + 30;
  const publisher = runClient(['publish', `${origin.url}/whip/bench`, await signStreamToken(SECRET, { stream: 'bench', action: 'publish' }), String(publishSeconds)], publishSeconds);
  try {
    await publisher.next('connected');
    const whep = `${edge.url}/whep/bench`;
    const relayGone = () => waitFor('the relay to close', async () => (await metric(edge.url, 'relaycast_relays', { direction: 'in' })) === 0, 10_000);

    // Time to first frame: a cold viewer (no relay), then a warm one while the first still plays.
    const cold: number[] = [];
    const warm: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      await relayGone();
      const first = runClient(['play', whep, '1', '4'], 4);
      await first.next('first-frame');
      const second = runClient(['play', whep, '1', '2'], 2);
      const [a] = statsOf(await first.done);
      const [b] = statsOf(await second.done);
      if (a?.firstFrameMs != null) cold.push(a.firstFrameMs);
      if (b?.firstFrameMs != null) warm.push(b.firstFrameMs);
    }

    // Viewers per core on the edge.
    await relayGone();
    const keeper = runClient(['play', whep, '1', String(VIEWER_COUNTS.length * (SECONDS + 8) + 15)], VIEWER_COUNTS.length * (SECONDS + 8) + 15);
    await keeper.next('first-frame');
    const idleCpu = await cpuOver(edge.child.pid!, 3000);
    const rows: string[] = [];
    for (const n of VIEWER_COUNTS) {
      const viewers = runClient(['play', whep, String(n), String(SECONDS + 4)], SECONDS + 4);
      await waitFor(`${n} viewers on the edge`, async () => (await metric(edge.url, 'relaycast_viewers')) === n + 1, 30_000);
      await new Promise((r) => setTimeout(r, 2000));
      const cpu = await cpuOver(edge.child.pid!, SECONDS * 1000 - 2000);
      const stats = statsOf(await viewers.done);
      const playing = stats.filter((s) => s.frames > 0).length;
      const perViewer = Math.max(cpu - idleCpu, 0) / n;
      rows.push(
        `  ${String(n).padStart(4)} viewers (${playing} decoding)  edge CPU ${(cpu * 100).toFixed(1).padStart(5)}% of a core  ` +
          `${(perViewer * 100).toFixed(3)}% per viewer  ≈ ${perViewer > 0 ? Math.round(1 / perViewer) : '∞'} viewers/core`,
      );
    }
    keeper.kill();

    console.log('\nrelaycast WebRTC benchmark (1 mediasoup worker per node, 320x180 VP8 ~70 kbit/s + Opus, loopback)');
    console.log(`time to first frame, median of ${RUNS} (min–max):`);
    console.log(`  cold edge (relay on demand) ${median(cold)} ms (${Math.min(...cold)}–${Math.max(...cold)})`);
    console.log(`  warm edge (relay in place)  ${median(warm)} ms (${Math.min(...warm)}–${Math.max(...warm)})`);
    console.log(`  cold / warm                 ${(median(cold) / median(warm)).toFixed(2)}`);
    console.log(`edge CPU with the relay and no viewers: ${(idleCpu * 100).toFixed(1)}% of a core`);
    console.log('viewers per core (edge only; the viewers run in another process on the same 2 cores):');
    for (const row of rows) console.log(row);
  } finally {
    publisher.kill();
    await publisher.done;
    await edge.stop();
    await origin.stop();
    await db.drop();
  }
}

await main();
