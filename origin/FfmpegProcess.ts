import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { PlainTransport, Producer, Router } from 'mediasoup/types';
import type { RenditionCodec } from '../media/codecs.ts';
import type { Logger } from '../core/logger.ts';

/**
 * An ffmpeg that sends RTP into mediasoup producers on this origin (the RTMP bridge, renditions),
 * supervised: restarted if it dies while it is wanted, stopped on close. RTP sequence numbers go
 * on forward across a restart: numbers that jump back read as old packets, downstream drops them
 * and viewers freeze. Arguments name each RTP output's first sequence number as seqSlot(ssrc);
 * every start fills them in from the producers' counters.
 */

export interface FfmpegProcessEvents {
  /** A new ffmpeg runs (the first, or one restarted): what it decodes starts at a key frame. */
  spawned: [];
  /** ffmpeg kept dying: the owner ends what it feeds. */
  failed: [reason: string];
}

export interface FfmpegProcessOptions {
  ffmpeg: string;
  /** Its arguments, with seqSlot(ssrc) where an RTP output's first sequence number goes. */
  args: string[];
  /** The producers its RTP outputs feed (read at each start, for the sequence numbers). */
  producers: readonly Producer[];
  logger: Logger;
}

/**
 * How far past the last packet a restarted ffmpeg starts numbering. The margin covers packets
 * lost on the way, not counted as received.
 */
const SEQ_MARGIN = 100;

/**
 * How many times ffmpeg may die within RESTART_WINDOW_MS before the supervisor gives up: a crash
 * loop (bad input) must end, a one-off crash must not cost the broadcaster.
 */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 1000;
/** ffmpeg gets this long to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3000;

const SEQ_SLOT = /^\{seq:(\d+)\}$/;

export class FfmpegProcess extends EventEmitter<FfmpegProcessEvents> {
  readonly #options: FfmpegProcessOptions;
  readonly #logger: Logger;
  readonly #deaths: number[] = [];
  /** Per RTP output (SSRC): the sequence number the current ffmpeg started at, and packets received before it. */
  readonly #seq = new Map<number, { start: number; countAtStart: number }>();
  #child: ChildProcess | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: FfmpegProcessOptions) {
    super();
    this.#options = options;
    this.#logger = options.logger;
  }

  /** Where the arguments take an RTP output's first sequence number, by its SSRC. */
  static seqSlot(ssrc: number): string {
    return `{seq:${ssrc}}`;
  }

  /** The running ffmpeg's pid. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(): Promise<void> {
    return this.#spawn();
  }

  /** Stops ffmpeg: `signal`, then SIGKILL after STOP_GRACE_MS. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      child.once('exit', () => clearTimeout(timer));
    }
  }

  /** The next ffmpeg's first sequence numbers, for each RTP output (each layer of a ladder): right after the packets the last one sent. */
  async #nextSequenceNumbers(): Promise<void> {
    for (const producer of this.#options.producers) {
      const stats = await producer.getStats().catch(() => []);
      for (const { ssrc } of producer.rtpParameters.encodings ?? []) {
        if (ssrc === undefined) continue;
        const stream = stats.find((s) => s.ssrc === ssrc);
        const received = (stream?.packetCount ?? 0) + (stream?.packetsLost ?? 0);
        const previous = this.#seq.get(ssrc);
        if (!previous) {
          this.#seq.set(ssrc, { start: randomInt(0, 0x10000), countAtStart: received });
          continue;
        }
        // mediasoup's counters may have been reset (a new receive stream): then count them all.
        const sent = received >= previous.countAtStart ? received - previous.countAtStart : received;
        this.#seq.set(ssrc, { start: (previous.start + sent + SEQ_MARGIN) & 0xffff, countAtStart: received });
      }
    }
  }

  async #spawn(): Promise<void> {
    await this.#nextSequenceNumbers();
    if (this.#stopped) return;
    const args = this.#options.args.map((a) => {
      const slot = SEQ_SLOT.exec(a);
      return slot ? String(this.#seq.get(Number(slot[1]))!.start) : a;
    });
    const child = spawn(this.#options.ffmpeg, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.once('error', (error) => this.#logger.error({ err: error }, 'could not start ffmpeg'));
    child.once('exit', (code, signal) => {
      if (this.#stopped) return;
      const now = Date.now();
      this.#deaths.push(now);
      while (this.#deaths.length > 0 && this.#deaths[0]! < now - RESTART_WINDOW_MS) this.#deaths.shift();
      if (this.#deaths.length > MAX_RESTARTS) {
        this.#logger.error({ code, signal, stderr }, 'ffmpeg keeps dying; giving up');
        this.stop();
        this.emit('failed', 'ffmpeg keeps dying');
        return;
      }
      this.#logger.warn({ code, signal, stderr }, 'ffmpeg died; restarting it');
      this.#restartTimer = setTimeout(() => void this.#spawn(), RESTART_DELAY_MS);
    });
    this.emit('spawned');
  }
}

/** A UDP port free right now on 127.0.0.1, for ffmpeg to send from or listen on. */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/**
 * A PlainTransport on 127.0.0.1 that takes ffmpeg's RTP, connected to ports chosen here so that an
 * ffmpeg restarted by the supervisor is heard again (mediasoup takes a non-comedia transport's RTP
 * only from the address it is connected to). With rtcpMux, RTCP shares the RTP port (rtpOutputUrl);
 * without, it has a port of its own, as ffmpeg's rtp:// output sends it.
 */
export async function plainInput(router: Router, rtcpMux: boolean): Promise<PlainTransport> {
  const transport = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux, comedia: false });
  try {
    await transport.connect({ ip: '127.0.0.1', port: await freeUdpPort(), rtcpPort: rtcpMux ? undefined : await freeUdpPort() });
  } catch (error) {
    transport.close();
    throw error;
  }
  return transport;
}

/**
 * Where ffmpeg sends RTP and RTCP together (rtcp-mux) from the port the transport is connected
 * to. SO_REUSEADDR (reuse=1) lets several RTP outputs of one ffmpeg (a ladder's rungs) bind that
 * same port: the transport hears each of them as its one remote address.
 */
export function rtpOutputUrl(transport: PlainTransport): string {
  const { tuple } = transport;
  return `udp://127.0.0.1:${tuple.localPort}?localport=${tuple.remotePort}&reuse=1&pkt_size=1200`;
}

/**
 * A video encoder for WebRTC viewers, at `kbps` as both target and cap (a one-second buffer) when
 * given: a key frame every second (ffmpeg cannot answer a viewer's key frame request, and a
 * simulcast consumer switches layers at key frames), no B-frames (WebRTC cannot reorder frames).
 * H.264 in Constrained Baseline, which every WebRTC H.264 decoder takes. VP8 with libvpx's
 * real-time settings: the fastest speed (cpu-used 8), no frame lag or alt-ref frames (they hold
 * frames back), error-resilient partitions for a lossy path, and one thread: with libvpx's default
 * of a thread per core a 360p rendition took 33–58 % of a core on a busy 2-core machine and fell
 * behind real time, with one 8.6 % at full frame rate (`npm run bench:rtmp`, 2026-12-06).
 */
export function encoderArgs(codec: RenditionCodec, kbps?: number): string[] {
  const keyFrames = ['-force_key_frames', 'expr:gte(t,n_forced*1)'];
  const rate = kbps ? [`${kbps}k`] : [];
  if (codec === 'h264') {
    return [
      '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-bf', '0', ...keyFrames,
      ...rate.flatMap((r) => ['-b:v', r, '-maxrate', r, '-bufsize', r]),
    ];
  }
  return [
    '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-lag-in-frames', '0', '-auto-alt-ref', '0', '-error-resilient', '1', '-threads', '1',
    '-pix_fmt', 'yuv420p', ...keyFrames, ...rate.flatMap((r) => ['-b:v', r, '-minrate', r, '-maxrate', r, '-bufsize', r]),
  ];
}

/**
 * An even UDP port P on 127.0.0.1 with P + 1 free too: ffmpeg's SDP input listens for RTP on the
 * SDP's port and for RTCP on the one above it.
 */
export async function evenPortPair(): Promise<number> {
  const bind = (port: number) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = createSocket('udp4');
      socket.once('error', (error) => {
        socket.close();
        reject(error);
      });
      socket.bind(port, '127.0.0.1', () => resolve(socket));
    });
  const close = (socket: Socket) => new Promise<void>((resolve) => socket.close(() => resolve()));
  // Bounded: a busy machine may hand out a few odd ports or taken neighbours in a row.
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = await bind(0);
    const port = first.address().port;
    await close(first);
    if (port % 2 !== 0 || port >= 65535) continue;
    const pair = await Promise.allSettled([bind(port), bind(port + 1)]);
    const bound = pair.flatMap((p) => (p.status === 'fulfilled' ? [p.value] : []));
    await Promise.all(bound.map(close));
    if (bound.length === 2) return port;
  }
  throw new Error('no free pair of UDP ports on 127.0.0.1');
}
