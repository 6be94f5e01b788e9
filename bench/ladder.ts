/**
 * RTMP ladder benchmark (reports, does not pass or fail): what making simulcast layers from an
 * RTMP publish costs the origin. The same input, 1280x720 30 fps from x264 with its default
 * settings (High profile, B-frames) and 2-second key frames, plus AAC, is published over RTMP to
 * one origin process twice per run, once to a stream without a ladder and once to a stream with
 * one (`--ladder`, 720,360,180 by default), one after the other, alternating which goes first:
 *
 *   bridge CPU    the bridge ffmpeg's CPU (user + system, /proc), in cores, over a steady window
 *                 (--seconds) once the stream is live and its layers are all receiving. Without a
 *                 ladder, x264's B-frames make the bridge re-encode to one Constrained Baseline
 *                 layer; with one, it decodes once and encodes every rung.
 *   worker CPU    the origin's mediasoup worker over the same window (it receives the layers)
 *   layers        each layer's incoming bitrate at the end of the window (the origin's
 *                 relaycast_ingest_layer_bitrate_bps)
 *
 * No viewer plays: the bridge's work does not depend on viewers. The publisher runs on the same
 * machine (about half a core here) and is not counted.
 *
 *   npm run bench:ladder [-- --runs 3 --seconds 10 --ladder 720,360,180]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import knexFactory from 'knex';
import { parseLadder } from '../core/rtmpLadder.ts';
import { CpuWindow, isMediaWorker, loadavg, processTree } from '../kit/cpu.ts';
import { createTestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';
import { median, sleep, spread } from '../kit/stats.ts';
import { integerOption, runCommand } from './lib/options.ts';
import { renderTable } from './lib/report.ts';

const SECRET = 'bench-ladder-secret-0123456789ab';
const ADMIN = 'bench-ladder-admin-token-0123456789';

/** After the stream is live and its layers flow: time for ffmpeg's encoders to reach a steady rate before the window. */
const WARMUP_MS = 3000;

const USAGE = `npm run bench:ladder [-- options]

  --runs N        publishes of each kind (default 3)
  --seconds S     measurement window of each publish (default 10)
  --ladder LIST   the ladder's heights (default 720,360,180)
`;

interface Options {
  runs: number;
  seconds: number;
  ladder: number[];
}

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      ladder: { type: 'string', default: '720,360,180' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const ladder = parseLadder(values.ladder);
  if (ladder.length === 0) throw new Error('--ladder: give the heights to measure');
  return { runs: integerOption('runs', values.runs), seconds: integerOption('seconds', values.seconds), ladder };
}

/** The origin's ffmpeg processes reading the publish of `key`. */
function bridgePids(key: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', `ffmpeg.*-i rtmp://127.0.0.1:.*${key}`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** x264 with its defaults (High, 3 B-frames, preset medium), 2-second key frames at 30 fps. */
function publish(url: string, seconds: number): ChildProcess {
  return spawn(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
      '-c:v', 'libx264', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', String(seconds), '-f', 'flv', url],
    { stdio: 'ignore' },
  );
}

/** The origin's incoming bitrate per layer of `stream`, kbit/s (relaycast_ingest_layer_bitrate_bps). */
async function layerKbps(origin: RelaycastProcess, stream: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${origin.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^relaycast_ingest_layer_bitrate_bps\{[^}]*stream="([^"]+)"[^}]*layer="([^"]+)"[^}]*\} (\S+)$/gm)) {
    if (m[1] === stream) out[m[2]!] = Number(m[3]) / 1000;
  }
  return out;
}

interface Kind {
  id: string;
  label: string;
  /** The stream's rtmpLadder setting. */
  setting: number[] | 'off';
  layers: string[];
  bridge: number[];
  worker: number[];
  kbps: Array<Record<string, number>>;
}

async function main(options: Options): Promise<number> {
  const db = await createTestDatabase();
  const knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 2 } });
  const origin = await startRelaycast({
    roles: ['origin', 'balancer'],
    databaseUrl: db.url,
    env: { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN },
    args: ['--node-id', 'bench-origin', '--rtc-listen-ip', '127.0.0.1', '--log-level', 'warn'],
  });
  const worker = processTree([origin.child.pid!]).find(isMediaWorker);
  const kinds: Kind[] = [
    { id: 'one', label: 'no ladder (one layer, re-encoded)', setting: 'off', layers: [], bridge: [], worker: [], kbps: [] },
    { id: 'ladder', label: `ladder ${options.ladder.join(',')}`, setting: options.ladder, layers: [], bridge: [], worker: [], kbps: [] },
  ];
  const loads: string[] = [];
  const publishers = new Set<ChildProcess>();
  try {
    for (let run = 0; run < options.runs; run++) {
      for (const kind of run % 2 === 0 ? kinds : [...kinds].reverse()) {
        const name = `bench-${kind.id}-${run}`;
        const created = await fetch(`${origin.url}/api/v1/streams`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name, rtmpLadder: kind.setting }),
        });
        if (created.status !== 201) throw new Error(`POST /api/v1/streams: ${created.status} ${await created.text()}`);
        const { streamKey } = (await created.json()) as { streamKey: string };
        const publisher = publish(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, options.seconds + 60);
        publishers.add(publisher);
        try {
          await waitFor('the stream live', async () => (await knex('streams').where({ name }).first('state'))?.state === 'live', 30_000, 50);
          const wanted = kind.setting === 'off' ? 0 : kind.setting.length;
          await waitFor(`${wanted} layers receiving`, async () => {
            const layers = Object.values(await layerKbps(origin, name));
            return layers.length === wanted && layers.every((k) => k > 0);
          }, 30_000, 250);
          await sleep(WARMUP_MS);
          const pids = bridgePids(streamKey);
          if (pids.length !== 1) throw new Error(`expected one bridge ffmpeg for ${name}, found ${pids.length}`);
          const bridgeCpu = new CpuWindow(pids, { children: false });
          const workerCpu = new CpuWindow(worker ? [worker] : [], { children: false });
          bridgeCpu.start();
          workerCpu.start();
          await sleep(options.seconds * 1000);
          kind.bridge.push(bridgeCpu.read());
          kind.worker.push(workerCpu.read());
          loads.push(loadavg());
          const layers = await layerKbps(origin, name);
          kind.layers = Object.keys(layers).sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
          kind.kbps.push(layers);
          process.stderr.write(`run ${run + 1}/${options.runs} ${kind.label}: bridge ${kind.bridge.at(-1)!.toFixed(2)} cores\n`);
        } finally {
          publisher.kill('SIGKILL');
          publishers.delete(publisher);
        }
        await waitFor('the stream idle', async () => (await knex('streams').where({ name }).first('state'))?.state === 'idle', 30_000);
      }
    }
    const [one, ladder] = kinds as [Kind, Kind];
    // One layer is no simulcast stream: it has no per-layer series (and x264's bitrate, unset, is its own).
    const layerText = (kind: Kind) => kind.layers.map((l) => `${l} ${Math.round(median(kind.kbps.map((k) => k[l] ?? 0)))}`).join(', ') || '720p';
    console.log(
      renderTable({
        title: `RTMP ladder: bridge CPU for one 1280x720 30 fps x264 publish (High, B-frames, 2 s key frames) + AAC; median of ${options.runs} runs × ${options.seconds} s`,
        head: ['bridge', 'layers (kbit/s in)', 'bridge ffmpeg, cores', 'runs', 'origin worker, cores'],
        rows: [one, ladder].map((k) => [k.label, layerText(k), median(k.bridge).toFixed(2), spread(k.bridge, 2), median(k.worker).toFixed(3)]),
        how: [
          'bridge ffmpeg: user + system CPU of the origin\'s bridge process over the window (/proc), 1 = one core busy',
          `ratio ladder / one layer: ${(median(ladder.bridge) / median(one.bridge)).toFixed(2)}×`,
          `machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; load average during the windows ${loads.join(' | ')}`,
        ],
      }),
    );
    return 0;
  } finally {
    for (const p of publishers) p.kill('SIGKILL');
    await origin.stop();
    await knex.destroy();
    await db.drop();
  }
}

await runCommand(parse, USAGE, main);
