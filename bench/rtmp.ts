/**
 * RTMP bridge benchmark (reports, does not pass or fail): real ffmpeg publishes 640x360 30 fps
 * H.264 + AAC over RTMP to an origin process; the origin bridges it to WebRTC; a Node viewer plays
 * it from an edge process. For H.264 without B-frames (passed through), with them (re-encoded), and
 * High without B-frames (passed through; played as it is, and by a viewer that offers only
 * Constrained Baseline, as Firefox does, for whom the origin starts a rendition), side by side in
 * one run (the viewer is Chromium: the Node client's libwebrtc has no H.264):
 *
 *   publish → live       from the RTMP publisher's start to the stream's placement row being live
 *                        (key check, ffprobe, producers, ffmpeg bridge started)
 *   WHEP → first frame   from the viewer's POST to its first decoded frame
 *   bridge CPU           the bridge's ffmpeg processes' CPU (with the rendition's, when there is
 *                        one), in % of one core, over a steady 10 s
 *
 *   npm run bench:rtmp [-- --runs 3 --seconds 10]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import knexFactory from 'knex';
import { TestBrowser, play, playbackStats, type ReceiveOnly } from '../kit/browser.ts';
import { cpuSeconds } from '../kit/cpu.ts';
import { createTestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast } from '../kit/relaycast.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, seconds: { type: 'string', default: '10' } } });
const RUNS = Number(values.runs);
const SECONDS = Number(values.seconds);
const SECRET = 'bench-cluster-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';

/** The origin's ffmpeg processes reading the publish of `key`: the bridge, and a rendition if one runs. */
function bridgePids(key: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', `ffmpeg.*-i rtmp://127.0.0.1:.*${key}`], { encoding: 'utf8' }).trim().split('\n').map(Number).filter(Boolean);
  } catch {
    return [];
  }
}

/** x264 High without B-frames: veryfast, since ultrafast drops CABAC and 8x8 and x264 then writes Constrained Baseline. */
const HIGH = ['-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'high', '-g', '30', '-bf', '0'];

/**
 * What each publisher sends (x264 settings), and what the viewer offers: this Chromium (which
 * decodes High through its High 4:4:4 offer), or only Constrained Baseline, as Firefox does.
 */
const MODES: Record<string, { x264: string[]; only?: ReceiveOnly }> = {
  'pass-through': { x264: ['-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '30', '-bf', '0'] },
  're-encode (B-frames)': { x264: ['-preset', 'veryfast', '-g', '30'] },
  'High, as it is': { x264: HIGH },
  'High + CB rendition': { x264: HIGH, only: { h264Profiles: ['42e01f'] } },
};

function publish(url: string, x264: string[]): ChildProcess {
  const video = ['-c:v', 'libx264', ...x264];
  return spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    ...video, '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', String(SECONDS + 30), '-f', 'flv', url], { stdio: 'ignore' });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const db = await createTestDatabase();
  const knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 2 } });
  const env = { RELAYCAST_CLUSTER_SECRET: SECRET, RELAYCAST_ADMIN_TOKEN: ADMIN };
  const common = ['--rtc-listen-ip', '127.0.0.1', '--workers', '1', '--log-level', 'warn'];
  const origin = await startRelaycast({ roles: ['origin', 'balancer'], databaseUrl: db.url, env, args: ['--node-id', 'bench-origin', ...common] });
  const edge = await startRelaycast({ roles: ['edge'], databaseUrl: db.url, env, args: ['--node-id', 'bench-edge', ...common] });
  const results: Record<string, { live: number[]; firstFrame: number[]; cpu: number[]; processes: number }> = {};
  const browser = await TestBrowser.launch();
  try {
    for (let run = 0; run < RUNS; run++) {
      for (const [index, [mode, { x264, only }]] of Object.entries(MODES).entries()) {
        const r = (results[mode] ??= { live: [], firstFrame: [], cpu: [], processes: 0 });
        const name = `bench-${run}-${index}`;
        const created = await fetch(`${origin.url}/api/v1/streams`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name }),
        });
        const { streamKey } = (await created.json()) as { streamKey: string };
        const t0 = Date.now();
        const publisher = publish(`rtmp://127.0.0.1:${origin.rtmpPort}/live/${streamKey}`, x264);
        try {
          await waitFor('the stream live', async () => (await knex('streams').where({ name }).first('state'))?.state === 'live', 30_000, 20);
          r.live.push(Date.now() - t0);
          const page = await browser.page(edge.url);
          const t1 = Date.now();
          await play(page, `${edge.url}/whep/${name}`, undefined, only);
          await waitFor('a decoded frame', async () => (await playbackStats(page)).framesDecoded > 0, 20_000, 10);
          r.firstFrame.push(Date.now() - t1);
          const pids = bridgePids(streamKey);
          r.processes = pids.length;
          await new Promise((resolve) => setTimeout(resolve, 2000));
          const before = cpuSeconds(pids, false);
          const t2 = Date.now();
          await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
          r.cpu.push((cpuSeconds(pids, false) - before) / ((Date.now() - t2) / 1000));
          await page.close();
        } finally {
          publisher.kill('SIGKILL');
        }
        await waitFor('the stream idle', async () => (await knex('streams').where({ name }).first('state'))?.state === 'idle', 30_000);
      }
    }
    console.log(`\nrelaycast RTMP bridge benchmark (640x360 30 fps H.264 + AAC in, median of ${RUNS})`);
    for (const [mode, r] of Object.entries(results)) {
      console.log(
        `  ${mode.padEnd(22)} publish → live ${String(median(r.live)).padStart(5)} ms   WHEP → first frame ${String(median(r.firstFrame)).padStart(5)} ms   ` +
          `bridge CPU ${(median(r.cpu) * 100).toFixed(1).padStart(5)}% of a core (${r.processes} ffmpeg)`,
      );
    }
    const [pass, transcode, , rendition] = Object.values(results);
    console.log(`  re-encode / pass-through bridge CPU: ${(median(transcode!.cpu) / median(pass!.cpu)).toFixed(1)}×`);
    console.log(`  pass-through + rendition / pass-through bridge CPU: ${(median(rendition!.cpu) / median(pass!.cpu)).toFixed(1)}×`);
  } finally {
    await browser.close();
    await edge.stop();
    await origin.stop();
    await knex.destroy();
    await db.drop();
  }
}

await main();
