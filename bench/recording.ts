/**
 * Recording benchmark (issue 31; reports, does not pass or fail). Real processes on a fresh
 * Postgres database: a balancer (the admin API), an origin and an edge, each its own process,
 * sharing one --record-dir (a volume the nodes share, as in test/recording.test.ts); everything on
 * this machine, traffic on 127.0.0.1 only. Four figures:
 *
 *   1. CPU and disk per recorded stream on the origin: the same publish not recorded (the origin
 *      packages HLS on demand: with no HLS viewer, no packager), not recorded but packaged
 *      (`hls: always`: what HLS alone costs) and recorded (`record: true`), one after another on
 *      streams of their own, alternating over --runs, for an RTMP publish (ffmpeg -re: ten
 *      seconds of testsrc2 640x360 30 fps encoded once with x264's defaults, -g 60, and AAC,
 *      looped and copied; the packager copies its H.264, the bridge to WebRTC re-encodes it:
 *      B-frames) and a WHIP publish (the libwebrtc client, kit/clients/wrtc.ts: 640x360 VP8
 *      capped at 1 Mbit/s + Opus, which the packager encodes to x264 + AAC). The origin's process
 *      tree (node, its mediasoup worker, the bridge and packager ffmpegs: kit/cpu.ts, /proc) over
 *      a --window, and what was written: the record dir's growth, the node's write_bytes
 *      (/proc/<pid>/io), the index's bytes.
 *   2. The index at scale: --days days of 2-second segments of one stream (one recording a day:
 *      43,200 segment rows each, 1.3 M for 30 days; one SQL insert … select … generate_series),
 *      beside other streams' recordings (hourly ones: rows in `recordings`) and segments as noise.
 *      Timed through the real HTTP API, p50/p95 over --requests: the balancer's listing
 *      (GET /api/v1/streams/{name}/recordings?from&to) for a day and for the whole range, and the
 *      edge's playlist for an hour and for a whole day (/recordings/{id}/index.m3u8?from&to).
 *      EXPLAIN ANALYZE of the listing's and the segment range's queries, as the repository makes
 *      them.
 *   3. Media lost on kill -9 of the recording origin, --kills times: an origin of its own records
 *      the RTMP publish; at a random moment 2–4 s (--quick: 0–2 s) after two complete segments
 *      the origin is killed; loss = the kill's time − the end of the media the index holds (the
 *      last segment row's started_at + duration). started_at is the packager's program
 *      date-time: the wall clock of the media as it leaves the packager's ffmpeg
 *      (media/hls/LivePlaylist.ts), so the loss counts from there (the part being filled, the
 *      flush interval, fdatasync and the row's write); the encoder's and RTMP's latency before
 *      it is not in it. Besides, the same quantity sampled every 100 ms while recording (what a
 *      kill at that moment would lose).
 *   4. Export of a recording of --minutes (an hour) made quickly through the product's own code:
 *      the ten-second clip of figure 1 (x264 defaults, -g 60, AAC), looped by ffmpeg
 *      (-stream_loop -1 -t …, -c copy) into the fragmented-MP4 muxer with HlsPackager's options,
 *      its stdout through Fmp4Reader and LivePlaylist (a clock that follows the media, so that
 *      the program date-times are an hour apart) into a Recorder (media/record/) writing a
 *      LocalRecordingStore in the shared dir and rows through db/repositories/recordings.ts, as
 *      origin/Recordings.ts does; ffmpeg is paused while the recorder is behind. Then
 *      GET /recordings/{id}/export.mp4 from the edge: time to the first byte, total, size, the
 *      edge's CPU, and ffprobe's duration of what arrived.
 *
 *   npm run bench:recording [-- --runs 2 --window 10 --kills 5 --days 30 --requests 50 --minutes 60]
 *   npm run bench:recording -- --quick      tiny sizes (the smoke test in test/bench.test.ts)
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import knexFactory, { type Knex } from 'knex';
import { createLogger } from '../core/logger.ts';
import { closeRecording, openRecording, writeSegment } from '../db/repositories/recordings.ts';
import { Fmp4Reader, type Fmp4Init } from '../media/hls/Fmp4Reader.ts';
import { PART_TARGET_S, SEGMENT_MIN_S, TARGET_DURATION_S, WINDOW_S, type HlsPackager } from '../media/hls/HlsPackager.ts';
import { LivePlaylist } from '../media/hls/LivePlaylist.ts';
import { FLUSH_MS, Recorder, type RecordingIndex } from '../media/record/Recorder.ts';
import { LocalRecordingStore } from '../media/record/RecordingStore.ts';
import { RESUME_GAP_MS } from '../origin/Recordings.ts';
import { commOf, cpuSeconds, isRunning, loadavg, MachineCpu, processTree } from '../kit/cpu.ts';
import { createTestDatabase } from '../kit/postgres.ts';
import { spawnTracked, startChild, stopProcess, waitFor, type Child } from '../kit/processes.ts';
import { adminClient } from '../kit/testPublish.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { fmt, max, median, percentile, sleep, spread } from '../kit/stats.ts';
import { WRTC_CLIENT } from '../kit/wrtc.ts';
import { defaultOut, integerOption, onInterrupt, runCommand } from './lib/options.ts';
import { renderTable, type Table } from './lib/report.ts';

const SECRET = 'bench-cluster-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';

/** The issue's goals, printed next to the figures. */
const GOAL = { listingMs: 100, lossS: 1 };

/** The media: test/recording.test.ts's publish (testsrc2, x264 defaults, 2 s GOP, AAC), ten seconds of it, looped. */
const FPS = 30;
const CLIP_S = 10;
const VIDEO_SIZE = '640x360';
/** The WHIP publish: the libwebrtc client at 640x360, 1 Mbit/s (bench/hls.ts's). */
const WHIP_ARGS = ['--kbps', '1000', '--width', '640', '--height', '360', '--fps', String(FPS)];

/** The segments of the index figure: 2 s each, a day of them per recording (43,200: MAX_RANGE_SEGMENTS, the most a playlist lists). */
const SEGMENT_S = 2;
const SEGMENTS_PER_DAY = 86_400 / SEGMENT_S;

/** Bounds on waits (not figures). */
const LIVE_TIMEOUT_MS = 30_000;
const FIRST_SEGMENT_TIMEOUT_MS = 40_000;
const ENDED_TIMEOUT_MS = 30_000;
const EXPORT_BUILD_TIMEOUT_MS = 15 * 60_000;
const EXPORT_TIMEOUT_MS = 10 * 60_000;

const SECTIONS = ['cpu', 'index', 'kill', 'export'] as const;
type Section = (typeof SECTIONS)[number];

const USAGE = `npm run bench:recording [-- options]

  --runs N          CPU windows of each publish and setting, alternating (default 2)
  --window S        CPU window, seconds (default 10)
  --kills N         kill -9 runs (default 5)
  --days N          days of 2-second segments in the index (default 30)
  --requests N      timed requests of each listing and playlist (default 50)
  --minutes N       length of the exported recording (default 60)
  --only LIST       sections, comma-separated: ${SECTIONS.join(',')}
  --quick           tiny sizes, one run of each (the smoke test; about a minute)
  --out FILE        the JSON (default bench/figures/recording-<date>.json; --quick: bench/results/)
`;

interface Options {
  quick: boolean;
  runs: number;
  window: number;
  kills: number;
  days: number;
  requests: number;
  minutes: number;
  only: Section[];
  out: string;
}

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      window: { type: 'string' },
      kills: { type: 'string' },
      days: { type: 'string' },
      requests: { type: 'string' },
      minutes: { type: 'string' },
      only: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const quick = values.quick;
  const only = (values.only ?? SECTIONS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of only) if (!SECTIONS.includes(s as Section)) throw new Error(`--only: unknown section "${s}" (sections: ${SECTIONS.join(', ')})`);
  return {
    quick,
    runs: integerOption('runs', values.runs, quick ? 1 : 2),
    window: integerOption('window', values.window, quick ? 2 : 10),
    kills: integerOption('kills', values.kills, quick ? 1 : 5),
    days: integerOption('days', values.days, quick ? 1 : 30),
    requests: integerOption('requests', values.requests, quick ? 5 : 50),
    minutes: integerOption('minutes', values.minutes, quick ? 1 : 60),
    only: SECTIONS.filter((s) => only.includes(s)),
    out: values.out ?? defaultOut('recording', quick),
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

/** What a process of an origin's tree is: the node itself, its mediasoup worker, a packager ffmpeg (CMAF out), another ffmpeg (the RTMP bridge). */
type Part = 'node' | 'worker' | 'packager' | 'bridge' | 'other';
const PARTS: Part[] = ['node', 'worker', 'bridge', 'packager', 'other'];

function partOf(pid: number, root: number): Part {
  if (pid === root) return 'node';
  const comm = commOf(pid);
  if (comm.startsWith('mediasoup-worke')) return 'worker';
  if (comm === 'ffmpeg') return cmdline(pid).includes('+cmaf') ? 'packager' : 'bridge';
  return 'other';
}

/** CPU seconds so far of each process of the tree under `root`, each alone. */
function treeCpu(root: number): Map<number, { part: Part; seconds: number }> {
  return new Map(processTree([root]).map((pid) => [pid, { part: partOf(pid, root), seconds: cpuSeconds([pid], false) }]));
}

/** Cores used by each part of the tree between two treeCpu() readings `seconds` apart (a process started in between counts from zero). */
function coresBetween(before: Map<number, { part: Part; seconds: number }>, after: Map<number, { part: Part; seconds: number }>, seconds: number): Record<Part, number> {
  const out = Object.fromEntries(PARTS.map((p) => [p, 0])) as Record<Part, number>;
  for (const [pid, a] of after) out[a.part] += (a.seconds - (before.get(pid)?.seconds ?? 0)) / seconds;
  return out;
}

/**
 * CPU of a process tree over a stretch in which children come and go (the edge's remuxing ffmpeg):
 * each process's CPU time read every 100 ms, its last reading counted, so that a child that exits
 * in the stretch keeps what it spent (at most its last 100 ms missed). Cores between start() and stop().
 */
function treeSampler(root: number): { stop(): number } {
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  const read = () => {
    for (const pid of processTree([root])) {
      const seconds = cpuSeconds([pid], false);
      if (!first.has(pid)) first.set(pid, seconds);
      last.set(pid, seconds);
    }
  };
  const started = performance.now();
  read();
  // Processes seen at the start count from their reading then; those born later from zero.
  const atStart = new Set(first.keys());
  const timer = setInterval(read, 100);
  return {
    stop() {
      read();
      clearInterval(timer);
      let total = 0;
      for (const [pid, seconds] of last) total += seconds - (atStart.has(pid) ? first.get(pid)! : 0);
      return total / ((performance.now() - started) / 1000);
    },
  };
}

/** Bytes the process caused to be written to storage so far (/proc/<pid>/io write_bytes), or NaN. */
function writeBytes(pid: number): number {
  try {
    return Number(/^write_bytes:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** Total size of the files under `dir`. */
function dirBytes(dir: string): number {
  let total = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(path);
    else {
      try {
        total += statSync(path).size;
      } catch {
        // deleted meanwhile
      }
    }
  }
  return total;
}

/** The top-level boxes of an MP4's first bytes, in order. */
function topBoxes(path: string, upTo = 64): string[] {
  const fd = openSync(path, 'r');
  try {
    const boxes: string[] = [];
    const header = Buffer.alloc(16);
    let at = 0;
    const size = statSync(path).size;
    while (at + 8 <= size && boxes.length < upTo) {
      readSync(fd, header, 0, 16, at);
      let length = header.readUInt32BE(0);
      if (length === 1) length = Number(header.readBigUInt64BE(8));
      boxes.push(header.toString('latin1', 4, 8));
      if (length < 8) break;
      at += length;
    }
    return boxes;
  } finally {
    closeSync(fd);
  }
}

/** A node's warnings and errors (pino JSON lines, level ≥ 40), counted by component and message. */
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

/**
 * The media every figure uses: ten seconds of testsrc2 encoded once as test/recording.test.ts's
 * publisher encodes (x264 defaults: High, B-frames; a key frame every 2 s; AAC), five GOPs, so that
 * a loop of it starts on a key frame.
 */
function encodeClip(path: string): void {
  const encode = spawnSync('ffmpeg', [
    ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-y'],
    ...['-f', 'lavfi', '-i', `testsrc2=size=${VIDEO_SIZE}:rate=${FPS}`, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'],
    ...['-t', String(CLIP_S), '-c:v', 'libx264', '-g', String(2 * FPS), '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', path],
  ], { encoding: 'utf8', timeout: 120_000 });
  if (encode.status !== 0) throw new Error(`ffmpeg could not encode the clip: ${encode.stderr}`);
}

/**
 * ffmpeg publishing the clip over RTMP, looped and copied, in real time (-re), for `seconds`: the
 * stream an encoder with x264's defaults sends, without an x264 encode on this machine's cores
 * beside the origin measured (and never falling behind real time on a loaded machine).
 */
function publishRtmp(clip: string, url: string, seconds: number): { child: ChildProcess; stderr(): string } {
  const child = spawnTracked(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-stream_loop', '-1', '-i', clip, '-t', String(seconds), '-map', '0', '-c', 'copy', '-f', 'flv', url],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  return { child, stderr: () => stderr };
}

/** Timed GETs of `url`: `warmup` untimed, then `n` one after another; each must answer 200. Milliseconds to the whole body. */
async function timeGets(url: string, n: number, headers: Record<string, string> = {}, warmup = 2): Promise<{ ms: number[]; bytes: number; body: string }> {
  const ms: number[] = [];
  let body = '';
  for (let i = 0; i < warmup + n; i++) {
    const t0 = performance.now();
    const res = await fetch(url, { headers });
    body = await res.text();
    const took = performance.now() - t0;
    if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${body.slice(0, 300)}`);
    if (i >= warmup) ms.push(took);
  }
  return { ms, bytes: Buffer.byteLength(body), body };
}

const pct = (cores: number, digits = 1) => `${fmt(cores * 100, digits)} %`;
const ms0 = (x: number) => fmt(x, x < 10 ? 1 : 0);
const mb = (bytes: number) => fmt(bytes / 1e6, 1);

// ---- the benchmark -------------------------------------------------------------------------------

async function main(options: Options): Promise<number> {
  const started = new Date();
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, kernel: release(), node: process.version };
  const loadAtStart = loadavg();
  process.stderr.write(`relaycast recording benchmark; load average at start ${loadAtStart}\n`);
  const begun = Date.now();
  const say = (text: string) => process.stderr.write(`recording ${fmt((Date.now() - begun) / 1000, 0)} s: ${text} (load ${loadavg()})\n`);
  const SETTLE_MS = options.quick ? 1000 : 4000;
  /** libwebrtc starts below its bitrate cap and ramps up. */
  const WHIP_SETTLE_MS = options.quick ? 1000 : 8000;

  const work = mkdtempSync(join(tmpdir(), 'relaycast-recording-bench-'));
  const recordDir = join(work, 'recordings');
  mkdirSync(recordDir);
  const db = await createTestDatabase();
  const cleanUp = onInterrupt(async () => {
    rmSync(work, { recursive: true, force: true });
    await db.drop();
  });
  const knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 4 } });
  const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
  // Retention 0: the origins' minute sweep would otherwise start deleting the index figure's month.
  const common = ['--rtc-listen-ip', '127.0.0.1', '--workers', '1', '--log-level', 'warn', '--post-rate-limit', '0', '--record-dir', recordDir, '--recording-retention-days', '0'];
  const nodes: RelaycastProcess[] = [];
  const publishers = new Set<ChildProcess>();
  const children = new Set<Child>();
  const odd: string[] = [];
  const loads: Array<{ at: string; load: string }> = [];
  const noteLoad = (at: string) => loads.push({ at, load: loadavg() });
  const tables: Table[] = [];
  const report: Record<string, unknown> = {};
  try {
    say('starting a balancer, an origin and an edge on a fresh database');
    const [balancer, origin, edge] = await Promise.all([
      startRelaycast({ roles: ['balancer'], databaseUrl: db.url, env, args: ['--node-id', 'bench-balancer', ...common] }),
      startRelaycast({ roles: ['origin'], databaseUrl: db.url, env, args: ['--node-id', 'bench-origin', ...common] }),
      startRelaycast({ roles: ['edge'], databaseUrl: db.url, env, args: ['--node-id', 'bench-edge', ...common] }),
    ]);
    nodes.push(balancer, origin, edge);
    const clip = join(work, 'clip.mp4');
    encodeClip(clip);
    const api = adminClient(balancer.url, ADMIN);
    const createStream = async (name: string, settings: Record<string, unknown>) => {
      const created = await api('POST', '/streams', { name, ...settings });
      if (created.status !== 201) throw new Error(`POST /api/v1/streams: ${created.status} ${JSON.stringify(created.body)}`);
      return created.body as { streamKey: string; publishToken: string };
    };
    const stateOf = async (name: string) => (await knex('streams').where({ name }).first('state'))?.state as string | undefined;
    /** The stream's rows: its recordings' segments, oldest first. */
    const segmentsOf = (stream: string) =>
      knex('recording_segments as s')
        .join('recordings as r', 'r.id', 's.recording_id')
        .where('r.stream', stream)
        .orderBy('s.started_at')
        .select('s.recording_id', 's.msn', 's.started_at', 's.duration', 's.bytes', 's.complete', 's.key') as Promise<
        Array<{ recording_id: string; msn: string | number; started_at: Date; duration: number; bytes: string | number; complete: boolean; key: string }>
      >;
    const recordedBytes = async (stream: string) => Number((await knex('recordings').where({ stream }).sum({ bytes: 'bytes' }).first())?.bytes ?? 0);

    // ---- 1. CPU and disk per stream on the origin ---------------------------------------------------
    type Publish = 'RTMP' | 'WHIP';
    type Setting = 'not recorded' | 'packaged, not recorded' | 'recorded';
    const SETTINGS: Setting[] = ['not recorded', 'packaged, not recorded', 'recorded'];
    interface CpuSample {
      publish: Publish;
      setting: Setting;
      run: number;
      seconds: number;
      cores: number;
      parts: Record<Part, number>;
      /** Bytes/s: the record dir's growth, the origin node's write_bytes, the index's bytes. */
      dirBytesPerS: number;
      nodeWriteBytesPerS: number;
      indexedBytesPerS: number;
      machineCores: number;
      load: string;
    }
    const cpuSamples: CpuSample[] = [];
    if (options.only.includes('cpu')) {
      const originPid = origin.child.pid!;
      const ffmpegsOf = () => processTree([originPid]).filter((pid) => commOf(pid) === 'ffmpeg' && isRunning(pid));
      const measure = async (publish: Publish, setting: Setting, run: number): Promise<void> => {
        const name = `cpu-${publish.toLowerCase()}-${setting === 'recorded' ? 'rec' : setting === 'not recorded' ? 'plain' : 'hls'}-${run}`;
        const settings = setting === 'recorded' ? { record: true } : setting === 'not recorded' ? { record: false } : { record: false, hls: 'always' };
        const created = await createStream(name, settings);
        let rtmp: ReturnType<typeof publishRtmp> | undefined;
        let whip: Child | undefined;
        try {
          if (publish === 'RTMP') {
            rtmp = publishRtmp(clip, `rtmp://127.0.0.1:${origin.rtmpPort}/live/${created.streamKey}`, 600);
            publishers.add(rtmp.child);
          } else {
            whip = startChild(WRTC_CLIENT, ['publish', '--target', `${origin.url}/whip/${name}`, '--token', created.publishToken, ...WHIP_ARGS, '--seconds', '600']);
            children.add(whip);
            await whip.next('ready', 40_000);
          }
          await waitFor(`${name} live`, async () => (await stateOf(name)) === 'live', LIVE_TIMEOUT_MS, 100).catch((error: Error) => {
            throw new Error(`${error.message}; publisher: ${rtmp?.stderr() ?? whip?.stderr().slice(-500)}`, { cause: error });
          });
          if (setting === 'recorded') await waitFor(`${name}: a recorded segment`, async () => (await segmentsOf(name)).some((s) => s.complete), FIRST_SEGMENT_TIMEOUT_MS, 250);
          if (setting === 'packaged, not recorded') await waitFor(`${name}: its packager`, () => ffmpegsOf().some((pid) => cmdline(pid).includes('+cmaf')), FIRST_SEGMENT_TIMEOUT_MS, 250);
          await sleep(publish === 'WHIP' ? WHIP_SETTLE_MS : SETTLE_MS);
          const before = { cpu: treeCpu(originPid), at: performance.now(), dir: dirBytes(recordDir), io: writeBytes(originPid), indexed: await recordedBytes(name) };
          const machineCpu = new MachineCpu();
          machineCpu.start();
          await sleep(options.window * 1000);
          const after = { cpu: treeCpu(originPid), at: performance.now(), dir: dirBytes(recordDir), io: writeBytes(originPid), indexed: await recordedBytes(name) };
          const seconds = (after.at - before.at) / 1000;
          const parts = coresBetween(before.cpu, after.cpu, seconds);
          const sample: CpuSample = {
            publish,
            setting,
            run,
            seconds,
            cores: PARTS.reduce((s, p) => s + parts[p], 0),
            parts,
            dirBytesPerS: (after.dir - before.dir) / seconds,
            nodeWriteBytesPerS: (after.io - before.io) / seconds,
            indexedBytesPerS: (after.indexed - before.indexed) / seconds,
            machineCores: machineCpu.read(),
            load: loadavg(),
          };
          cpuSamples.push(sample);
          say(`${publish} ${setting}, run ${run}: origin ${pct(sample.cores)} (node ${pct(parts.node)}, worker ${pct(parts.worker)}, bridge ${pct(parts.bridge)}, packager ${pct(parts.packager)}), written ${mb(sample.dirBytesPerS)} MB/s`);
        } finally {
          if (rtmp) {
            await stopProcess(rtmp.child, 5000);
            publishers.delete(rtmp.child);
          }
          if (whip) {
            whip.send('stop');
            await Promise.race([whip.exited, sleep(5000)]);
            await whip.stop();
            children.delete(whip);
          }
        }
        // The next window starts on an origin without this stream: unplaced, its ffmpegs gone.
        await waitFor(`${name} ended`, async () => (await stateOf(name)) !== 'live' && ffmpegsOf().length === 0, ENDED_TIMEOUT_MS, 200).catch((error: Error) => {
          odd.push(`${name}: ${error.message} (ffmpegs left: ${ffmpegsOf().map((pid) => cmdline(pid).slice(0, 120)).join(' | ') || 'none'})`);
        });
      };
      // --quick leaves out the packaged baseline (time); its columns then say n/a.
      const settings = options.quick ? SETTINGS.filter((x) => x !== 'packaged, not recorded') : SETTINGS;
      for (let run = 1; run <= options.runs; run++) {
        for (const publish of ['RTMP', 'WHIP'] as const) {
          for (const setting of run % 2 ? settings : [...settings].reverse()) {
            try {
              await measure(publish, setting, run);
            } catch (error) {
              odd.push(`CPU ${publish} ${setting} run ${run}: ${(error as Error).message}`);
            }
          }
        }
      }
      noteLoad('CPU per stream');
      const of = (publish: Publish, setting: Setting) => cpuSamples.filter((s) => s.publish === publish && s.setting === setting);
      const rows: string[][] = [];
      const summary: Record<string, unknown> = {};
      for (const publish of ['RTMP', 'WHIP'] as const) {
        const plain = median(of(publish, 'not recorded').map((s) => s.cores));
        const hls = median(of(publish, 'packaged, not recorded').map((s) => s.cores));
        for (const setting of SETTINGS) {
          const xs = of(publish, setting);
          if (xs.length === 0) continue;
          const cores = median(xs.map((s) => s.cores));
          const part = (p: Part) => pct(median(xs.map((s) => s.parts[p])));
          rows.push([
            publish,
            setting,
            String(xs.length),
            `${spread(xs.map((s) => s.cores * 100), 1)} %`,
            part('node'),
            part('worker'),
            part('bridge'),
            part('packager'),
            setting === 'not recorded' ? '1' : `${fmt(cores / plain, 2)}×`,
            setting === 'recorded' ? `${fmt(cores / hls, 2)}×` : '',
            setting === 'recorded' ? fmt(median(xs.map((s) => s.dirBytesPerS)) / 1e6, 3) : '',
            setting === 'recorded' ? fmt(median(xs.map((s) => s.nodeWriteBytesPerS)) / 1e6, 3) : '',
            setting === 'recorded' ? fmt((median(xs.map((s) => s.indexedBytesPerS)) * 8) / 1000, 0) : '',
            xs.map((s) => s.load.split(' ')[0]).join(', '),
          ]);
        }
        const rec = median(of(publish, 'recorded').map((s) => s.cores));
        summary[publish] = {
          notRecordedCores: plain,
          packagedCores: hls,
          recordedCores: rec,
          ratioRecordedToNotRecorded: rec / plain,
          ratioRecordedToPackaged: rec / hls,
          recorderOwnCores: median(of(publish, 'recorded').map((s) => s.parts.node)) - median(of(publish, 'packaged, not recorded').map((s) => s.parts.node)),
          writtenMBps: median(of(publish, 'recorded').map((s) => s.dirBytesPerS)) / 1e6,
        };
      }
      report.cpu = { samples: cpuSamples, summary };
      tables.push({
        title: `Recording cost per stream on the origin: origin process tree CPU, % of one core (median (range) of ${options.runs} window(s) of ${options.window} s), and what it writes`,
        head: ['publish', 'setting', 'n', 'origin CPU', 'node', 'worker', 'bridge ffmpeg', 'packager ffmpeg', '÷ not recorded', '÷ packaged', 'files MB/s', 'write_bytes MB/s', 'indexed kbit/s', 'load 1 min'],
        rows,
        how: [
          'origin CPU: the origin node process and every process under it (its mediasoup worker, the RTMP bridge ffmpeg, the HLS packager ffmpeg), user + system from /proc over the window; the publishers (ffmpeg x264, libwebrtc) are other processes and not counted',
          'not recorded: no HLS viewer, so no packager (--hls on-demand, the default); packaged: the stream\'s `hls: always` (what HLS alone costs); recorded: `record: true` (the packager kept running, and the recorder in the node process appending, fdatasync-ing every second and upserting its segment row)',
          `RTMP: ffmpeg -re -stream_loop -1 -c copy of ${CLIP_S} s of testsrc2 ${VIDEO_SIZE} ${FPS} fps encoded once with x264's defaults, -g ${2 * FPS} (High, B-frames), + AAC: the packager copies it; the bridge to WebRTC re-encodes it (B-frames) whether recorded or not`,
          'WHIP: the libwebrtc client (kit/clients/wrtc.ts publish), 640x360 VP8 ≤ 1 Mbit/s + Opus: the packager encodes it to x264 veryfast + AAC (HlsPackager\'s HLS_VIDEO_ENCODE), the dominant cost of recording it',
          'files MB/s: growth of the record dir (sizes of its files); write_bytes: the origin node process\'s /proc/<pid>/io (what it sent toward the disk); indexed kbit/s: the recordings\' bytes in Postgres per second (the media\'s bitrate as recorded)',
          `cores per recorded stream: RTMP ${pct((summary.RTMP as { recordedCores: number }).recordedCores)} vs ${pct((summary.RTMP as { notRecordedCores: number }).notRecordedCores)} not recorded; WHIP ${pct((summary.WHIP as { recordedCores: number }).recordedCores)} vs ${pct((summary.WHIP as { notRecordedCores: number }).notRecordedCores)}`,
        ],
      });
    }

    // ---- 3. media lost on kill -9 -----------------------------------------------------------------
    interface KillRun {
      run: number;
      delayMs: number;
      lossMs: number;
      segments: number;
      /** Bytes in the recording's files beyond what its rows name (written, not indexed). */
      unindexedBytes: number;
      /** How far the run's first segment (started_at + duration) reaches past the second's started_at: the program date-time before the packager's clock offset settled. */
      firstOverlapMs: number;
      staleness: number[];
    }
    const kills: KillRun[] = [];
    if (options.only.includes('kill')) {
      for (let run = 1; run <= options.kills; run++) {
        say(`kill -9, run ${run}/${options.kills}`);
        const name = `kill-${run}`;
        let killed: RelaycastProcess | undefined;
        let publisher: ReturnType<typeof publishRtmp> | undefined;
        try {
          killed = await startRelaycast({ roles: ['origin'], databaseUrl: db.url, env, args: ['--node-id', `kill-origin-${run}`, ...common] });
          nodes.push(killed);
          const created = await createStream(name, { record: true });
          publisher = publishRtmp(clip, `rtmp://127.0.0.1:${killed.rtmpPort}/live/${created.streamKey}`, 120);
          publishers.add(publisher.child);
          const staleness: number[] = [];
          // The end of the media the index holds: its last segment row's start + duration (the
          // first segment of a run may start later than it should: its program date-time is set
          // before the packager's clock offset settles; see firstOverlapMs).
          const endOf = (rows: Awaited<ReturnType<typeof segmentsOf>>) => {
            const last = rows.reduce((a, b) => (Number(b.msn) > Number(a.msn) ? b : a));
            return last.started_at.getTime() + last.duration * 1000;
          };
          await waitFor(`${name}: two complete segments`, async () => (await segmentsOf(name)).filter((r) => r.complete).length >= 2, 60_000, 100);
          // A random moment within a segment's length (every phase of the flush and of the
          // segment), after two more seconds of sampling what a kill would lose (not in --quick).
          const delayMs = randomInt(0, 2000) + (options.quick ? 0 : 2000);
          const until = Date.now() + delayMs;
          while (Date.now() + 100 < until) {
            const rows = await segmentsOf(name);
            staleness.push(Date.now() - endOf(rows));
            await sleep(Math.min(100, until - Date.now()));
          }
          await sleep(Math.max(0, until - Date.now()));
          const killedAt = Date.now();
          await killed.kill();
          nodes.splice(nodes.indexOf(killed), 1);
          await stopProcess(publisher.child, 5000);
          publishers.delete(publisher.child);
          // A transaction the node had sent may still commit: the rows as Postgres keeps them.
          await sleep(300);
          const rows = await segmentsOf(name);
          const onDisk = rows.reduce((sum, r) => {
            try {
              return sum + statSync(join(recordDir, r.key)).size;
            } catch {
              return sum;
            }
          }, 0);
          const indexed = rows.reduce((sum, r) => sum + Number(r.bytes), 0);
          const [first, second] = [...rows].sort((a, b) => Number(a.msn) - Number(b.msn));
          const firstOverlapMs = first && second ? first.started_at.getTime() + first.duration * 1000 - second.started_at.getTime() : NaN;
          const k: KillRun = { run, delayMs, lossMs: killedAt - endOf(rows), segments: rows.length, unindexedBytes: onDisk - indexed, firstOverlapMs, staleness };
          kills.push(k);
          say(`kill -9 run ${run}: ${k.lossMs} ms of media after the index's end (${rows.length} rows; ${k.unindexedBytes} bytes on disk beyond them)`);
        } catch (error) {
          odd.push(`kill run ${run}: ${(error as Error).message}`);
        } finally {
          if (publisher) {
            await stopProcess(publisher.child, 5000);
            publishers.delete(publisher.child);
          }
          if (killed && nodes.includes(killed)) {
            await killed.kill();
            nodes.splice(nodes.indexOf(killed), 1);
          }
        }
      }
      noteLoad('kill -9');
      const losses = kills.map((k) => k.lossMs);
      const stale = kills.flatMap((k) => k.staleness);
      report.kill = { runs: kills, lossMs: { p50: median(losses), max: max(losses) }, stalenessMs: { p50: percentile(stale, 50), p95: percentile(stale, 95), max: max(stale), samples: stale.length } };
      tables.push({
        title: `Media lost on kill -9 of the recording origin, s (${kills.length} run(s); goal ≤ ${GOAL.lossS} s)`,
        head: ['measure', 'p50', 'p95', 'max', 'n', `goal ≤ ${GOAL.lossS} s`],
        rows: [
          ['loss at kill -9: kill time − end of the indexed media', fmt(median(losses) / 1000, 2), fmt(percentile(losses, 95) / 1000, 2), fmt(max(losses) / 1000, 2), String(losses.length), max(losses) <= GOAL.lossS * 1000 ? 'met' : 'not met'],
          ['the same, sampled every 100 ms while recording', fmt(percentile(stale, 50) / 1000, 2), fmt(percentile(stale, 95) / 1000, 2), fmt(max(stale) / 1000, 2), String(stale.length), max(stale) <= GOAL.lossS * 1000 ? 'met' : 'not met'],
        ],
        how: [
          `an origin of its own per run records the RTMP publish (the looped x264-defaults clip, -re); after two complete segments and a random ${options.quick ? '0–2' : '2–4'} s more, SIGKILL; its rows read from Postgres after the kill`,
          `end of the indexed media: started_at + duration of the recording's last row (highest msn); started_at is the packager's program date-time, the wall clock of the media as it leaves the packager ffmpeg, so the encoder's and RTMP's latency before that are not counted; the part being filled (0.33 s), the flush interval (${FLUSH_MS / 1000} s), fdatasync and the row's write are`,
          `sampled: now − the same end, polled every 100 ms from the second complete segment to each kill: what a kill at that moment would lose; ${kills.map((k) => k.unindexedBytes).join(', ')} bytes on disk beyond the rows at the kills (written, not yet flushed and indexed; a playback ignores them)`,
          `each run's first segment reaches ${kills.map((k) => fmt(k.firstOverlapMs, 0)).join(', ')} ms past the second's start (started_at + duration − the next started_at; 0 if the times were consistent: LivePlaylist moves a segment being made with the settling clock offset)`,
        ],
      });
    }

    // ---- 4. export of an hour -----------------------------------------------------------------------
    if (options.only.includes('export')) {
      const seconds = options.minutes * 60;
      say(`building a recording of ${options.minutes} min through Fmp4Reader → LivePlaylist → Recorder`);
      const stream = 'export-hour';
      const base = Math.floor((Date.now() - seconds * 1000 - 3_600_000) / 1000) * 1000;
      const clock = { now: base };
      const run = randomBytes(4).toString('hex');
      const playlist = new LivePlaylist({ run, partTarget: PART_TARGET_S, segmentMin: SEGMENT_MIN_S, targetDuration: TARGET_DURATION_S, window: WINDOW_S, now: () => clock.now });
      const reader = new Fmp4Reader();
      let resolveReady!: (init: Fmp4Init) => void;
      let rejectReady!: (error: Error) => void;
      const ready = new Promise<Fmp4Init>((resolve, reject) => {
        resolveReady = resolve;
        rejectReady = reject;
      });
      ready.catch(() => undefined);
      let isReady = false;
      // The muxer's options are HlsPackager's (its constructor's, FRAGMENT_US = 50 ms).
      const ffmpeg = spawnTracked('ffmpeg', [
        ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-stream_loop', '-1', '-i', clip, '-t', String(seconds), '-map', '0', '-c', 'copy'],
        ...['-f', 'mp4', '-movflags', 'empty_moov+default_base_moof+frag_keyframe+cmaf', '-frag_duration', '50000', '-flush_packets', '1', 'pipe:1'],
      ], { stdio: ['ignore', 'pipe', 'pipe'] });
      let ffmpegErr = '';
      ffmpeg.stderr!.on('data', (d) => (ffmpegErr = (ffmpegErr + d).slice(-2000)));
      const packager = Object.assign(new EventEmitter(), { stream, playlist, ready: () => ready }) as unknown as HlsPackager;
      const index: RecordingIndex = {
        open: async (startedAt) => {
          const { recording, continued } = await openRecording(knex, { stream, startedAt, resumeGapMs: RESUME_GAP_MS });
          return { id: recording.id, continued };
        },
        write: (segment, added) => writeSegment(knex, { ...segment, nodeId: 'bench-origin' }, added),
        close: (id) => closeRecording(knex, id),
      };
      const recorder = new Recorder({ packager, store: new LocalRecordingStore(recordDir), index, logger: createLogger('silent') });
      const failures: string[] = [];
      recorder.on('failure', (where, error) => failures.push(`${where}: ${error.message}`));
      // The timeline across the loops: each fragment (video track) where the last one ended.
      const timeline = { fragments: 0, backwards: 0, gaps: 0, largestGapMs: 0, lastEnd: NaN };
      let made = 0;
      let recorded = 0;
      const stdout = ffmpeg.stdout!;
      recorder.on('recorded', () => {
        recorded++;
        if (made - recorded <= 2) stdout.resume();
      });
      playlist.on('segment', () => {
        made++;
        // The recorder more than four segments behind: ffmpeg waits (the playlist drops a part's bytes 16 s behind live).
        if (made - recorded > 4) stdout.pause();
      });
      reader.on('fragment', (fragment) => {
        timeline.fragments++;
        if (Number.isFinite(timeline.lastEnd)) {
          const gapMs = (fragment.start - timeline.lastEnd) * 1000;
          if (gapMs < -1) timeline.backwards++;
          if (gapMs > 1) {
            timeline.gaps++;
            timeline.largestGapMs = Math.max(timeline.largestGapMs, gapMs);
          }
        }
        timeline.lastEnd = fragment.start + fragment.duration;
        clock.now = base + Math.round((fragment.start + fragment.duration) * 1000);
        playlist.addFragment(fragment);
        if (!isReady && playlist.lastPosition) {
          isReady = true;
          resolveReady(reader.init!);
        }
      });
      stdout.on('data', (chunk: Buffer) => reader.push(chunk));
      const buildStarted = performance.now();
      const exited = new Promise<number | null>((resolve) => ffmpeg.once('close', (code) => resolve(code)));
      const timer = setTimeout(() => ffmpeg.kill('SIGKILL'), EXPORT_BUILD_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      if (!isReady) rejectReady(new Error('no media'));
      playlist.end(true);
      packager.emit('closed', 'stream ended');
      await recorder.closed();
      const buildS = (performance.now() - buildStarted) / 1000;
      if (code !== 0) throw new Error(`the looping ffmpeg exited with ${code}: ${ffmpegErr}`);
      if (failures.length) odd.push(`export recording: the recorder failed ${failures.length} time(s): ${failures.slice(0, 3).join('; ')}`);
      const id = recorder.recordingId!;
      const row = await knex('recordings').where({ id }).first();
      const segments = Number((await knex('recording_segments').where({ recording_id: id }).count({ n: '*' }).first())?.n ?? 0);
      say(`recorded ${fmt(Number(row.duration), 1)} s in ${segments} segments, ${mb(Number(row.bytes))} MB, in ${fmt(buildS, 1)} s`);
      if (timeline.backwards > 0) odd.push(`export recording: ${timeline.backwards} fragment(s) start before the previous one ended (the loop's timestamps went back)`);

      const exports: Array<{ headersMs: number; firstByteMs: number; totalMs: number; bytes: number; edgeCores: number }> = [];
      let probe: { duration: number; video: number; audio: number; errors: string; moovFirst: boolean } | undefined;
      const exportRuns = options.quick ? 1 : 2;
      for (let i = 0; i < exportRuns; i++) {
        const path = join(work, 'export.mp4');
        const edgeCpu = treeSampler(edge.child.pid!);
        const t0 = performance.now();
        const res = await fetch(`${edge.url}/recordings/${id}/export.mp4`, { signal: AbortSignal.timeout(EXPORT_TIMEOUT_MS) });
        const headersMs = performance.now() - t0;
        if (res.status !== 200) throw new Error(`export: ${res.status} ${await res.text()}`);
        let firstByteMs = NaN;
        let bytes = 0;
        const file = await openFile(path, 'w');
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            if (bytes === 0) firstByteMs = performance.now() - t0;
            bytes += chunk.length;
            await file.write(chunk);
          }
        } finally {
          await file.close();
        }
        const totalMs = performance.now() - t0;
        const edgeCores = edgeCpu.stop();
        exports.push({ headersMs, firstByteMs, totalMs, bytes, edgeCores });
        say(`export ${i + 1}/${exportRuns}: first byte after ${fmt(firstByteMs, 0)} ms, all ${mb(bytes)} MB after ${fmt(totalMs, 0)} ms`);
        if (i === 0) {
          const run = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration:stream=codec_type,duration', '-of', 'json', path], { encoding: 'utf8', timeout: 120_000 });
          const out = JSON.parse(run.stdout || '{}') as { format?: { duration?: string }; streams?: Array<{ codec_type: string; duration?: string }> };
          probe = {
            duration: Number(out.format?.duration),
            video: Number(out.streams?.find((s) => s.codec_type === 'video')?.duration),
            audio: Number(out.streams?.find((s) => s.codec_type === 'audio')?.duration),
            errors: run.stderr.trim().slice(0, 500),
            moovFirst: (() => {
              const boxes = topBoxes(path);
              return boxes.includes('moov') && boxes.indexOf('moov') < boxes.indexOf('mdat');
            })(),
          };
          if (probe.errors) odd.push(`ffprobe of the export: ${probe.errors}`);
        }
        rmSync(path, { force: true });
      }
      noteLoad('export');
      report.export = { minutes: options.minutes, build: { seconds: buildS, segments, duration: Number(row.duration), bytes: Number(row.bytes), timeline, failures }, runs: exports, probe };
      tables.push({
        title: `Export of a ${options.minutes}-minute recording as one MP4 (GET /recordings/{id}/export.mp4 from the edge; ${exports.length} run(s), median (range))`,
        head: ['recording', 'segments', 'first byte, s', 'total, s', 'MP4 MB', 'ffprobe duration, s', 'video / audio, s', 'moov first', 'edge CPU'],
        rows: [
          [
            `${fmt(Number(row.duration), 1)} s, ${mb(Number(row.bytes))} MB`,
            String(segments),
            spread(exports.map((e) => e.firstByteMs / 1000), 2),
            spread(exports.map((e) => e.totalMs / 1000), 2),
            mb(exports[0]?.bytes ?? NaN),
            (probe?.duration ?? NaN).toFixed(2),
            `${(probe?.video ?? NaN).toFixed(2)} / ${(probe?.audio ?? NaN).toFixed(2)}`,
            probe?.moovFirst ? 'yes' : 'no',
            `${spread(exports.map((e) => e.edgeCores * 100), 0)} %`,
          ],
        ],
        how: [
          `the recording: the ${CLIP_S} s clip (testsrc2 ${VIDEO_SIZE} ${FPS} fps, x264 defaults, -g ${2 * FPS}, AAC) looped by ffmpeg -c copy, as fast as it goes, into HlsPackager's muxer options; its stdout through Fmp4Reader → LivePlaylist → Recorder → LocalRecordingStore and the index (db/repositories/recordings.ts), built in ${fmt(buildS, 1)} s; across the loops ${timeline.backwards} fragment(s) went back in time, ${timeline.gaps} gap(s) between fragments (largest ${fmt(timeline.largestGapMs, 1)} ms)`,
          'first byte: the request → the first byte of the body (faststart puts the index first, so the edge remuxes the whole range before it sends anything: ffmpeg concat -c copy -movflags +faststart into a temporary file); total: → the last byte, written to a file here',
          `edge CPU: the edge process tree (node + the remuxing ffmpeg, read every 100 ms), % of one core over the request; ${fmt(median(exports.map((e) => e.bytes / 1e6 / (e.totalMs / 1000))), 0)} MB/s end to end; ffprobe reads the file that arrived`,
        ],
      });
    }

    // ---- 2. the index at scale ----------------------------------------------------------------------
    if (options.only.includes('index')) {
      const stream = 'archive';
      const days = options.days;
      const dayMs = 86_400_000;
      const start = Math.floor((Date.now() - (days + 1) * dayMs) / dayMs) * dayMs;
      const noiseStreams = options.quick ? 5 : 50;
      say(`filling the index: ${days} day(s) of ${SEGMENT_S} s segments of "${stream}" (${(days * SEGMENTS_PER_DAY).toLocaleString('en')} rows), ${noiseStreams} other streams as noise`);
      const fillStarted = performance.now();
      const recs = Array.from({ length: days }, (_, d) => ({
        id: randomBytes(16).toString('base64url'),
        stream,
        started_at: new Date(start + d * dayMs),
        ended_at: new Date(start + (d + 1) * dayMs),
        closed_at: new Date(start + (d + 1) * dayMs),
        updated_at: new Date(start + (d + 1) * dayMs),
        duration: 86_400,
        bytes: SEGMENTS_PER_DAY * 250_000,
      }));
      // Noise: other streams' hourly recordings over the same days (rows in `recordings`), and two days of segments of one of them.
      const noise = Array.from({ length: noiseStreams * days * 24 }, (_, i) => {
        const at = start + (i % (days * 24)) * 3_600_000;
        return {
          id: randomBytes(16).toString('base64url'),
          stream: `noise-${Math.floor(i / (days * 24))}`,
          started_at: new Date(at),
          ended_at: new Date(at + 3_600_000),
          closed_at: new Date(at + 3_600_000),
          updated_at: new Date(at + 3_600_000),
          duration: 3600,
          bytes: 1800 * 250_000,
        };
      });
      await knex.batchInsert('recordings', [...recs, ...noise], 1000);
      const segmentRows = async (where: string, perRecording: number, bindings: Knex.RawBinding[]) =>
        knex.raw(
          `insert into recording_segments (recording_id, run, msn, started_at, duration, bytes, complete, store, node_id, key, init_key, codecs)
           select r.id, substr(md5(r.id), 1, 8), 1800000000 + s.n, r.started_at + s.n * interval '${SEGMENT_S} seconds', ${SEGMENT_S}, 240000 + (s.n % 13) * 1000, true,
                  'local', 'bench-origin', r.id || '/' || substr(md5(r.id), 1, 8) || '/' || (1800000000 + s.n) || '.m4s', r.id || '/' || substr(md5(r.id), 1, 8) || '/init.mp4', 'avc1.64001e,mp4a.40.2'
             from recordings r cross join generate_series(0, ${perRecording - 1}) s(n)
            where ${where}`,
          bindings,
        );
      await segmentRows('r.stream = ?', SEGMENTS_PER_DAY, [stream]);
      await segmentRows('r.stream = ? and r.started_at < ?', 1800, ['noise-0', new Date(start + 2 * dayMs)]);
      await knex.raw('analyze recordings; analyze recording_segments');
      const fillS = (performance.now() - fillStarted) / 1000;
      const counts = {
        segments: Number((await knex('recording_segments').count({ n: '*' }).first())?.n ?? 0),
        archiveSegments: Number((await knex('recording_segments').whereIn('recording_id', recs.map((r) => r.id)).count({ n: '*' }).first())?.n ?? 0),
        recordings: Number((await knex('recordings').count({ n: '*' }).first())?.n ?? 0),
        tableMB: Number((await knex.raw(`select pg_total_relation_size('recording_segments') as b`)).rows[0].b) / 1e6,
      };
      say(`filled in ${fmt(fillS, 1)} s: ${counts.segments.toLocaleString('en')} segment rows (${counts.archiveSegments.toLocaleString('en')} of "${stream}"), ${counts.recordings.toLocaleString('en')} recordings, ${fmt(counts.tableMB, 0)} MB with indexes`);
      noteLoad('index filled');

      const iso = (t: number) => new Date(t).toISOString();
      const middle = recs[Math.floor(days / 2)]!;
      const dayFrom = middle.started_at.getTime();
      const hourFrom = dayFrom + 12 * 3_600_000;
      const auth = { authorization: `Bearer ${ADMIN}` };
      const n = options.requests;
      const nLong = options.quick ? 1 : Math.max(3, Math.ceil(n / 5));
      const listing = (from: number, to: number) => `${balancer.url}/api/v1/streams/${stream}/recordings?from=${iso(from)}&to=${iso(to)}`;
      const playlistUrl = (from?: number, to?: number) => `${edge.url}/recordings/${middle.id}/index.m3u8${from === undefined ? '' : `?from=${iso(from)}&to=${iso(to!)}`}`;
      const cases = [
        { what: 'listing, one day (admin API via the balancer)', url: listing(dayFrom, dayFrom + dayMs), headers: auth, n, goal: true, count: (b: string) => (JSON.parse(b) as { items: unknown[] }).items.length },
        { what: `listing, all ${days} day(s)`, url: listing(start, start + days * dayMs), headers: auth, n, goal: true, count: (b: string) => (JSON.parse(b) as { items: unknown[] }).items.length },
        { what: 'playlist, one hour (the edge)', url: playlistUrl(hourFrom, hourFrom + 3_600_000), headers: {}, n, goal: false, count: (b: string) => b.split('\n').filter((l) => l.endsWith('.m4s')).length },
        { what: 'playlist, a whole day (43,200 segments: the most one lists)', url: playlistUrl(), headers: {}, n: nLong, goal: false, count: (b: string) => b.split('\n').filter((l) => l.endsWith('.m4s')).length },
      ];
      const timings: Array<{ what: string; ms: number[]; bytes: number; items: number }> = [];
      for (const c of cases) {
        say(`timing ${c.n} × ${c.what}`);
        const t = await timeGets(c.url, c.n, c.headers, options.quick ? 1 : 2);
        timings.push({ what: c.what, ms: t.ms, bytes: t.bytes, items: c.count(t.body) });
      }
      noteLoad('index timed');
      // The queries as the repository makes them (listRecordings, recordingSegments), explained.
      const explain = async (query: Knex.QueryBuilder) => {
        const sql = query.toSQL();
        const plan = (await knex.raw(`explain (analyze, buffers) ${sql.sql}`, sql.bindings as readonly Knex.RawBinding[])).rows as Array<{ 'QUERY PLAN': string }>;
        return plan.map((r) => r['QUERY PLAN']);
      };
      const plans = {
        listing: await explain(
          knex('recordings').where('stream', stream).orderBy([{ column: 'started_at' }, { column: 'id' }]).limit(101).where('started_at', '<', new Date(dayFrom + dayMs)).where('ended_at', '>', new Date(dayFrom)),
        ),
        segments: await explain(
          knex('recording_segments').where('recording_id', middle.id).orderBy([{ column: 'started_at' }, { column: 'msn' }]).limit(43_201).where('started_at', '<', new Date(hourFrom + 3_600_000)).where('started_at', '>', new Date(hourFrom - 10_000)),
        ),
      };
      report.index = { days, start: iso(start), fillSeconds: fillS, counts, timings: timings.map((t) => ({ ...t, p50: percentile(t.ms, 50), p95: percentile(t.ms, 95), max: max(t.ms) })), plans };
      tables.push({
        title: `Recordings index over ${days} day(s) of ${SEGMENT_S}-second segments: ${counts.archiveSegments.toLocaleString('en')} segment rows of one stream (${counts.segments.toLocaleString('en')} in all, ${counts.recordings.toLocaleString('en')} recordings), ms through HTTP`,
        head: ['request', 'items', 'bytes', 'p50', 'p95', 'max', 'n', `goal ≤ ${GOAL.listingMs} ms`],
        rows: timings.map((t, i) => [
          t.what,
          t.items.toLocaleString('en'),
          t.bytes.toLocaleString('en'),
          ms0(percentile(t.ms, 50)),
          ms0(percentile(t.ms, 95)),
          ms0(max(t.ms)),
          String(t.ms.length),
          cases[i]!.goal ? (percentile(t.ms, 95) <= GOAL.listingMs ? 'met (p95)' : 'not met (p95)') : '',
        ]),
        how: [
          `the index: one recording a day of "${stream}" (${SEGMENTS_PER_DAY.toLocaleString('en')} rows of ${SEGMENT_S} s each), ${noiseStreams} other streams' hourly recordings over the same days, two days of one of them as segments; one insert … select … generate_series per kind into the indexed table, then ANALYZE; filled in ${fmt(fillS, 1)} s, recording_segments ${fmt(counts.tableMB, 0)} MB with its indexes`,
          `requests one after another from this process (fetch, keep-alive), ${options.quick ? 'one' : 'two'} untimed first, to the whole body; listing: GET /api/v1/streams/${stream}/recordings?from&to on the balancer (a page of up to 100); playlists: GET /recordings/{id}/index.m3u8?from&to on the edge (the day's middle recording; one hour: 1,800 segments)`,
          `EXPLAIN ANALYZE, listing: ${plans.listing.filter((l) => /Scan|Execution Time/.test(l)).map((l) => l.trim()).join('; ')}`,
          `EXPLAIN ANALYZE, one hour's segments: ${plans.segments.filter((l) => /Scan|Execution Time/.test(l)).map((l) => l.trim()).join('; ')}`,
        ],
      });
    }

    const loadAtEnd = loadavg();
    const warnings = Object.fromEntries(nodes.map((node, i) => [['balancer', 'origin', 'edge'][i] ?? `node-${i}`, serverWarnings(node)]));
    const footer = [
      `machine: ${machine.cores} × ${machine.cpu}; load average at start ${loadAtStart}, at end ${loadAtEnd}; during: ${loads.map((l) => `${l.at} ${l.load.split(' ')[0]}`).join(', ')}`,
      ...(odd.length ? odd.map((x) => `odd: ${x}`) : ['odd: nothing']),
      ...Object.entries(warnings).flatMap(([node, list]) => list.map((w) => `${node} logged ${w.count} × ${w.what}`)),
    ];
    for (const table of tables) console.log(`\n${renderTable(table)}`);
    console.log(`\n${footer.join('\n')}`);
    mkdirSync(dirname(options.out), { recursive: true });
    writeFileSync(
      options.out,
      `${JSON.stringify({ startedAt: started.toISOString(), machine, options, load: { start: loadAtStart, end: loadAtEnd, during: loads }, goal: GOAL, flushMs: FLUSH_MS, ...report, odd, serverWarnings: warnings, tables }, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`,
    );
    console.log(`results: ${options.out}`);
    say('done');
    return 0;
  } finally {
    for (const p of publishers) await stopProcess(p, 5000);
    for (const c of children) await c.stop().catch(() => undefined);
    await Promise.all(nodes.map((node) => node.stop().catch(() => undefined)));
    await knex.destroy();
    await db.drop();
    rmSync(work, { recursive: true, force: true });
    cleanUp();
  }
}

await runCommand(parse, USAGE, main);
