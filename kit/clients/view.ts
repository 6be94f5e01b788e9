/**
 * `view`, what the benchmarks and the load test use: viewers of one WHEP URL, added on command, in
 * one load-generator process. `ready` once it listens. stdin:
 *
 *   add <n> [concurrency]   n more viewers, `concurrency` joining at a time (default 8); → `added`
 *                           once each new one plays (or PLAYING_WAIT_MS passed): counts, failures,
 *                           `retried`, and the WHEP round trips
 *   snapshot <id>           → `snapshot`: every viewer's inbound counters (audio + video)
 *   latency <id>            → `latency`: the capture stamps read since the last `latency` (--stamp)
 *                           and libwebrtc's per-frame timing counters, summed over the viewers
 *   stop                    → `stopped`: every viewer leaves (DELETE), and the client exits
 *
 * Options: --stamp reads each decoded frame's capture stamp (stamp.ts) and records its delay;
 * --receive-only viewers never decode (sdp.ts), so that one process can hold many; --video-only
 * viewers have no audio section; --counter-offer viewers take the edge's WHEP counter-offer
 * (negotiate.ts), so that it estimates their links; --janus <mountpoint>: the URL is a Janus's
 * HTTP API and each viewer watches that streaming mountpoint (janus.ts; receive-only, audio and video).
 */
import { max, median, sleep } from '../stats.ts';
import { commands, emit } from './lines.ts';
import { accepted, waitConnected } from './negotiate.ts';
import { openJanusViewer } from './janus.ts';
import { inbound } from './report.ts';
import { delaySince, PLAUSIBLE_DELAY_MS, readStamp, wallMs } from './stamp.ts';
import { openViewer, type Viewer } from './viewer.ts';

/**
 * A viewer's tries to join (WHEP answer, then ICE/DTLS connected within CONNECT_TIMEOUT_MS), and
 * the pause between them: the web player retries after 0.5 s doubling. On a machine starved by
 * other work a join can miss the 20 s, and a second try is what a real player makes.
 */
const JOIN_TRIES = 2;
const RETRY_DELAY_MS = 500;
/** How long an `add` waits for its new viewers to show media before it reports (a wait, not a figure). */
const PLAYING_WAIT_MS = 60_000;

export interface ViewOptions {
  url: string;
  token?: string;
  stamp: boolean;
  receiveOnly: boolean;
  videoOnly: boolean;
  /** A Janus streaming mountpoint's id: `url` is then that Janus's HTTP API. */
  janus?: number;
  /** Viewers take the edge's WHEP counter-offer (viewer.ts ViewerOptions.counterOffer). */
  counterOffer?: boolean;
}

export async function view(options: ViewOptions): Promise<void> {
  const viewers: Viewer[] = [];
  /** [capture stamp, delay in ms] of every decoded frame since the last `latency` command. */
  let samples: Array<[number, number]> = [];
  let unreadable = 0;
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));

  const onFrame = (frame: { width: number; data: Uint8Array }) => {
    const now = wallMs();
    const value = readStamp(frame.data, frame.width);
    const delay = value === undefined ? NaN : delaySince(value, now);
    if (value === undefined || !(Math.abs(delay) < PLAUSIBLE_DELAY_MS)) unreadable++;
    else samples.push([value, delay]);
  };

  /** One viewer that joined: answered 201 and connected, or it leaves again and the join throws. */
  async function connect(): Promise<Viewer> {
    const viewer =
      options.janus === undefined
        ? await openViewer(options.url, {
            token: options.token,
            videoOnly: options.videoOnly,
            receiveOnly: options.receiveOnly,
            counterOffer: options.counterOffer,
            onFrame: options.stamp ? onFrame : undefined,
          })
        : await openJanusViewer(options.url, options.janus);
    try {
      const { status, body, counterOffer } = viewer.answer;
      if (options.janus !== undefined) {
        // Janus answers its `start` with 200.
        if (status !== 200) throw new Error(`${options.url} answered ${status}: ${body.slice(0, 300)}`);
      } else {
        if (counterOffer && !accepted(viewer.answer)) throw new Error(`${options.url} counter-offered (${status}), and its session answered our answer ${counterOffer.status}: ${counterOffer.body.slice(0, 300)}`);
        if (!accepted(viewer.answer)) throw new Error(`${options.url} answered ${status}: ${body.slice(0, 300)}`);
      }
      await waitConnected(viewer.pc);
    } catch (error) {
      // It stops at once; its session, if the edge made one, is not left to time out there.
      viewer.pc.close();
      void viewer.close();
      throw error;
    }
    return viewer;
  }

  /**
   * A viewer as a player makes one: a failed join (no answer, or not connected in time on a
   * starved machine) is tried again, up to JOIN_TRIES times, as the web player does.
   */
  async function join(failures: string[]): Promise<Viewer> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await connect();
      } catch (error) {
        failures.push((error as Error).message);
        if (attempt >= JOIN_TRIES) throw error;
        await sleep(RETRY_DELAY_MS);
      }
    }
  }

  /** Whether a viewer plays: it decoded a frame (a receive-only one: it received video). */
  async function playing(v: Viewer): Promise<boolean> {
    const { video } = await inbound(v.pc);
    return (options.receiveOnly ? video.packetsReceived : video.framesDecoded) > 0;
  }

  async function add(count: number, concurrency: number): Promise<void> {
    const started = Date.now();
    const addedAt = performance.now();
    const added: Viewer[] = [];
    const errors: string[] = [];
    const attemptsFailed: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(concurrency, count) }, async () => {
        while (next < count) {
          next++;
          try {
            added.push(await join(attemptsFailed));
          } catch (error) {
            errors.push((error as Error).message);
          }
        }
      }),
    );
    viewers.push(...added);
    // Playing: every new viewer has decoded a frame (or the deadline passed: a wait, not a figure).
    const deadline = Date.now() + PLAYING_WAIT_MS;
    const countPlaying = async () => (await Promise.all(added.map(playing))).filter(Boolean).length;
    let playingCount = await countPlaying();
    while (playingCount < added.length && Date.now() <= deadline) {
      await sleep(200);
      playingCount = await countPlaying();
    }
    const answers = added.map((v) => v.answer.answeredAt - v.answer.postedAt);
    emit('added', {
      requested: count,
      connected: added.length,
      playing: playingCount,
      total: viewers.length,
      failed: errors.length,
      errors: errors.slice(0, 3),
      // Joins that failed and were tried again (a player would have too).
      retried: attemptsFailed.length - errors.length,
      retryReasons: attemptsFailed.slice(0, 3),
      ms: Date.now() - started,
      // ms after the command: the last offer sent; and each WHEP POST's round trip, median and max.
      lastOfferSentMs: Math.round(max(added.map((v) => v.answer.postedAt - addedAt))),
      answerMs: { median: Math.round(median(answers)), max: Math.round(max(answers)) },
    });
  }

  async function snapshot(id: string | undefined): Promise<void> {
    const per = await Promise.all(
      viewers.map(async (v) => {
        const { audio, video } = await inbound(v.pc);
        const both = (key: 'packetsReceived' | 'packetsLost' | 'bytesReceived' | 'nackCount' | 'pliCount' | 'firCount') => audio[key] + video[key];
        return {
          packetsReceived: both('packetsReceived'),
          packetsLost: both('packetsLost'),
          bytesReceived: both('bytesReceived'),
          framesDecoded: video.framesDecoded,
          nackCount: both('nackCount'),
          pliCount: both('pliCount'),
          firCount: both('firCount'),
          state: v.pc.connectionState as string,
        };
      }),
    );
    emit('snapshot', { id, at: Date.now(), viewers: per });
  }

  async function latency(id: string | undefined): Promise<void> {
    // libwebrtc's own per-frame timings, summed since the start (seconds): the time from a
    // frame's first packet to its decoded picture, and the part of it spent in the jitter buffer.
    const counters = { framesDecoded: 0, totalProcessingDelay: 0, jitterBufferDelay: 0, jitterBufferEmittedCount: 0, totalDecodeTime: 0 };
    for (const v of viewers) {
      const { video } = await inbound(v.pc);
      for (const key of Object.keys(counters) as Array<keyof typeof counters>) counters[key] += video[key];
    }
    emit('latency', { id, samples, unreadable, counters });
    samples = [];
    unreadable = 0;
  }

  async function stop(): Promise<void> {
    await Promise.all(viewers.splice(0).map((v) => v.close()));
    emit('stopped');
    finished();
  }

  commands(async ([command, arg, arg2]) => {
    if (command === 'add') await add(Number(arg ?? 1), Number(arg2 ?? 8));
    else if (command === 'snapshot') await snapshot(arg);
    else if (command === 'latency') await latency(arg);
    else if (command === 'stop') await stop();
  }, async () => finished());
  emit('ready');
  await done;
}
