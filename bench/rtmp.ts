/**
 * RTMP bridge and rendition benchmark (reports, does not pass or fail): real ffmpeg publishes
 * 640x360 30 fps H.264 + AAC over RTMP to an origin process; the origin bridges it to WebRTC;
 * Chromium viewers play it from an edge process (the Node client's libwebrtc has no H.264). Side
 * by side in one run, each mode on a stream of its own:
 *
 *   pass-through           x264 Constrained Baseline without B-frames: passed through
 *   re-encode (B-frames)   x264's default with B-frames: the bridge re-encodes it
 *   High, as it is         x264 High without B-frames: passed through, played as it is (this
 *                          Chromium decodes High through its High 4:4:4 offer)
 *   High + CB rendition    the same publish, viewers offering only Constrained Baseline (as
 *                          Firefox with OpenH264): the origin starts its 'h264' rendition, a
 *                          second ffmpeg reading the publish (log component rtmp-rendition)
 *   High + VP8 rendition   the same, viewers offering VP8 and no H.264 (as Firefox without
 *                          OpenH264): the 'vp8' rendition
 *   WHIP H.264 + VP8 rend. a Chromium page publishing Constrained Baseline H.264 over WHIP,
 *                          VP8-only viewers: the origin makes the VP8 rendition from the
 *                          publisher's RTP (an ffmpeg fed through a PlainTransport, its input an
 *                          SDP as a data: URL; log component whip-rendition)
 *
 * and reports, per mode (medians over --runs, the range of the runs in brackets):
 *
 *   publish → live       from the publisher's start (RTMP: ffmpeg spawned; WHIP: the publish()
 *                        call) to the stream's placement row being live
 *   1st viewer           WHEP POST → first decoded frame of the first viewer, measured in its page
 *                        (kit/browser.ts firstFrameMs); in a rendition mode it is the viewer who
 *                        starts the rendition
 *   2nd viewer (warm)    the same for a second viewer who joins while the first plays (in a
 *                        rendition mode: while the rendition runs, shared through the same relay)
 *   bridge CPU           the RTMP bridge ffmpeg's CPU (user + system, /proc, this process alone)
 *   rendition CPU        the rendition ffmpeg's, apart from the bridge's (RTMP: of the two ffmpegs
 *                        reading the publish, the one with no audio output; WHIP: the one reading
 *                        data:application/sdp), both in % of one core over a steady --seconds
 *                        window with both viewers playing
 *   viewer frames/s      frames the first viewer decoded per second over that window
 *   rendition stop       from the last viewer leaving (WHEP DELETE, page closed) to the rendition
 *                        ffmpeg's exit: the edge's relay linger (5 s) and the origin's teardown
 *
 * Only ffmpegs under this benchmark's origin process are counted (other suites may be running
 * theirs). The publishers (ffmpeg and Chromium) run on the same machine and are not counted.
 *
 *   npm run bench:rtmp [-- --runs 3 --seconds 10 --out rtmp.json]
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import knexFactory from 'knex';
import type { Page } from 'playwright-core';
import { signStreamToken } from '../core/tokens.ts';
import { TestBrowser, firstFrameMs, play, playbackStats, publish as publishWhip, stopPublishing, stopViewing, type ReceiveOnly } from '../kit/browser.ts';
import { CpuWindow, commOf, isRunning, loadavg, processTree } from '../kit/cpu.ts';
import { createTestDatabase } from '../kit/postgres.ts';
import { spawnTracked, waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { fmt, median, sleep, spread } from '../kit/stats.ts';
import { integerOption, onInterrupt, runCommand } from './lib/options.ts';
import { renderTable } from './lib/report.ts';

const SECRET = 'bench-cluster-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';

/** After the second viewer's first frame: time for the encoders to reach a steady rate before the CPU window. */
const WARMUP_MS = 2000;
/** Bounds on waits (not figures): a first frame, a rendition's exit after its last viewer left. */
const FIRST_FRAME_TIMEOUT_MS = 30_000;
const RENDITION_STOP_TIMEOUT_MS = 30_000;
/** A first frame slower than this is worth a word under the table. */
const SLOW_FIRST_FRAME_MS = 5000;

const USAGE = `npm run bench:rtmp [-- options]

  --runs N        publishes of each mode (default 3)
  --seconds S     CPU window of each publish (default 10)
  --out FILE      write every run's values and the medians there (JSON)
`;

interface Options {
  runs: number;
  seconds: number;
  out: string | undefined;
}

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  return { runs: integerOption('runs', values.runs), seconds: integerOption('seconds', values.seconds), out: values.out };
}

/** x264 High without B-frames: veryfast, since ultrafast drops CABAC and 8x8 and x264 then writes Constrained Baseline. */
const HIGH = ['-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'high', '-g', '30', '-bf', '0'];
const CB_ONLY: ReceiveOnly = { h264Profiles: ['42e01f'] };
const VP8_ONLY: ReceiveOnly = { codecs: ['video/VP8'] };

interface Mode {
  label: string;
  /** RTMP: x264 settings of the ffmpeg publisher; WHIP: a Chromium page publishing Constrained Baseline H.264. */
  ingest: { rtmp: string[] } | { whip: 'video/H264' };
  /** What the viewers offer (undefined: all this Chromium decodes). */
  only?: ReceiveOnly;
  /** The rendition the viewers need, if any. */
  rendition?: 'h264' | 'vp8';
  /** The codec the viewers should decode. */
  decodes: string;
}

const MODES: Mode[] = [
  { label: 'pass-through', ingest: { rtmp: ['-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '30', '-bf', '0'] }, decodes: 'video/H264' },
  { label: 're-encode (B-frames)', ingest: { rtmp: ['-preset', 'veryfast', '-g', '30'] }, decodes: 'video/H264' },
  { label: 'High, as it is', ingest: { rtmp: HIGH }, decodes: 'video/H264' },
  { label: 'High + CB rendition', ingest: { rtmp: HIGH }, only: CB_ONLY, rendition: 'h264', decodes: 'video/H264' },
  { label: 'High + VP8 rendition', ingest: { rtmp: HIGH }, only: VP8_ONLY, rendition: 'vp8', decodes: 'video/VP8' },
  { label: 'WHIP H.264 + VP8 rendition', ingest: { whip: 'video/H264' }, only: VP8_ONLY, rendition: 'vp8', decodes: 'video/VP8' },
];

interface Result {
  live: number[];
  first: number[];
  second: number[];
  /** % of one core. */
  bridge: number[];
  rendition: number[];
  /** Frames the 1st viewer decoded per second over the CPU window. */
  fps: number[];
  /** Last viewer gone → rendition ffmpeg exited, ms. */
  stop: number[];
  load: string[];
}

function rtmpPublisher(url: string, x264: string[], seconds: number): ChildProcess {
  return spawnTracked('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-c:v', 'libx264', ...x264, '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', String(seconds), '-f', 'flv', url], { stdio: 'ignore' });
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** The ffmpeg processes under this origin process whose arguments contain `text`, with their arguments. */
function originFfmpegs(origin: RelaycastProcess, text: string): Array<{ pid: number; args: string }> {
  return processTree([origin.child.pid!])
    .filter((pid) => commOf(pid) === 'ffmpeg')
    .map((pid) => ({ pid, args: cmdline(pid) }))
    .filter((p) => p.args.includes(text));
}

/**
 * The origin's ffmpegs for one publish: RTMP, the two reading `rtmp://…/<key>` (the bridge has an
 * audio output, `-c:a`; a rendition has none); WHIP, the rendition reading its SDP as a data: URL
 * (this benchmark runs one WHIP publish at a time).
 */
function ffmpegsOf(origin: RelaycastProcess, rtmpKey: string | undefined): { bridge: number[]; rendition: number[] } {
  if (rtmpKey === undefined) return { bridge: [], rendition: originFfmpegs(origin, '-i data:application/sdp').map((p) => p.pid) };
  const reading = originFfmpegs(origin, `-i rtmp://127.0.0.1:${origin.rtmpPort}/live/${rtmpKey}`);
  return { bridge: reading.filter((p) => p.args.includes('-c:a')).map((p) => p.pid), rendition: reading.filter((p) => !p.args.includes('-c:a')).map((p) => p.pid) };
}

async function main(options: Options): Promise<number> {
  const started = new Date();
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, kernel: release(), node: process.version };
  process.stderr.write(`relaycast RTMP bridge and rendition benchmark; load average at start ${loadavg()}\n`);
  const db = await createTestDatabase();
  const dropDb = onInterrupt(() => db.drop());
  const knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 2 } });
  const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
  const common = ['--rtc-listen-ip', '127.0.0.1', '--workers', '1', '--log-level', 'warn'];
  let origin: RelaycastProcess | undefined;
  let edge: RelaycastProcess | undefined;
  let browser: TestBrowser | undefined;
  const results = new Map<Mode, Result>(MODES.map((m) => [m, { live: [], first: [], second: [], bridge: [], rendition: [], fps: [], stop: [], load: [] }]));
  /** What did not go as it should, for under the table. */
  const odd: string[] = [];
  const publishers = new Set<ChildProcess>();
  const pages = new Set<Page>();
  const stateOf = async (name: string) => (await knex('streams').where({ name }).first('state'))?.state as string | undefined;
  const loadAtStart = loadavg();
  try {
    origin = await startRelaycast({ roles: ['origin', 'balancer'], databaseUrl: db.url, env, args: ['--node-id', 'bench-origin', ...common] });
    edge = await startRelaycast({ roles: ['edge'], databaseUrl: db.url, env, args: ['--node-id', 'bench-edge', ...common] });
    browser = await TestBrowser.launch();
    const newPage = async (url: string) => {
      const page = await browser!.page(url);
      pages.add(page);
      return page;
    };
    const closePage = async (page: Page) => {
      pages.delete(page);
      await page.close().catch(() => undefined);
    };

    for (let run = 0; run < options.runs; run++) {
      for (const [index, mode] of MODES.entries()) {
        const r = results.get(mode)!;
        const name = `bench-${run}-${index}`;
        const tag = `run ${run + 1}/${options.runs} ${mode.label}`;
        let rtmpKey: string | undefined;
        let publisher: ChildProcess | undefined;
        let publisherPage: Page | undefined;
        const publishToken = await signStreamToken(SECRET, { stream: name, action: 'publish' });
        const viewers: Page[] = [];
        try {
          let t0: number;
          if ('rtmp' in mode.ingest) {
            const created = await fetch(`${origin.url}/api/v1/streams`, {
              method: 'POST',
              headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
              body: JSON.stringify({ name }),
            });
            if (created.status !== 201) throw new Error(`POST /api/v1/streams: ${created.status} ${await created.text()}`);
            rtmpKey = ((await created.json()) as { streamKey: string }).streamKey;
            t0 = Date.now();
            publisher = rtmpPublisher(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${rtmpKey}`, mode.ingest.rtmp, options.seconds + 90);
            publishers.add(publisher);
          } else {
            publisherPage = await newPage(origin.url);
            t0 = Date.now();
            const res = await publishWhip(publisherPage, `${origin.url}/whip/${name}`, publishToken, mode.ingest.whip, ['42e01f']);
            if (res.status !== 201) throw new Error(`WHIP publish: ${res.status} ${res.body}`);
          }
          await waitFor(`${name} live`, async () => (await stateOf(name)) === 'live', 30_000, 20);
          const live = Date.now() - t0;

          // Viewers: the first (who starts the rendition, if any), then a second while it plays.
          const watch = async (who: string) => {
            const page = await newPage(edge!.url);
            viewers.push(page);
            const res = await play(page, `${edge!.url}/whep/${name}`, undefined, mode.only);
            if (res.status !== 201) throw new Error(`${who}: WHEP ${res.status} ${res.body}`);
            const ms = await firstFrameMs(page, FIRST_FRAME_TIMEOUT_MS);
            if (ms > SLOW_FIRST_FRAME_MS) odd.push(`${tag}: ${who}'s first frame took ${ms} ms`);
            return ms;
          };
          const first = await watch('the 1st viewer');
          const second = await watch('the 2nd viewer');
          for (const [i, page] of viewers.entries()) {
            const codec = (await playbackStats(page)).videoCodec;
            if (codec !== mode.decodes) odd.push(`${tag}: viewer ${i + 1} decodes ${codec}, not ${mode.decodes}`);
          }

          const pids = ffmpegsOf(origin, rtmpKey);
          const wantBridges = rtmpKey ? 1 : 0;
          const wantRenditions = mode.rendition ? 1 : 0;
          if (pids.bridge.length !== wantBridges || pids.rendition.length !== wantRenditions) {
            odd.push(`${tag}: ${pids.bridge.length} bridge and ${pids.rendition.length} rendition ffmpeg(s), not ${wantBridges} and ${wantRenditions}`);
          }
          await sleep(WARMUP_MS);
          const bridgeCpu = new CpuWindow(pids.bridge, { children: false });
          const renditionCpu = new CpuWindow(pids.rendition, { children: false });
          const framesBefore = (await playbackStats(viewers[0]!)).framesDecoded;
          const windowStart = Date.now();
          bridgeCpu.start();
          renditionCpu.start();
          await sleep(options.seconds * 1000);
          const bridge = bridgeCpu.read() * 100;
          const rendition = renditionCpu.read() * 100;
          const fps = ((await playbackStats(viewers[0]!)).framesDecoded - framesBefore) / ((Date.now() - windowStart) / 1000);
          const load = loadavg();

          // Both viewers leave; the rendition should stop once the edge lets its relay go.
          for (const page of viewers.splice(0)) {
            await stopViewing(page);
            await closePage(page);
          }
          let stop: number | undefined;
          if (pids.rendition.length > 0) {
            const left = Date.now();
            try {
              await waitFor(`${name}: the rendition ffmpeg to exit`, () => !pids.rendition.some(isRunning), RENDITION_STOP_TIMEOUT_MS, 100);
              stop = Date.now() - left;
            } catch {
              odd.push(`${tag}: the rendition ffmpeg (${pids.rendition.join(', ')}) still ran ${RENDITION_STOP_TIMEOUT_MS / 1000} s after its last viewer left`);
            }
          }
          if ((await stateOf(name)) !== 'live') odd.push(`${tag}: the stream was no longer live when its viewers had left`);

          r.live.push(live);
          r.first.push(first);
          r.second.push(second);
          if (rtmpKey) r.bridge.push(bridge);
          if (mode.rendition) r.rendition.push(rendition);
          r.fps.push(fps);
          if (stop !== undefined) r.stop.push(stop);
          r.load.push(load);
          process.stderr.write(
            `${tag}: live ${live} ms, first frames ${first} / ${second} ms, bridge ${rtmpKey ? `${fmt(bridge)} %` : '-'}, ` +
              `rendition ${mode.rendition ? `${fmt(rendition)} %` : '-'}, ${fmt(fps)} frames/s${stop !== undefined ? `, stopped ${stop} ms after its viewers left` : ''}; load ${load}\n`,
          );
        } catch (error) {
          odd.push(`${tag}: failed: ${(error as Error).message.split('\n')[0]}`);
          process.stderr.write(`${tag}: failed: ${(error as Error).message}\n`);
        } finally {
          for (const page of viewers) await closePage(page);
          if (publisher) {
            publisher.kill('SIGKILL');
            publishers.delete(publisher);
          }
          if (publisherPage) {
            await stopPublishing(publisherPage, publishToken).catch(() => undefined);
            await closePage(publisherPage);
          }
        }
        await waitFor(`${name} idle`, async () => (await stateOf(name)) === 'idle', 30_000).catch(() => odd.push(`${tag}: the stream did not go idle within 30 s of its publisher leaving`));
        const remaining = ffmpegsOf(origin, rtmpKey);
        const left = [...remaining.bridge, ...remaining.rendition];
        if (left.length > 0) {
          await waitFor(`${name}: its ffmpegs gone`, () => !left.some(isRunning), 10_000, 100).catch(() => odd.push(`${tag}: ffmpeg ${left.join(', ')} still ran after the stream went idle`));
        }
      }
    }
    const loadAtEnd = loadavg();

    const pct = (xs: number[]) => (xs.length ? spread(xs) : '');
    const ms = (xs: number[]) => (xs.length ? spread(xs, 0) : '');
    const rows = MODES.map((m) => {
      const r = results.get(m)!;
      return [m.label, ms(r.live), ms(r.first), ms(r.second), pct(r.bridge), pct(r.rendition), pct(r.fps), ms(r.stop)];
    });
    const of = (label: string) => results.get(MODES.find((m) => m.label === label)!)!;
    const cpu = (label: string, which: 'bridge' | 'rendition') => median(of(label)[which]);
    const ratio = (a: number, b: number) => `${fmt(a / b, 2)}×`;
    const firstOf = (label: string) => median(of(label).first);
    const secondOf = (label: string) => median(of(label).second);
    const ratios = [
      `re-encode / pass-through bridge CPU: ${ratio(cpu('re-encode (B-frames)', 'bridge'), cpu('pass-through', 'bridge'))}`,
      `RTMP rendition CPU, VP8 / CB: ${ratio(cpu('High + VP8 rendition', 'rendition'), cpu('High + CB rendition', 'rendition'))}; ` +
        `CB rendition / re-encode bridge: ${ratio(cpu('High + CB rendition', 'rendition'), cpu('re-encode (B-frames)', 'bridge'))}; ` +
        `(bridge + CB rendition) / pass-through bridge: ${ratio(cpu('High + CB rendition', 'bridge') + cpu('High + CB rendition', 'rendition'), cpu('pass-through', 'bridge'))}`,
      `VP8 rendition CPU, WHIP / RTMP: ${ratio(cpu('WHIP H.264 + VP8 rendition', 'rendition'), cpu('High + VP8 rendition', 'rendition'))}`,
      `first frame, rendition starter / 2nd viewer: CB ${ratio(firstOf('High + CB rendition'), secondOf('High + CB rendition'))}, ` +
        `VP8 ${ratio(firstOf('High + VP8 rendition'), secondOf('High + VP8 rendition'))}, WHIP VP8 ${ratio(firstOf('WHIP H.264 + VP8 rendition'), secondOf('WHIP H.264 + VP8 rendition'))}`,
    ];
    const table = {
      title: `relaycast RTMP bridge and renditions: 640x360 30 fps x264 + AAC over RTMP (WHIP: Chromium's fake camera, 640x360 H.264 CB); median of ${options.runs} runs (range), CPU over ${options.seconds} s`,
      head: ['mode', 'publish → live ms', '1st viewer ms', '2nd viewer (warm) ms', 'bridge CPU %', 'rendition CPU %', 'viewer frames/s', 'rendition stop ms'],
      rows,
      how: [
        'viewer columns: WHEP POST → first decoded frame in Chromium (in the page, 20 ms polls); in rendition modes the 1st viewer starts the rendition, the 2nd joins while it runs',
        'CPU: user + system of the origin\'s ffmpeg processes (/proc), apart, in % of one core, both viewers playing; the publishers are not counted',
        'viewer frames/s: frames the 1st viewer decoded per second over the CPU window (what the bridge or rendition delivers; a WHIP publish\'s rate is Chromium\'s)',
        'rendition stop: last viewer gone → rendition ffmpeg exited (the edge keeps its relay 5 s, --relay-linger-ms)',
        ...ratios,
        `machine: ${machine.cores} × ${machine.cpu}; load average at start ${loadAtStart}, at end ${loadAtEnd}`,
        ...(odd.length ? odd.map((o) => `odd: ${o}`) : ['odd: nothing (every rendition stopped, every first frame under 5 s, every viewer decoded the codec expected)']),
      ],
    };
    console.log(`\n${renderTable(table)}`);
    if (options.out) {
      const report = {
        startedAt: started.toISOString(),
        machine,
        options,
        load: { start: loadAtStart, end: loadAtEnd },
        modes: MODES.map((m) => {
          const r = results.get(m)!;
          return { mode: m.label, ...r, medians: { live: median(r.live), first: median(r.first), second: median(r.second), bridge: median(r.bridge), rendition: median(r.rendition), fps: median(r.fps), stop: median(r.stop) } };
        }),
        table,
      };
      writeFileSync(options.out, `${JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
      console.log(`results: ${options.out}`);
    }
    return 0;
  } finally {
    for (const p of publishers) p.kill('SIGKILL');
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
