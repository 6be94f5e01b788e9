import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { signStreamToken } from '../../core/tokens.ts';
import { issueStreamKey } from '../../db/repositories/streamKeys.ts';
import { getStream } from '../../db/repositories/streams.ts';
import { metric } from '../../kit/metrics.ts';
import { createTestDatabase, type TestDatabase } from '../../kit/postgres.ts';
import { spawnTracked, startChild, stopProcess, waitFor, type Child } from '../../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../../kit/relaycast.ts';
import { sleep } from '../../kit/stats.ts';
import { WRTC_CLIENT } from '../../kit/wrtc.ts';
import { WorkerPool } from '../../media/WorkerPool.ts';
import type { BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import { JanusServer } from '../peers/JanusServer.ts';

/**
 * What the media sections measure: a Relaycast origin and edge (separate processes, one mediasoup
 * worker each, on a fresh Postgres database), the baseline (bench/baseline/server.ts: plain
 * mediasoup, no Relaycast code), and one publisher process whose single synthetic source is sent
 * to both, so that both carry the same stream at the same bitrate at the same time. For the
 * fan-out section, on request, peers beside them fed by the same publisher: the baseline on another
 * mediasoup installation (--mediasoup-baseline: another version; a third publisher target), and
 * Janus (--janus: its streaming plugin, fed plain RTP by the baseline's ingest router).
 */

/** Plain mediasoup with no Relaycast code: the reference the media figures are set against. */
const BASELINE_SERVER = fileURLToPath(new URL('../baseline/server.ts', import.meta.url));

export const STREAM = 'bench';
/** The cluster secret of the benchmark's Relaycast nodes (tokens are signed with it). */
export const SECRET = 'bench-cluster-secret-0123456789';
/** Short, so that a cold-edge measurement does not wait long for the previous relay to go. */
export const RELAY_LINGER_MS = 500;
/**
 * The RTMP publish's key frame interval (MediaRig.publishRtmp): 2 s, what streaming services ask
 * encoders for (and x264's -g 60 at 30 frames/s). ffmpeg cannot answer a viewer's key frame
 * request, so a new viewer of it waits for the next one.
 */
export const RTMP_KEY_FRAME_S = 2;
/** The RTMP publish's frame rate: the WHIP publisher's (kit/clients/publish.ts, 30 by default). */
const RTMP_FPS = 30;

/** A baseline server: its process, the worker its viewers are on (the other one ingests), its mediasoup version. */
export interface Baseline {
  url: string;
  pid: number;
  fanoutWorkerPid: number;
  mediasoup: string;
  child: Child;
  stop(): Promise<void>;
}

/**
 * Starts bench/baseline/server.ts on the project's mediasoup, or with `mediasoupDir` on the
 * mediasoup installed there (and the worker of its version: WorkerPool.resolveWorkerBin).
 */
async function startBaseline(mediasoupDir?: string): Promise<Baseline> {
  let args: string[];
  if (mediasoupDir) {
    const { version } = JSON.parse(readFileSync(join(mediasoupDir, 'package.json'), 'utf8')) as { version: string };
    const workerBin = WorkerPool.resolveWorkerBin(undefined, version);
    if (!workerBin) throw new Error(`no mediasoup ${version} worker: build it with scripts/mediasoup-offline/build-worker.sh ${version}`);
    args = ['--mediasoup', mediasoupDir, '--worker-bin', workerBin];
  } else {
    const workerBin = WorkerPool.resolveWorkerBin(process.env.MEDIASOUP_WORKER_BIN);
    args = workerBin ? ['--worker-bin', workerBin] : [];
  }
  const child = startChild(BASELINE_SERVER, args);
  try {
    const listening = await child.next('listening', 30_000);
    return { url: `http://127.0.0.1:${listening.port}`, pid: child.pid, fanoutWorkerPid: Number(listening.fanoutWorkerPid), mediasoup: String(listening.mediasoup), child, stop: () => child.stop() };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

export class MediaRig {
  readonly db: TestDatabase;
  readonly origin: RelaycastProcess;
  readonly edge: RelaycastProcess;
  readonly baseline: Baseline;
  readonly publisher: Child;
  /** The fan-out's peers, when asked for (--mediasoup-baseline, --janus): the baseline on another mediasoup, Janus. */
  readonly peers: { otherBaseline?: Baseline; janus?: JanusServer };

  private constructor(db: TestDatabase, origin: RelaycastProcess, edge: RelaycastProcess, baseline: Baseline, publisher: Child, peers: MediaRig['peers']) {
    this.db = db;
    this.origin = origin;
    this.edge = edge;
    this.baseline = baseline;
    this.publisher = publisher;
    this.peers = peers;
  }

  /** The publisher's targets, in order: the origin, the baseline, the other baseline if there is one. */
  static readonly TARGET = { origin: 0, baseline: 1, otherBaseline: 2 } as const;

  get edgeWhep(): string {
    return `${this.edge.url}/whep/${STREAM}`;
  }

  get baselineWhep(): string {
    return `${this.baseline.url}/whep/${STREAM}`;
  }

  static async start(options: BenchOptions, progress: Progress): Promise<MediaRig> {
    progress.note('media: starting Postgres database, origin, edge, baseline');
    const db = await createTestDatabase();
    const cleanup: Array<() => Promise<unknown>> = [() => db.drop()];
    try {
      const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
      const common = ['--rtc-listen-ip', '127.0.0.1', '--relay-linger-ms', String(RELAY_LINGER_MS), '--log-level', 'warn', '--post-rate-limit', '0'];
      // All at once (Relaycast nodes take turns to migrate the database under a lock).
      const fanout = options.only.includes('fanout');
      const started = await Promise.allSettled([
        startRelaycast({ roles: ['origin'], databaseUrl: db.url, env, args: ['--node-id', 'bench-origin', ...common] }),
        startRelaycast({ roles: ['edge'], databaseUrl: db.url, env, args: ['--node-id', 'bench-edge', ...common] }),
        startBaseline(),
        fanout && options.mediasoupBaseline ? startBaseline(options.mediasoupBaseline) : Promise.resolve(undefined),
      ]);
      for (const s of started) if (s.status === 'fulfilled' && s.value) cleanup.unshift(() => (s.value as { stop(): Promise<void> }).stop());
      const failure = started.find((s) => s.status === 'rejected');
      if (failure) throw (failure as PromiseRejectedResult).reason;
      const [origin, edge, baseline, otherBaseline] = started.map((s) => (s as PromiseFulfilledResult<unknown>).value) as [RelaycastProcess, RelaycastProcess, Baseline, Baseline | undefined];
      let janus: JanusServer | undefined;
      if (fanout && options.janus) {
        const unavailable = JanusServer.unavailable();
        if (unavailable) progress.log(`media: Janus left out: ${unavailable}`);
        else {
          janus = await JanusServer.start();
          cleanup.unshift(() => janus!.stop());
        }
      }

      const targets = [origin.url, baseline.url, ...(otherBaseline ? [otherBaseline.url] : [])];
      progress.note(`media: publishing ${options.kbps} kbit/s to the origin and to the baseline${otherBaseline ? 's' : ''}`);
      const token = await signStreamToken(SECRET, { stream: STREAM, action: 'publish', ttlSeconds: 24 * 3600 });
      const publisher = startChild(WRTC_CLIENT, [
        'publish',
        ...targets.flatMap((url) => ['--target', `${url}/whip/${STREAM}`, '--token', token]),
        '--kbps', String(options.kbps),
        '--seconds', String(24 * 3600),
      ]);
      cleanup.unshift(() => publisher.stop());
      await publisher.next('ready', 40_000);
      if (janus) {
        // Janus's mountpoint is fed by the baseline's ingest router: the same publisher's stream, as plain RTP.
        const res = await fetch(`${baseline.url}/forward/${STREAM}`, { method: 'POST', body: JSON.stringify(janus.tracks) });
        if (!res.ok) throw new Error(`the baseline's forward to Janus: ${res.status} ${await res.text()}`);
      }
      const rig = new MediaRig(db, origin, edge, baseline, publisher, { otherBaseline, janus });
      // libwebrtc starts below its cap and ramps up with its congestion controller's estimate:
      // wait (up to 30 s) until both targets get 85 % of the cap.
      const deadline = Date.now() + (options.quick ? 0 : 30_000);
      for (;;) {
        const kbps = await rig.publishedKbps(1000);
        progress.note(`media: publisher ramping up, ${kbps.map((k) => Math.round(k)).join(' and ')} kbit/s`);
        if (kbps.every((k) => k >= options.kbps * 0.85) || Date.now() > deadline) break;
      }
      return rig;
    } catch (error) {
      for (const step of cleanup) await step().catch(() => undefined);
      throw error;
    }
  }

  /** A publish token for a stream of the rig's origin. */
  publishToken(stream: string): Promise<string> {
    return signStreamToken(SECRET, { stream, action: 'publish', ttlSeconds: 24 * 3600 });
  }

  /** The publisher's video counters per target (MediaRig.TARGET). */
  async publisherStats(): Promise<Array<{ bytesSent: number; framesEncoded: number; frameWidth: number | null; at: number }>> {
    return (await this.publisher.ask('stats', 'stats', 30_000)).targets as Array<{ bytesSent: number; framesEncoded: number; frameWidth: number | null; at: number }>;
  }

  /** The publisher's video bitrate to each target (MediaRig.TARGET) over `ms`, in kbit/s. */
  async publishedKbps(ms: number): Promise<number[]> {
    const a = await this.publisherStats();
    await sleep(ms);
    const b = await this.publisherStats();
    return b.map((t, i) => ((t.bytesSent - a[i]!.bytesSent) * 8) / Math.max(1, t.at - a[i]!.at));
  }

  /**
   * An RTMP publish of `stream` to the origin, as an encoder sends one: ffmpeg in real time (-re)
   * from a synthetic source at the WHIP publisher's size, rate and bitrate, x264 with a key frame
   * every RTMP_KEY_FRAME_S exactly (no scene-cut key frames) and no B-frames, so the origin passes
   * it through as it is (origin/RtmpBridge.ts); AAC audio, which the bridge makes Opus. Resolves
   * once the stream is live (its row in Postgres); `stop` ends the publish.
   */
  async publishRtmp(stream: string, options: BenchOptions): Promise<{ whep: string; stop(): Promise<void> }> {
    const knex = knexFactory({ client: 'pg', connection: this.db.url, pool: { min: 0, max: 1 } });
    let ffmpeg: ChildProcess | undefined;
    const stop = async () => {
      if (ffmpeg) await stopProcess(ffmpeg, 5000);
    };
    try {
      const key = await issueStreamKey(knex, stream);
      const gop = String(RTMP_FPS * RTMP_KEY_FRAME_S);
      const kbps = `${options.kbps}k`;
      ffmpeg = spawnTracked(
        'ffmpeg',
        [
          ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-re'],
          ...['-f', 'lavfi', '-i', `testsrc2=size=320x180:rate=${RTMP_FPS}`, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'],
          // ultrafast writes Constrained Baseline, what every WebRTC H.264 decoder takes (and what
          // kit/clients/sdp.ts h264Offer asks for); zerolatency: no B-frames, no frame lag.
          ...['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', gop, '-keyint_min', gop, '-sc_threshold', '0', '-bf', '0'],
          ...['-b:v', kbps, '-maxrate', kbps, '-bufsize', kbps, '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-f', 'flv', `rtmp://127.0.0.1:${this.origin.rtmpPort}/live/${key}`],
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      ffmpeg.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
      const exited = ffmpeg;
      await waitFor(`the RTMP publish of ${stream} live`, async () => {
        if (exited.exitCode !== null) throw new Error(`ffmpeg exited (${exited.exitCode}): ${stderr}`);
        return (await getStream(knex, stream))?.state === 'live';
      }, 30_000, 100);
      return { whep: `${this.edge.url}/whep/${stream}`, stop };
    } catch (error) {
      await stop();
      throw error;
    } finally {
      await knex.destroy();
    }
  }

  /** Waits until the edge holds no relay (the last viewer left and the linger ran out). */
  async relayGone(): Promise<void> {
    await waitFor('the relay to close', async () => (await metric(this.edge.url, 'relaycast_relays', { direction: 'in' })) === 0, 15_000, 100);
  }

  async stop(): Promise<void> {
    this.publisher.send('stop');
    await Promise.race([this.publisher.exited, sleep(5000)]);
    await this.publisher.stop();
    await this.peers.janus?.stop();
    await this.peers.otherBaseline?.stop();
    await this.baseline.stop();
    await this.edge.stop();
    await this.origin.stop();
    await this.db.drop();
  }
}
