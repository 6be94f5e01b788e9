/**
 * Low-Latency HLS benchmark (reports, does not pass or fail). Real processes: an origin + balancer
 * process and an edge process on a fresh Postgres database (as bench/rtmp.ts), the origin packaging
 * on demand (`--hls on-demand`, a short --hls-linger-ms so that a stream can be left unpackaged
 * again), Chromium with hls.js 1.7 as the player, ffmpeg as a plain HLS client, load generators of
 * simulated LL-HLS viewers (bench/hls/llhls.ts) and of WebRTC viewers (kit/clients/wrtc.ts view).
 * Everything on this machine, traffic on 127.0.0.1 only.
 *
 * The publish: bench/hls/stamped.ts, an RTMP publisher (x264 zerolatency 640x360 30 fps, 2 s key
 * frames, AAC) whose every frame carries its capture time in its pixels (kit/clients/stamp.ts, as
 * the WebRTC latency benchmark's). RTMP, not WHIP: it is HLS's usual ingest, and the packager copies
 * its H.264 (a WHIP VP8 publish would add an x264 encode: its cost is figure 4). Players start at
 * the balancer's `/hls/{stream}/index.m3u8` and are sent (307) to the edge, as a user's would be.
 *
 *   1. glass-to-glass latency: capture (the stamp, written as the frame is drawn) → the frame's
 *      expected display time in hls.js (requestVideoFrameCallback, the page reading the stamp
 *      back from the picture), all clocks this machine's; p50 / p95 over --seconds, two pages side
 *      by side: hls.js defaults with lowLatencyMode, and maxLiveSyncPlaybackRate 1.5 (the player's
 *      setting); and ffmpeg reading the playlist as a plain HLS client (no parts), decoding in real
 *      time (-re), the stamp read from each decoded frame as it leaves ffmpeg.
 *   2. time to first frame: hls.js loadSource() → the first frame presented (rVFC), for a stream
 *      being packaged and watched already, and for one not packaged (its packager starts on the
 *      request: wait for the previous packager to exit between runs).
 *   3. an edge serving N viewers: N simulated LL-HLS viewers stepped up, then N receive-only WebRTC
 *      viewers of the same stream (they offer VP8: the origin's VP8 rendition feeds them); the
 *      edge's CPU (process + its mediasoup worker, /proc) against an idle reading, requests/s at
 *      the edge and upstream (its relaycast_hls_requests_total by cache outcome: a miss is a
 *      request upstream), CPU per viewer for each.
 *   4. the origin's packager CPU per stream: the packaging ffmpeg's CPU (/proc, that process only)
 *      for the RTMP publish (H.264 copied, AAC copied) and for a WHIP publish (the libwebrtc client,
 *      640x360 VP8 + Opus) that it encodes to x264 + AAC, each kept packaging by one LL-HLS viewer
 *      (startPackagerLoad).
 *
 *   npm run bench:hls [-- --seconds 60 --runs 5 --viewers 25,50,100 --window 15 --out FILE]
 *   npm run bench:hls -- --quick      tiny sizes (the smoke test in test/bench.test.ts)
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import knexFactory from 'knex';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { TestBrowser } from '../kit/browser.ts';
import { delaySince, readStamp, wallMs } from '../kit/clients/stamp.ts';
import { CpuWindow, MachineCpu, commOf, isRunning, loadavg, processTree } from '../kit/cpu.ts';
import { createTestDatabase } from '../kit/postgres.ts';
import { spawnTracked, startChild, waitFor, type Child } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { fmt, linearFit, median, percentile, sleep, spread } from '../kit/stats.ts';
import { WRTC_CLIENT } from '../kit/wrtc.ts';
import { checkPageReader, firstFrame, startPlayer, takePlayer, type PlayerTake } from './hls/player.ts';
import { STAMPED_HEIGHT, STAMPED_WIDTH, startStampedRtmp, type StampedPublisher } from './hls/stamped.ts';
import { integerOption, onInterrupt, runCommand } from './lib/options.ts';
import { renderTable, type Table } from './lib/report.ts';

const SECRET = 'bench-cluster-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';
const LLHLS_CLIENT = fileURLToPath(new URL('./hls/llhls.ts', import.meta.url));

/** hls.js as configured: its defaults with low-latency mode (on by default in 1.x, said anyway), and the player's setting. */
const HLS_DEFAULTS = { lowLatencyMode: true };
const HLS_PLAYER = { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 };

/** The goals of the LL-HLS issue, printed next to the figures. */
const GOAL = { p50Ms: 2000, p95Ms: 3000, firstFrameMs: 1500 };

/**
 * The origin stops a packager this long after its last HLS request (the product's default is
 * 30 s): shorter, so that a stream is unpackaged again soon after a cold first-frame run, but not
 * much: the linger also runs while a packager is still starting (its first request waiting for
 * the first part), and one that takes longer than this to start is stopped before it is ready (a
 * WHIP packager on the loaded machine did, 7 times in a row, with 3 s).
 */
const LINGER_MS = 10_000;
/** Bounds on waits (not figures): a first frame, a packager's exit, a stream going live. */
const FIRST_FRAME_TIMEOUT_MS = 30_000;
const PACKAGER_EXIT_TIMEOUT_MS = 30_000;
const LIVE_TIMEOUT_MS = 30_000;
/** An edge step counts for CPU per viewer when its viewers got at least this share of the best bitrate of their kind. */
const CLEAN_SHARE = 0.85;

const USAGE = `npm run bench:hls [-- options]

  --seconds S       latency window (default 60; each player first plays WARMUP s unmeasured)
  --runs N          time-to-first-frame runs of each kind (default 5)
  --viewers LIST    edge steps of LL-HLS and of WebRTC viewers (default 25,50,100)
  --window S        CPU window of each edge step and packager reading (default 15)
  --generators N    load-generator processes per kind of viewer (default 2)
  --quick           tiny sizes, one run of each (the smoke test; well under a minute of measuring)
  --out FILE        the JSON (default bench/results/hls-<time>.json)
`;

interface Options {
  quick: boolean;
  seconds: number;
  runs: number;
  viewers: number[];
  window: number;
  generators: number;
  out: string;
}

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      seconds: { type: 'string' },
      runs: { type: 'string' },
      viewers: { type: 'string' },
      window: { type: 'string' },
      generators: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const quick = values.quick;
  const viewers = (values.viewers ?? (quick ? '2' : '25,50,100')).split(',').map((v) => integerOption('viewers', v));
  return {
    quick,
    seconds: integerOption('seconds', values.seconds, quick ? 4 : 60),
    runs: integerOption('runs', values.runs, quick ? 1 : 5),
    viewers: [...new Set(viewers)].sort((a, b) => a - b),
    window: integerOption('window', values.window, quick ? 2 : 15),
    generators: integerOption('generators', values.generators, quick ? 1 : 2),
    out: values.out ?? `bench/results/hls-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
  };
}

// ---- helpers -------------------------------------------------------------------------------------

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** The origin's packaging ffmpegs (CMAF to stdout) whose arguments contain `text`. */
function packagers(origin: RelaycastProcess, text: string): number[] {
  return processTree([origin.child.pid!])
    .filter((pid) => commOf(pid) === 'ffmpeg' && isRunning(pid))
    .filter((pid) => {
      const args = cmdline(pid);
      return args.includes('+cmaf') && args.includes(text);
    });
}

/** relaycast_hls_requests_total of a node, summed by cache outcome and by kind of file. */
async function hlsRequests(url: string): Promise<{ byCache: Record<string, number>; byKind: Record<string, number>; total: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const byCache: Record<string, number> = {};
  const byKind: Record<string, number> = {};
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^relaycast_hls_requests_total\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    const n = Number(m[2]);
    byCache[labels.cache ?? '?'] = (byCache[labels.cache ?? '?'] ?? 0) + n;
    byKind[labels.kind ?? '?'] = (byKind[labels.kind ?? '?'] ?? 0) + n;
    total += n;
  }
  return { byCache, byKind, total };
}

function minus(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(a).map((k) => [k, a[k]! - (b[k] ?? 0)]));
}

/**
 * ffmpeg as a plain HLS client: it reads index.m3u8 as HLS without LL-HLS (its demuxer, 5.1, knows
 * no parts; it starts 3 segments from the end, its default), decodes in real time (-re, as a
 * player plays), and writes each decoded picture's luma plane to its stdout, where the stamp is
 * read as the frame arrives.
 */
function plainClient(url: string): { child: ChildProcess; take(): { samples: number[]; unreadable: number; frames: number }; stderr(): string } {
  const child = spawnTracked('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-i', url, '-map', '0:v:0', '-an', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const frameBytes = STAMPED_WIDTH * STAMPED_HEIGHT;
  let pending: Buffer = Buffer.alloc(0);
  let samples: number[] = [];
  let unreadable = 0;
  let frames = 0;
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  child.stdout!.on('data', (chunk: Buffer) => {
    const now = wallMs();
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= frameBytes) {
      const value = readStamp(pending.subarray(0, frameBytes), STAMPED_WIDTH);
      frames++;
      if (value === undefined) unreadable++;
      else samples.push(delaySince(value, now));
      pending = pending.subarray(frameBytes);
    }
  });
  return {
    child,
    take() {
      const out = { samples, unreadable, frames };
      samples = [];
      unreadable = 0;
      return out;
    },
    stderr: () => stderr,
  };
}

/** A node's warnings and errors (pino JSON lines, level ≥ 40), counted by component and message, with the first of each. */
function serverWarnings(node: RelaycastProcess): Array<{ what: string; count: number; first: string }> {
  const seen = new Map<string, { what: string; count: number; first: string }>();
  for (const line of node.output().split('\n')) {
    let entry: { level?: number; msg?: string; component?: string };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if ((entry.level ?? 0) < 40) continue;
    const what = `${entry.component ?? '-'}: ${entry.msg ?? '?'}`;
    const known = seen.get(what);
    if (known) known.count++;
    else seen.set(what, { what, count: 1, first: line.slice(0, 600) });
  }
  return [...seen.values()];
}

const pct = (cores: number, digits = 1) => `${fmt(cores * 100, digits)} %`;

// ---- the benchmark -------------------------------------------------------------------------------

async function main(options: Options): Promise<number> {
  const started = new Date();
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, kernel: release(), node: process.version };
  const loadAtStart = loadavg();
  process.stderr.write(`relaycast LL-HLS benchmark; load average at start ${loadAtStart}\n`);
  const begun = Date.now();
  const say = (text: string) => process.stderr.write(`hls ${fmt((Date.now() - begun) / 1000, 0)} s: ${text} (load ${loadavg()})\n`);
  checkPageReader();
  const WARMUP_S = options.quick ? 3 : 15;
  /** Extra latency windows while a client has read no stamped frame: 3 × 4 s more in --quick covers an hls.js stall recovery (nudges every second, then a reload) on a loaded CI machine. */
  const LATENCY_EXTRA_WINDOWS = 3;
  const SETTLE_MS = options.quick ? 1000 : 5000;

  const db = await createTestDatabase();
  const dropDb = onInterrupt(() => db.drop());
  const knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 2 } });
  const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
  const common = ['--rtc-listen-ip', '127.0.0.1', '--workers', '1', '--log-level', 'warn', '--post-rate-limit', '0'];
  let origin: RelaycastProcess | undefined;
  let edge: RelaycastProcess | undefined;
  let browser: TestBrowser | undefined;
  const publishers = new Map<string, StampedPublisher>();
  const children = new Set<Child>();
  const pages = new Set<Page>();
  let plain: ReturnType<typeof plainClient> | undefined;
  /** What did not go as it should, for under the tables. */
  const odd: string[] = [];
  const loads: Array<{ at: string; load: string }> = [];
  const noteLoad = (at: string) => loads.push({ at, load: loadavg() });
  const child = (script: string, args: string[]) => {
    const c = startChild(script, args);
    children.add(c);
    return c;
  };
  const stopChild = async (c: Child, command: string, reply: string) => {
    await c.ask(command, reply, 60_000).catch(() => undefined);
    await c.stop();
    children.delete(c);
  };
  try {
    say('starting the origin (+ balancer) and the edge on a fresh database');
    [origin, edge] = await Promise.all([
      startRelaycast({ roles: ['origin', 'balancer'], databaseUrl: db.url, env, args: ['--node-id', 'bench-origin', '--hls', 'on-demand', '--hls-linger-ms', String(LINGER_MS), ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: db.url, env, args: ['--node-id', 'bench-edge', ...common] }),
    ]);
    const o = origin;
    const e = edge;
    const stateOf = async (name: string) => (await knex('streams').where({ name }).first('state'))?.state as string | undefined;
    const publishRtmp = async (name: string) => {
      const created = await fetch(`${o.url}/api/v1/streams`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      if (created.status !== 201) throw new Error(`POST /api/v1/streams: ${created.status} ${await created.text()}`);
      const key = ((await created.json()) as { streamKey: string }).streamKey;
      publishers.set(name, startStampedRtmp(`rtmp://127.0.0.1:${o.rtmpPort}/live/${key}`));
      await waitFor(`${name} live`, async () => (await stateOf(name)) === 'live', LIVE_TIMEOUT_MS, 50).catch((error: Error) => {
        throw new Error(`${error.message}; publisher: ${publishers.get(name)!.stderr()}`, { cause: error });
      });
      return key;
    };
    const stopPublisher = (name: string) => {
      publishers.get(name)?.stop();
      publishers.delete(name);
    };
    const viaBalancer = (name: string) => `${o.url}/hls/${name}/index.m3u8`;
    const newPage = async () => {
      const page = await browser!.page(e.url);
      pages.add(page);
      return page;
    };
    const closePage = async (page: Page) => {
      pages.delete(page);
      await page.close().catch(() => undefined);
    };

    /**
     * What figure 4 needs: the WHIP publish, and an LL-HLS viewer on each stream that keeps its
     * packager running. Started there, or (--quick, where time counts more than a quiet machine)
     * at once, so that the WHIP packager's start overlaps the other figures.
     */
    const startPackagerLoad = async () => {
      const token = await signStreamToken(SECRET, { stream: 'whip', action: 'publish', ttlSeconds: 3600 });
      const whip = child(WRTC_CLIENT, ['publish', '--target', `${o.url}/whip/whip`, '--token', token, '--kbps', '1000', '--width', '640', '--height', '360', '--seconds', '3600']);
      const keepers = ['live', 'whip'].map((name) => child(LLHLS_CLIENT, ['--base', `${e.url}/hls/${name}/`]));
      const ready = (async () => {
        await whip.next('ready', 40_000);
        await Promise.all(keepers.map(async (g, i) => {
          await g.next('ready', 30_000);
          const added = await g.ask('add 1', 'added', 60_000);
          if (Number(added.playing) === 0) odd.push(`the ${i === 0 ? 'RTMP' : 'WHIP'} stream's packager had no media for its keeper viewer`);
        }));
      })();
      ready.catch(() => undefined);
      return { whip, keepers, ready };
    };
    const packagerLoadEarly = options.quick ? await startPackagerLoad() : undefined;

    say('publishing two stamped RTMP streams (live, cold), launching Chromium');
    const [liveKey, coldKey, launched] = await Promise.all([publishRtmp('live'), publishRtmp('cold'), TestBrowser.launch()]);
    browser = launched;

    // ---- 2a. first frame of a stream not packaged yet ---------------------------------------------
    const cold: number[] = [];
    for (let run = 0; run < options.runs; run++) {
      await waitFor('the cold stream unpackaged', () => packagers(o, `/live/${coldKey}`).length === 0, PACKAGER_EXIT_TIMEOUT_MS, 100);
      // The edge keeps index.m3u8 for a second (max-age=1): a new run must not get the last one's.
      if (run > 0) await sleep(1500);
      const page = await newPage();
      try {
        await startPlayer(page, viaBalancer('cold'), HLS_PLAYER);
        cold.push(await firstFrame(page, FIRST_FRAME_TIMEOUT_MS));
        say(`first frame, not packaged, run ${run + 1}/${options.runs}: ${cold.at(-1)} ms`);
      } catch (error) {
        odd.push(`cold first frame run ${run + 1}: ${(error as Error).message}`);
      } finally {
        await closePage(page);
      }
    }
    noteLoad('first frame, not packaged');
    stopPublisher('cold');

    // ---- 1. latency: two hls.js pages and a plain ffmpeg client side by side ----------------------
    say(`latency: hls.js defaults and maxLiveSyncPlaybackRate 1.5 side by side, and ffmpeg; ${WARMUP_S} s warm-up, ${options.seconds} s measured`);
    const players = [
      { label: 'hls.js defaults (lowLatencyMode)', config: HLS_DEFAULTS, page: await newPage() },
      { label: 'hls.js maxLiveSyncPlaybackRate 1.5 (the player)', config: HLS_PLAYER, page: await newPage() },
    ];
    await Promise.all(players.map((p) => startPlayer(p.page, viaBalancer('live'), p.config)));
    await Promise.all(players.map((p) => firstFrame(p.page, FIRST_FRAME_TIMEOUT_MS)));
    plain = plainClient(`${e.url}/hls/live/index.m3u8`);
    await sleep(WARMUP_S * 1000);
    const before = await Promise.all(players.map((p) => takePlayer(p.page)));
    plain.take();
    const publisherBefore = publishers.get('live')!.counts();
    const takes: PlayerTake[] = players.map(() => ({ firstFrameMs: undefined, frames: 0, samples: [], unreadable: 0, errors: [], fatal: undefined, waiting: 0, latencies: [], rates: [] }));
    const plainTake = { samples: [] as number[], unreadable: 0, frames: 0 };
    // A client that stalled through a whole window (a loaded machine, a short --quick window) has
    // read no frame: the window goes on, at most LATENCY_EXTRA_WINDOWS more times, rather than
    // report a latency of nothing. The windows taken are printed.
    let latencyWindows = 0;
    for (;;) {
      await sleep(options.seconds * 1000);
      latencyWindows++;
      const round = await Promise.all(players.map((p) => takePlayer(p.page)));
      round.forEach((t, i) => {
        const sum = takes[i]!;
        sum.samples.push(...t.samples);
        sum.unreadable += t.unreadable;
        sum.latencies.push(...t.latencies);
        sum.rates.push(...t.rates);
        Object.assign(sum, { firstFrameMs: t.firstFrameMs, frames: t.frames, errors: t.errors, fatal: t.fatal, waiting: t.waiting });
      });
      const p = plain.take();
      plainTake.samples.push(...p.samples);
      plainTake.unreadable += p.unreadable;
      plainTake.frames = p.frames;
      const empty = [...players.map((pl, i) => (takes[i]!.samples.length === 0 ? pl.label : '')), plainTake.samples.length === 0 ? 'ffmpeg' : ''].filter(Boolean);
      if (empty.length === 0 || latencyWindows > LATENCY_EXTRA_WINDOWS) break;
      say(`latency: no stamped frame yet from ${empty.join(', ')} after ${latencyWindows} window(s); one more window`);
    }
    if (latencyWindows > 1) odd.push(`latency measured over ${latencyWindows} windows of ${options.seconds} s (a client had read no frame)`);
    const publisherAfter = publishers.get('live')!.counts();
    noteLoad('latency window');
    const latencyRow = (samples: number[]) => ({ p50: percentile(samples, 50), p95: percentile(samples, 95), frames: samples.length });
    const latency = [
      ...players.map((p, i) => {
        const t = takes[i]!;
        if (t.errors.length) odd.push(`${p.label}: hls.js errors ${t.errors.join(', ')}`);
        return {
          label: p.label,
          ...latencyRow(t.samples),
          unreadable: t.unreadable,
          hlsJsLatencyS: median(t.latencies),
          playbackRate: t.rates.length ? t.rates.reduce((a, b) => a + b, 0) / t.rates.length : NaN,
          stalls: t.waiting - before[i]!.waiting,
        };
      }),
      { label: 'ffmpeg 5.1, plain HLS (no parts), -re', ...latencyRow(plainTake.samples), unreadable: plainTake.unreadable, hlsJsLatencyS: NaN, playbackRate: NaN, stalls: NaN },
    ];
    if (plainTake.samples.length === 0) odd.push(`ffmpeg plain client: no frame read in the window; ffmpeg said: ${plain.stderr().slice(-300) || 'nothing'}`);
    const skipped = publisherAfter.skipped - publisherBefore.skipped;
    if (skipped > 0) odd.push(`the stamped publisher skipped ${skipped} of ${publisherAfter.written - publisherBefore.written + skipped} frames in the latency window (two frames still waiting for ffmpeg)`);
    for (const l of latency) say(`latency ${l.label}: p50 ${fmt(l.p50, 0)} ms, p95 ${fmt(l.p95, 0)} ms over ${l.frames} frames`);

    // ---- 2b. first frame of a stream being packaged and watched ------------------------------------
    const warm: number[] = [];
    for (let run = 0; run < options.runs; run++) {
      const page = await newPage();
      try {
        await startPlayer(page, viaBalancer('live'), HLS_PLAYER);
        warm.push(await firstFrame(page, FIRST_FRAME_TIMEOUT_MS));
        say(`first frame, packaged, run ${run + 1}/${options.runs}: ${warm.at(-1)} ms`);
      } catch (error) {
        odd.push(`warm first frame run ${run + 1}: ${(error as Error).message}`);
      } finally {
        await closePage(page);
      }
    }
    noteLoad('first frame, packaged');
    for (const p of players) await closePage(p.page);
    plain.child.kill('SIGKILL');
    plain = undefined;

    // ---- 3. the edge serving N LL-HLS viewers, then N WebRTC viewers ------------------------------
    const edgePid = e.child.pid!;
    const edgeCpu = () => new CpuWindow(() => processTree([edgePid]));
    await sleep(SETTLE_MS);
    say(`edge idle for ${options.window} s`);
    const idleCpu = edgeCpu();
    idleCpu.start();
    await sleep(options.window * 1000);
    const idle = idleCpu.read();

    interface Step {
      kind: 'LL-HLS' | 'WebRTC';
      viewers: number;
      playing: number;
      edgeCores: number;
      /** (edge − idle) / viewers. */
      perViewer: number;
      generatorCores: number;
      machineCores: number;
      /** Requests/s the edge answered (its metrics), by cache outcome; LL-HLS only. */
      requestsPerS: number;
      byCache: Record<string, number>;
      byKind: Record<string, number>;
      /** Per viewer: kbit/s received; LL-HLS: parts/s, errors in the window. */
      kbpsPerViewer: number;
      partsPerS: number;
      errors: number;
      load: string;
    }
    const steps: Step[] = [];
    const measure = async (kind: Step['kind'], n: number, generators: Child[], read: () => Promise<{ bytes: number; parts: number; errors: number; playing: number }>) => {
      await sleep(SETTLE_MS);
      const cpu = edgeCpu();
      const gens = new CpuWindow(generators.map((g) => g.pid));
      const all = new MachineCpu();
      const m0 = await hlsRequests(e.url);
      const r0 = await read();
      const t0 = Date.now();
      cpu.start();
      gens.start();
      all.start();
      await sleep(options.window * 1000);
      const edgeCores = cpu.read();
      const generatorCores = gens.read();
      const machineCores = all.read();
      const seconds = (Date.now() - t0) / 1000;
      const r1 = await read();
      const m1 = await hlsRequests(e.url);
      const byCache = Object.fromEntries(Object.entries(minus(m1.byCache, m0.byCache)).map(([k, v]) => [k, v / seconds]));
      const byKind = Object.fromEntries(Object.entries(minus(m1.byKind, m0.byKind)).map(([k, v]) => [k, v / seconds]));
      const step: Step = {
        kind,
        viewers: n,
        playing: r1.playing,
        edgeCores,
        perViewer: (edgeCores - idle) / n,
        generatorCores,
        machineCores,
        requestsPerS: (m1.total - m0.total) / seconds,
        byCache,
        byKind,
        kbpsPerViewer: ((r1.bytes - r0.bytes) * 8) / seconds / 1000 / n,
        partsPerS: (r1.parts - r0.parts) / seconds / n,
        errors: r1.errors - r0.errors,
        load: loadavg(),
      };
      steps.push(step);
      say(`${kind} ${n}: edge ${pct(edgeCores)}, ${fmt(step.requestsPerS, 0)} req/s (miss ${fmt(byCache.miss ?? 0, 1)}/s), ${fmt(step.kbpsPerViewer, 0)} kbit/s per viewer, generators ${pct(generatorCores, 0)}`);
      return step;
    };
    const split = (add: number, parts: number) => Array.from({ length: parts }, (_, i) => Math.floor(add / parts) + (i < add % parts ? 1 : 0));

    {
      const generators = Array.from({ length: options.generators }, () => child(LLHLS_CLIENT, ['--base', `${e.url}/hls/live/`]));
      try {
        await Promise.all(generators.map((g) => g.next('ready', 30_000)));
        let current = 0;
        for (const n of options.viewers) {
          say(`${n} LL-HLS viewers`);
          const added = await Promise.all(split(n - current, generators.length).map((k, i) => (k > 0 ? generators[i]!.ask(`add ${k}`, 'added', 60_000) : Promise.resolve({ playing: 0 }))));
          current = n;
          const notPlaying = added.reduce((sum, a) => sum + Number((a as { requested?: number }).requested ?? 0) - Number(a.playing ?? 0), 0);
          if (notPlaying > 0) odd.push(`LL-HLS ${n}: ${notPlaying} new viewers had no part within 30 s`);
          await measure('LL-HLS', n, generators, async () => {
            const snaps = await Promise.all(generators.map((g) => g.ask('snapshot', 'snapshot', 30_000)));
            return {
              bytes: snaps.reduce((s, x) => s + Number(x.bytes), 0),
              parts: snaps.reduce((s, x) => s + Number(x.parts), 0),
              errors: snaps.reduce((s, x) => s + Number(x.errors), 0),
              playing: snaps.reduce((s, x) => s + Number(x.clients), 0),
            };
          });
          const last = steps.at(-1)!;
          if (last.errors > 0) odd.push(`LL-HLS ${n}: ${last.errors} failed requests in the window`);
        }
      } finally {
        await Promise.all(generators.map((g) => stopChild(g, 'stop', 'stopped')));
      }
    }
    noteLoad('edge, LL-HLS viewers');
    {
      const generators = Array.from({ length: options.generators }, () => child(WRTC_CLIENT, ['view', '--url', `${e.url}/whep/live`, '--receive-only']));
      try {
        await Promise.all(generators.map((g) => g.next('ready', 30_000)));
        let current = 0;
        const snapshot = async (id: string) => (await Promise.all(generators.map((g) => g.ask(`snapshot ${id}`, 'snapshot', 60_000)))) as unknown as Array<{ viewers: Array<{ bytesReceived: number; packetsReceived: number }> }>;
        let lastPackets = new Map<string, number>();
        for (const n of options.viewers) {
          say(`${n} WebRTC viewers`);
          const added = await Promise.all(split(n - current, generators.length).map((k, i) => (k > 0 ? generators[i]!.ask(`add ${k} 8`, 'added', 180_000) : Promise.resolve({ failed: 0 }))));
          current = n;
          const failed = added.reduce((s, a) => s + Number(a.failed ?? 0), 0);
          if (failed > 0) odd.push(`WebRTC ${n}: ${failed} viewers failed to join`);
          let receiving = 0;
          await measure('WebRTC', n, generators, async () => {
            const snaps = await snapshot(String(n));
            const packets = new Map<string, number>();
            snaps.forEach((s, g) => s.viewers.forEach((v, i) => packets.set(`${g}/${i}`, v.packetsReceived)));
            receiving = [...packets].filter(([k, v]) => v > (lastPackets.get(k) ?? 0)).length;
            lastPackets = packets;
            return { bytes: snaps.reduce((s, x) => s + x.viewers.reduce((t, v) => t + v.bytesReceived, 0), 0), parts: 0, errors: 0, playing: receiving };
          });
        }
      } finally {
        await Promise.all(generators.map((g) => stopChild(g, 'stop', 'stopped')));
      }
    }
    noteLoad('edge, WebRTC viewers');

    // ---- 4. the packagers' CPU: RTMP H.264 copied, WHIP VP8 encoded to x264 -----------------------
    say('packager CPU: a WHIP VP8 publish beside the RTMP one, one LL-HLS viewer on each');
    const { whip, keepers, ready } = packagerLoadEarly ?? (await startPackagerLoad());
    const packagerCpu: Record<'rtmp' | 'whip', number[]> = { rtmp: [], whip: [] };
    let whipVideo: { frameWidth: number | null; fps: number } = { frameWidth: null, fps: NaN };
    try {
      await ready;
      // libwebrtc starts below its bitrate cap and ramps up.
      await sleep(options.quick ? SETTLE_MS : 10_000);
      const windows = options.quick ? 1 : 3;
      const stats0 = (await whip.ask('stats', 'stats', 30_000)).targets as Array<{ framesEncoded: number; frameWidth: number | null; at: number }>;
      // A window counts only if each stream had one packager throughout (a packager that exits
      // mid-window takes its CPU time with it); a few more windows are allowed for those that do not.
      for (let w = 0, tries = 0; packagerCpu.rtmp.length < windows && tries < windows + 2; tries++) {
        const pids = { rtmp: packagers(o, `/live/${liveKey}`), whip: packagers(o, 'data:application/sdp') };
        const meters = { rtmp: new CpuWindow(pids.rtmp, { children: false }), whip: new CpuWindow(pids.whip, { children: false }) };
        meters.rtmp.start();
        meters.whip.start();
        await sleep(options.window * 1000);
        const cores = { rtmp: meters.rtmp.read(), whip: meters.whip.read() };
        const gone = Object.entries(pids).filter(([, list]) => list.length !== 1 || !list.every(isRunning));
        if (gone.length > 0) {
          odd.push(`packager window ${tries + 1}: not one packager ffmpeg running throughout for ${gone.map(([which, list]) => `${which} (${list.join(', ') || 'none'})`).join(' and ')}; window left out`);
          continue;
        }
        packagerCpu.rtmp.push(cores.rtmp);
        packagerCpu.whip.push(cores.whip);
        say(`packagers, window ${++w}/${windows}: RTMP ${pct(cores.rtmp)}, WHIP ${pct(cores.whip)}`);
      }
      const stats1 = (await whip.ask('stats', 'stats', 30_000)).targets as Array<{ framesEncoded: number; frameWidth: number | null; at: number }>;
      whipVideo = { frameWidth: stats1[0]!.frameWidth, fps: ((stats1[0]!.framesEncoded - stats0[0]!.framesEncoded) * 1000) / Math.max(1, stats1[0]!.at - stats0[0]!.at) };
    } finally {
      for (const g of keepers) await stopChild(g, 'stop', 'stopped');
      whip.send('stop');
      await Promise.race([whip.exited, sleep(5000)]);
      await whip.stop();
      children.delete(whip);
    }
    noteLoad('packagers');
    const loadAtEnd = loadavg();

    // ---- the tables ------------------------------------------------------------------------------
    const s = (ms: number) => (Number.isFinite(ms) ? fmt(ms / 1000, 2) : 'n/a');
    const met = (l: { p50: number; p95: number }) => (l.p50 <= GOAL.p50Ms && l.p95 <= GOAL.p95Ms ? 'met' : 'not met');
    const latencyTable: Table = {
      title: `LL-HLS glass-to-glass latency, capture → displayed, s (${options.seconds} s window after ${WARMUP_S} s of play; RTMP 640x360 30 fps x264 zerolatency, parts 0.334 s, segments 2 s)`,
      head: ['client', 'p50', 'p95', 'frames', 'unread', 'hls.js latency est.', 'mean rate', 'stalls', `goal p50 ≤ ${GOAL.p50Ms / 1000}, p95 ≤ ${GOAL.p95Ms / 1000}`],
      rows: latency.map((l) => [l.label, s(l.p50), s(l.p95), String(l.frames), String(l.unreadable), Number.isFinite(l.hlsJsLatencyS) ? fmt(l.hlsJsLatencyS, 2) : '', Number.isFinite(l.playbackRate) ? fmt(l.playbackRate, 3) : '', Number.isFinite(l.stalls) ? String(l.stalls) : '', met(l)]),
      how: [
        'capture: the publisher (this process) writes the wall clock into each raw frame\'s pixels as it draws it and pipes it to ffmpeg → x264 → RTMP → origin packager (H.264 copied) → edge → client; encoder, RTMP and packaging included',
        'hls.js (1.7.4, Chromium 156 headless): each frame presented (requestVideoFrameCallback) is drawn to a canvas and its stamp read back; latency = the page\'s wall clock at the frame\'s expectedDisplayTime − the stamp (same machine, same clock); both pages play at once from the balancer\'s URL (307 to the edge)',
        'hls.js latency est.: its own `hls.latency` (live edge − playhead), median of 0.5 s readings; mean rate: video.playbackRate averaged (> 1: catching up); stalls: the video element\'s waiting events',
        'ffmpeg: reads the edge\'s index.m3u8 as plain HLS (no parts; starts 3 segments back), -re, the stamp read from each decoded frame as ffmpeg writes it out (no display: its figure is decode time)',
      ],
    };
    const firstFrameTable: Table = {
      title: `LL-HLS time to first frame in hls.js (maxLiveSyncPlaybackRate 1.5), ms, median of ${options.runs} run${options.runs > 1 ? 's' : ''} (range)`,
      head: ['stream', 'first frame', `goal ≤ ${GOAL.firstFrameMs} ms`],
      rows: [
        ['already packaged (two players on it, edge cache warm)', spread(warm, 0), median(warm) <= GOAL.firstFrameMs ? 'met' : 'not met'],
        ['not yet packaged (the request starts its packager)', spread(cold, 0), ''],
      ],
      how: [
        'hls.loadSource() of the balancer\'s index.m3u8 (307 → edge → origin) → the first frame presented (requestVideoFrameCallback\'s `now`), in the page; a new page each run',
        `not yet packaged: a stream published over RTMP that no HLS client has asked for; between runs, the packager's ffmpeg exits (--hls-linger-ms ${LINGER_MS}) and the edge's 1 s playlist copy expires`,
      ],
    };
    // A step counts for the slope when every viewer played at the stream's bitrate (a saturated
    // machine delivers less, and then costs the edge less per viewer).
    const clean = (x: Step) => {
      const best = Math.max(...steps.filter((y) => y.kind === x.kind).map((y) => y.kbpsPerViewer));
      return x.playing === x.viewers && x.kbpsPerViewer >= CLEAN_SHARE * best && x.errors === 0;
    };
    const hlsSteps = steps.filter((x) => x.kind === 'LL-HLS' && clean(x));
    const rtcSteps = steps.filter((x) => x.kind === 'WebRTC' && clean(x));
    const slope = (xs: Step[]) => (xs.length >= 2 ? linearFit(xs.map((x) => ({ x: x.viewers, y: x.edgeCores }))).slope : xs[0] ? xs[0].perViewer : NaN);
    const perViewer = { hls: slope(hlsSteps), webrtc: slope(rtcSteps) };
    const edgeTable: Table = {
      title: `An edge serving N viewers of one stream (1 Mbit/s H.264 + AAC over LL-HLS; WebRTC: the origin's VP8 rendition), ${options.window} s per step; edge idle ${pct(idle, 2)}`,
      head: ['viewers', 'N', 'playing', 'clean', 'edge CPU', '(CPU − idle) / N', 'req/s at edge', 'upstream req/s', 'hit + coalesced/s', 'kbit/s per viewer', 'parts/s per viewer', 'generators CPU', 'machine busy', 'load 1 min'],
      rows: steps.map((x) => [
        x.kind,
        String(x.viewers),
        String(x.playing),
        clean(x) ? 'yes' : 'no',
        pct(x.edgeCores),
        pct(x.perViewer, 3),
        x.kind === 'LL-HLS' ? fmt(x.requestsPerS, 0) : '',
        x.kind === 'LL-HLS' ? fmt(x.byCache.miss ?? 0, 1) : '',
        x.kind === 'LL-HLS' ? fmt((x.byCache.hit ?? 0) + (x.byCache.coalesced ?? 0), 0) : '',
        fmt(x.kbpsPerViewer, 0),
        x.kind === 'LL-HLS' ? fmt(x.partsPerS, 2) : '',
        pct(x.generatorCores, 0),
        `${fmt(x.machineCores, 2)} cores`,
        x.load.split(' ')[0]!,
      ]),
      how: [
        'edge CPU: the edge process and its mediasoup worker, user + system from /proc over the window, in % of one core; (CPU − idle) / N against the idle reading before the first step',
        `clean: every viewer playing, none failing, at ≥ ${CLEAN_SHARE * 100} % of the best kbit/s per viewer of its kind (a saturated machine delivers less and costs less per viewer)`,
        `CPU per viewer, slope over the clean steps: LL-HLS ${pct(perViewer.hls, 3)}, WebRTC ${pct(perViewer.webrtc, 3)} of a core (WebRTC / LL-HLS ${fmt(perViewer.webrtc / perViewer.hls, 2)}×)`,
        `LL-HLS viewers: HTTP clients in ${options.generators} load-generator process(es) (bench/hls/llhls.ts): blocking reloads with _HLS_msn/_HLS_part/_HLS_skip=YES and the preload-hinted part at the same time, own keep-alive connections each; they fetch, never decode`,
        'req/s and upstream: the edge\'s relaycast_hls_requests_total over the window; cache=miss is a request to the origin, hit and coalesced are answered from the one in flight or kept',
        `WebRTC viewers: receive-only libwebrtc WHEP clients in ${options.generators} process(es) (kit/clients/wrtc.ts view, the fan-out section's), added 8 at a time; playing = viewers whose packet count rose in the window`,
      ],
    };
    const packagerTable: Table = {
      title: `Origin packager CPU per stream, % of one core (${packagerCpu.rtmp.length} window(s) of ${options.window} s, median (range))`,
      head: ['publish', 'packager ffmpeg CPU'],
      rows: [
        [`RTMP H.264 ${STAMPED_WIDTH}x${STAMPED_HEIGHT} 30 fps + AAC: copied`, spread(packagerCpu.rtmp.map((c) => c * 100), 1)],
        [`WHIP VP8 ${whipVideo.frameWidth ?? '?'} wide, ${fmt(whipVideo.fps, 0)} fps + Opus: x264 veryfast + AAC`, spread(packagerCpu.whip.map((c) => c * 100), 1)],
      ],
      how: [
        'the origin\'s packaging ffmpeg (its CMAF output to stdout: the RTMP one reading the publish, the WHIP one reading RTP through its SDP) alone, user + system from /proc, while one LL-HLS viewer keeps each packaging',
        'WHIP: the libwebrtc client (kit/clients/wrtc.ts publish, 640x360 capped at 1 Mbit/s; its frame width and rate as it sent them in the window)',
      ],
    };
    const warnings = { origin: serverWarnings(o), edge: serverWarnings(e) };
    const footer = [
      `machine: ${machine.cores} × ${machine.cpu}; load average at start ${loadAtStart}, at end ${loadAtEnd}; during: ${loads.map((l) => `${l.at} ${l.load.split(' ')[0]}`).join(', ')}`,
      ...(odd.length ? odd.map((x) => `odd: ${x}`) : ['odd: nothing']),
      ...Object.entries(warnings).flatMap(([node, list]) => list.map((w) => `${node} logged ${w.count} × ${w.what}`)),
    ];
    for (const table of [latencyTable, firstFrameTable, edgeTable, packagerTable]) console.log(`\n${renderTable(table)}`);
    console.log(`\n${footer.join('\n')}`);

    mkdirSync(dirname(options.out), { recursive: true });
    const report = {
      startedAt: started.toISOString(),
      machine,
      options,
      load: { start: loadAtStart, end: loadAtEnd, during: loads },
      goal: GOAL,
      latency,
      firstFrame: { packaged: warm, notPackaged: cold, medians: { packaged: median(warm), notPackaged: median(cold) } },
      edge: { idleCores: idle, steps: steps.map((x) => ({ ...x, clean: clean(x) })), cpuPerViewer: perViewer },
      packagers: { rtmpCopyCores: packagerCpu.rtmp, whipVp8ToX264Cores: packagerCpu.whip, medians: { rtmp: median(packagerCpu.rtmp), whip: median(packagerCpu.whip) }, whipVideo },
      odd,
      serverWarnings: warnings,
      tables: [latencyTable, firstFrameTable, edgeTable, packagerTable],
    };
    writeFileSync(options.out, `${JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    console.log(`results: ${options.out}`);
    return 0;
  } finally {
    plain?.child.kill('SIGKILL');
    for (const p of publishers.values()) p.stop();
    for (const c of children) await c.stop().catch(() => undefined);
    for (const page of pages) await page.close().catch(() => undefined);
    await browser?.close();
    await edge?.stop();
    await origin?.stop();
    await knex.destroy();
    await db.drop();
    dropDb();
  }
}

await runCommand(parse, USAGE, main);
