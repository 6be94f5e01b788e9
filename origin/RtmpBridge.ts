import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { promisify } from 'node:util';
import type { PlainTransport, Producer, Router, RtpParameters } from 'mediasoup/types';
import { UnsupportedMediaError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { H264_PROFILE_LEVEL_IDS } from '../media/codecs.ts';
import { planLadder, type Rendition as LadderRendition } from './ladder.ts';
import type { Publisher } from './PublishedStream.ts';

/**
 * The bridge from an RTMP publish to WebRTC: ffmpeg plays the stream from the origin's own RTMP
 * server and sends RTP into two mediasoup PlainTransports, whose producers make the stream like
 * any WHIP stream. H.264 without B-frames passes through untouched (WebRTC cannot reorder frames,
 * so B-frames force a re-encode to Constrained Baseline); AAC becomes Opus.
 *
 * With a ladder (origin/ladder.ts), one ffmpeg decodes the video once, scales it to each rung
 * (split + scale) and encodes every rung to Constrained Baseline: one simulcast producer whose
 * encodings (one SSRC each, lowest first) all arrive on one PlainTransport. mediasoup takes a
 * non-comedia PlainTransport's RTP only from the address it is connected to, so every rung's RTP
 * output sends from the same local port (udp://…?localport=P&reuse=1, SO_REUSEADDR), RTCP sender
 * reports included (rtcp-mux): simulcast consumers need each layer's reports to switch layers.
 *
 * ffmpeg is supervised: restarted if it dies while the publisher is connected, stopped when the
 * bridge closes. It reads from our RTMP server, so if this process dies its input ends and it
 * exits by itself: it is never orphaned.
 */

export type BridgeMode = 'passthrough' | 'transcode' | 'ladder';

export interface RtmpBridgeEvents {
  closed: [reason: string];
}

export interface RtmpBridgeOptions {
  router: Router;
  stream: string;
  /**
   * A rendition rather than the publish itself: the video alone, always re-encoded to Constrained
   * Baseline, for viewers whose browsers decode nothing the stream is sent as (see rendition()).
   */
  rendition?: boolean;
  /** What the publish carries, when already probed (a rendition reuses its bridge's probe: a second one costs a second). */
  probed?: Probe;
  /** rtmp://127.0.0.1:<port>/live/<key>?bridge=<token> */
  input: string;
  /** Ladder heights, highest first (core/rtmpLadder.ts); empty or unset: the publish as one layer. */
  ladder?: number[];
  logger: Logger;
  ffmpeg?: string;
  ffprobe?: string;
}

/** H.264 profiles a WebRTC browser decodes, as ffprobe names them, and their profile-level-id. */
const PASSTHROUGH_PROFILES: Record<string, string> = H264_PROFILE_LEVEL_IDS;

/** What a re-encode produces: Constrained Baseline, which every WebRTC H.264 decoder takes. */
const TRANSCODE_PROFILE = H264_PROFILE_LEVEL_IDS['Constrained Baseline'];

const VIDEO_PT = 102;
const AUDIO_PT = 101;

/** Where ffmpeg's arguments take an RTP output's first sequence number, by its SSRC (filled in at each start). */
const seqSlot = (ssrc: number) => `{seq:${ssrc}}`;
const SEQ_SLOT = /^\{seq:(\d+)\}$/;

/**
 * How far past the last packet a restarted ffmpeg starts numbering. RTP sequence numbers must go
 * on forward across a restart: numbers that jump back read as old packets, downstream drops them
 * and viewers freeze. The margin covers packets lost on the way, not counted as received.
 */
const SEQ_MARGIN = 100;

/**
 * How many times ffmpeg may die within RESTART_WINDOW_MS before the bridge gives up and ends the
 * publish: a crash loop (bad input) must end, a one-off crash must not cost the broadcaster.
 */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 1000;
/** ffmpeg gets this long to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3000;
/** ffprobe reads the stream's codec headers, which the RTMP server sends at once; a stream that has none by then is broken. */
const PROBE_TIMEOUT_MS = 10_000;

interface Probe {
  video?: { codec: string; profile?: string; hasBFrames: boolean; width?: number; height?: number; fps?: number };
  audio?: { codec: string };
}

/**
 * Frames per second from ffprobe's "30/1" or "30000/1001" (avg_frame_rate, else r_frame_rate);
 * undefined when it says nothing usable (0/0).
 */
function frameRate(...rates: Array<string | number | undefined>): number | undefined {
  for (const rate of rates) {
    const [num, den = 1] = String(rate ?? '').split('/').map(Number);
    if (num && den && Number.isFinite(num / den) && num / den > 0) return num / den;
  }
  return undefined;
}

/** Frame rate assumed for a ladder's bitrates when the stream does not say (RTMP publishers mostly send 30). */
const DEFAULT_FPS = 30;

/**
 * One rung's encoder: Constrained Baseline (every WebRTC browser decodes it), no B-frames, a key
 * frame every second (ffmpeg cannot answer a viewer's key frame request, and a simulcast consumer
 * switches layers at key frames), and the rung's bitrate as both target and cap (a one-second VBV
 * buffer), so that a layer's bitrate is what a viewer's link has to carry.
 */
function rungEncoder(rendition: LadderRendition): string[] {
  const rate = `${rendition.kbps}k`;
  return [
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-bf', '0',
    '-force_key_frames', 'expr:gte(t,n_forced*1)', '-b:v', rate, '-maxrate', rate, '-bufsize', rate,
  ];
}

/** A UDP port free right now on 127.0.0.1, for ffmpeg to send from. */
async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

async function probe(ffprobe: string, input: string): Promise<Probe> {
  const { stdout } = await promisify(execFile)(
    ffprobe,
    [
      '-v', 'error', '-rw_timeout', String(PROBE_TIMEOUT_MS * 1000),
      '-show_entries', 'stream=codec_type,codec_name,profile,has_b_frames,width,height,avg_frame_rate,r_frame_rate', '-of', 'json', input,
    ],
    { timeout: PROBE_TIMEOUT_MS },
  );
  const streams = (JSON.parse(stdout) as { streams?: Array<Record<string, string | number>> }).streams ?? [];
  const video = streams.find((s) => s.codec_type === 'video');
  const audio = streams.find((s) => s.codec_type === 'audio');
  return {
    video: video && {
      codec: String(video.codec_name),
      profile: video.profile as string | undefined,
      hasBFrames: Number(video.has_b_frames ?? 0) > 0,
      width: Number(video.width) || undefined,
      height: Number(video.height) || undefined,
      fps: frameRate(video.avg_frame_rate, video.r_frame_rate),
    },
    audio: audio && { codec: String(audio.codec_name) },
  };
}

export class RtmpBridge extends EventEmitter<RtmpBridgeEvents> implements Publisher {
  readonly id = randomBytes(18).toString('base64url');
  readonly protocol = 'rtmp' as const;
  readonly stream: string;
  readonly mode: BridgeMode;
  readonly producers: Producer[] = [];
  readonly #args: string[];
  readonly #ffmpeg: string;
  readonly #transports: PlainTransport[];
  readonly #logger: Logger;
  readonly #deaths: number[] = [];
  /** Per RTP output (SSRC): the sequence number the current ffmpeg started at, and packets received before it. */
  readonly #seq = new Map<number, { start: number; countAtStart: number }>();
  readonly #options: RtmpBridgeOptions;
  #child: ChildProcess | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(
    stream: string,
    mode: BridgeMode,
    ffmpeg: string,
    args: string[],
    transports: PlainTransport[],
    logger: Logger,
    options: RtmpBridgeOptions,
  ) {
    super();
    this.#options = options;
    this.stream = stream;
    this.mode = mode;
    this.#ffmpeg = ffmpeg;
    this.#args = args;
    this.#transports = transports;
    this.#logger = logger;
  }

  /** Probes the RTMP stream, makes the producers and starts ffmpeg. */
  static async start(options: RtmpBridgeOptions): Promise<RtmpBridge> {
    const { router, stream, input } = options;
    const ffmpeg = options.ffmpeg ?? 'ffmpeg';
    const logger = options.logger.child({ stream, component: options.rendition ? 'rtmp-rendition' : 'rtmp-bridge' });
    const found = options.probed ?? (await probe(options.ffprobe ?? 'ffprobe', input));
    if (!found.video) throw new UnsupportedMediaError('the RTMP stream carries no video');
    const { width, height } = found.video;
    const planned =
      options.ladder?.length && !options.rendition && width && height
        ? planLadder(options.ladder, { width, height, fps: found.video.fps ?? DEFAULT_FPS })
        : [];
    if (options.ladder?.length && planned.length < 2) logger.info({ ladder: options.ladder, width, height }, 'the publish is too small for a ladder: one layer');
    const ladder = planned.length >= 2 ? planned : [];
    const passthroughProfile =
      found.video.codec === 'h264' && !found.video.hasBFrames && !options.rendition && ladder.length === 0
        ? PASSTHROUGH_PROFILES[found.video.profile ?? '']
        : undefined;
    const mode: BridgeMode = ladder.length > 0 ? 'ladder' : passthroughProfile ? 'passthrough' : 'transcode';
    const audio = options.rendition ? undefined : found.audio;

    const transports: PlainTransport[] = [];
    try {
      // ffmpeg sends from ports we choose and the transport is connected to them, so that an
      // ffmpeg restarted by the supervisor is heard again. Video's RTCP shares its RTP port
      // (#muxedRtpUrl); audio's has a port of its own, as ffmpeg's rtp:// output sends it.
      const plain = async (rtcpMux: boolean) => {
        const t = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux, comedia: false });
        transports.push(t);
        await t.connect({ ip: '127.0.0.1', port: await freeUdpPort(), rtcpPort: rtcpMux ? undefined : await freeUdpPort() });
        return t;
      };
      const videoSsrcs = Array.from({ length: Math.max(1, ladder.length) }, () => randomInt(1, 2 ** 31));
      const video = await plain(true);
      const videoParameters: RtpParameters = {
        codecs: [
          {
            mimeType: 'video/H264',
            payloadType: VIDEO_PT,
            clockRate: 90000,
            parameters: { 'packetization-mode': 1, 'profile-level-id': passthroughProfile ?? TRANSCODE_PROFILE, 'level-asymmetry-allowed': 1 },
            rtcpFeedback: [],
          },
        ],
        // A ladder's layers lowest first, named by their height; one SSRC each, which is how
        // mediasoup tells them apart (ffmpeg's RTP carries no rid header extension).
        encodings: ladder.length > 0 ? ladder.map((r, i) => ({ ssrc: videoSsrcs[i]!, rid: r.rid, maxBitrate: r.kbps * 1000 })) : [{ ssrc: videoSsrcs[0]! }],
      };
      const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-rw_timeout', '10000000', '-i', input];
      const videoOutput = (ssrc: number) => ['-payload_type', String(VIDEO_PT), '-ssrc', String(ssrc), '-seq', seqSlot(ssrc), '-f', 'rtp', RtmpBridge.#muxedRtpUrl(video)];
      if (mode === 'ladder') {
        // The picture is decoded once and split; each rung is scaled and encoded on its own.
        const graph = `[0:v:0]split=${ladder.length}${ladder.map((_, i) => `[s${i}]`).join('')};` + ladder.map((r, i) => `[s${i}]scale=${r.width}:${r.height}[v${i}]`).join(';');
        args.push('-filter_complex', graph);
        ladder.forEach((rendition, i) => args.push('-map', `[v${i}]`, ...rungEncoder(rendition), ...videoOutput(videoSsrcs[i]!)));
      } else if (mode === 'passthrough') {
        // In-band SPS/PPS before every key frame: FLV keeps them out of band, browsers need them.
        args.push('-map', '0:v:0', '-c:v', 'copy', '-bsf:v', 'h264_mp4toannexb', ...videoOutput(videoSsrcs[0]!));
      } else {
        args.push(
          '-map', '0:v:0',
          '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-bf', '0',
          // A key frame every second: ffmpeg cannot answer a viewer's key frame request.
          '-force_key_frames', 'expr:gte(t,n_forced*1)',
          ...videoOutput(videoSsrcs[0]!),
        );
      }
      // A ladder's layers are listed lowest first already: no need to learn their order from key frames (media/layerOrder.ts).
      const producers: Producer[] = [await video.produce({ kind: 'video', rtpParameters: videoParameters, appData: { stream, layersInOrder: mode === 'ladder' } })];

      if (audio) {
        const audioSsrc = randomInt(1, 2 ** 31);
        const audio = await plain(false);
        producers.push(
          await audio.produce({
            kind: 'audio',
            rtpParameters: {
              codecs: [{ mimeType: 'audio/opus', payloadType: AUDIO_PT, clockRate: 48000, channels: 2, parameters: {}, rtcpFeedback: [] }],
              encodings: [{ ssrc: audioSsrc }],
            },
            appData: { stream },
          }),
        );
        args.push('-map', '0:a:0', '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '128k');
        args.push('-payload_type', String(AUDIO_PT), '-ssrc', String(audioSsrc), '-seq', seqSlot(audioSsrc), '-f', 'rtp', RtmpBridge.#rtpUrl(audio));
      }
      const bridge = new RtmpBridge(stream, mode, ffmpeg, args, transports, logger, { ...options, probed: found });
      bridge.producers.push(...producers);
      await bridge.#spawn();
      const layers = ladder.length > 0 ? ladder.map((r) => `${r.width}x${r.height}@${r.kbps}k`) : undefined;
      logger.info({ mode, video: found.video, audio, layers, pid: bridge.pid }, 'rtmp bridge started');
      return bridge;
    } catch (error) {
      for (const t of transports) t.close();
      throw error;
    }
  }

  /**
   * Where ffmpeg sends RTP and RTCP together (rtcp-mux) from the port the transport is connected
   * to. SO_REUSEADDR (reuse=1) lets several RTP outputs of one ffmpeg (a ladder's rungs) bind that
   * same port: the transport hears each of them as its one remote address.
   */
  static #muxedRtpUrl(transport: PlainTransport): string {
    const { tuple } = transport;
    return `udp://127.0.0.1:${tuple.localPort}?localport=${tuple.remotePort}&reuse=1&pkt_size=1200`;
  }

  static #rtpUrl(transport: PlainTransport): string {
    const { tuple, rtcpTuple } = transport;
    return (
      `rtp://127.0.0.1:${tuple.localPort}?rtcpport=${rtcpTuple!.localPort}` +
      `&localrtpport=${tuple.remotePort}&localrtcpport=${rtcpTuple!.remotePort}&pkt_size=1200`
    );
  }

  /**
   * A Constrained Baseline rendition of the video, for viewers that cannot decode it as it is
   * sent (x264's and OBS's default High profile in Firefox, or in Chromium builds without High):
   * a second ffmpeg reading the same publish, re-encoding its video alone. Undefined when the
   * stream is Constrained Baseline already. The caller closes it when no viewer needs it.
   */
  async rendition(): Promise<RtmpBridge | undefined> {
    if (this.#closed) throw new Error(`the bridge of ${this.stream} has closed`);
    const profile = this.producers.find((p) => p.kind === 'video')?.rtpParameters.codecs[0]?.parameters?.['profile-level-id'];
    if (this.mode !== 'passthrough' || profile === TRANSCODE_PROFILE) return undefined;
    const rendition = await RtmpBridge.start({ ...this.#options, rendition: true });
    this.once('closed', (reason) => rendition.close(reason));
    return rendition;
  }

  /** The running ffmpeg's pid. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      child.once('exit', () => clearTimeout(timer));
    }
    for (const t of this.#transports) t.close();
    this.#logger.info({ reason }, 'rtmp bridge closed');
    this.emit('closed', reason);
  }

  /** The next ffmpeg's first sequence numbers, for each RTP output (each layer of a ladder): right after the packets the last one sent. */
  async #nextSequenceNumbers(): Promise<void> {
    for (const producer of this.producers) {
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
    if (this.#closed) return;
    const args = this.#args.map((a) => {
      const slot = SEQ_SLOT.exec(a);
      return slot ? String(this.#seq.get(Number(slot[1]))!.start) : a;
    });
    const child = spawn(this.#ffmpeg, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.once('error', (error) => this.#logger.error({ err: error }, 'could not start ffmpeg'));
    child.once('exit', (code, signal) => {
      if (this.#closed) return;
      const now = Date.now();
      this.#deaths.push(now);
      while (this.#deaths.length > 0 && this.#deaths[0]! < now - RESTART_WINDOW_MS) this.#deaths.shift();
      if (this.#deaths.length > MAX_RESTARTS) {
        this.#logger.error({ code, signal, stderr }, 'ffmpeg keeps dying; ending the publish');
        this.close('bridge failed');
        return;
      }
      this.#logger.warn({ code, signal, stderr }, 'ffmpeg died; restarting it');
      this.#restartTimer = setTimeout(async () => {
        if (this.#closed) return;
        await this.#spawn();
      }, RESTART_DELAY_MS);
    });
  }
}
