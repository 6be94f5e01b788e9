import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { promisify } from 'node:util';
import type { PlainTransport, Producer, Router, RtpParameters } from 'mediasoup/types';
import { UnsupportedMediaError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { H264_PROFILE_LEVEL_IDS, isRendition, RENDITION_RTP_CODECS, type RenditionCodec } from '../media/codecs.ts';
import { HLS_AUDIO_ENCODE, HLS_VIDEO_ENCODE, type PackagerSource } from '../media/hls/HlsPackager.ts';
import { encoderArgs, FfmpegProcess, plainInput, rtpOutputUrl } from './FfmpegProcess.ts';
import { planLadder, renditionKbps, type Rendition as LadderRung } from './ladder.ts';
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
 * ffmpeg is supervised (origin/FfmpegProcess.ts): restarted if it dies while the publisher is
 * connected, stopped when the bridge closes. It reads from our RTMP server, so if this process
 * dies its input ends and it exits by itself: it is never orphaned.
 */

export type BridgeMode = 'passthrough' | 'transcode' | 'ladder';

export interface RtmpBridgeEvents {
  closed: [reason: string];
}

export interface RtmpBridgeOptions {
  router: Router;
  stream: string;
  /**
   * A rendition rather than the publish itself: the video alone, always re-encoded to this codec,
   * for viewers whose browsers decode nothing the stream is sent as (see rendition()).
   */
  rendition?: RenditionCodec;
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

const VIDEO_PT = 102;
const AUDIO_PT = 101;

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
  readonly #ffmpeg: FfmpegProcess;
  readonly #transports: PlainTransport[];
  readonly #logger: Logger;
  readonly #options: RtmpBridgeOptions;
  /** A ladder's rungs, lowest first (as the video producer's encodings); empty without one. */
  #ladder: LadderRung[] = [];
  #closed = false;

  private constructor(stream: string, mode: BridgeMode, args: string[], transports: PlainTransport[], producers: Producer[], logger: Logger, options: RtmpBridgeOptions) {
    super();
    this.#options = options;
    this.stream = stream;
    this.mode = mode;
    this.producers.push(...producers);
    this.#transports = transports;
    this.#logger = logger;
    this.#ffmpeg = new FfmpegProcess({ ffmpeg: options.ffmpeg ?? 'ffmpeg', args, producers: this.producers, logger });
    this.#ffmpeg.once('failed', () => this.close('bridge failed'));
  }

  /** Probes the RTMP stream, makes the producers and starts ffmpeg. */
  static async start(options: RtmpBridgeOptions): Promise<RtmpBridge> {
    const { router, stream, input } = options;
    const logger = options.logger.child({ stream, component: options.rendition ? 'rtmp-rendition' : 'rtmp-bridge', ...(options.rendition ? { rendition: options.rendition } : {}) });
    const found = options.probed ?? (await probe(options.ffprobe ?? 'ffprobe', input));
    if (!found.video) throw new UnsupportedMediaError('the RTMP stream carries no video');
    const { width, height } = found.video;
    const fps = found.video.fps ?? DEFAULT_FPS;
    const planned = options.ladder?.length && !options.rendition && width && height ? planLadder(options.ladder, { width, height, fps }) : [];
    if (options.ladder?.length && planned.length < 2) logger.info({ ladder: options.ladder, width, height }, 'the publish is too small for a ladder: one layer');
    const ladder = planned.length >= 2 ? planned : [];
    const passthroughProfile =
      found.video.codec === 'h264' && !found.video.hasBFrames && !options.rendition && ladder.length === 0
        ? PASSTHROUGH_PROFILES[found.video.profile ?? '']
        : undefined;
    const mode: BridgeMode = ladder.length > 0 ? 'ladder' : passthroughProfile ? 'passthrough' : 'transcode';
    const audio = options.rendition ? undefined : found.audio;
    // What the video is sent as: the publish's own H.264, or what the re-encode makes.
    const codec = options.rendition ?? 'h264';
    const videoCodec = RENDITION_RTP_CODECS[codec];

    const transports: PlainTransport[] = [];
    try {
      // Video's RTCP shares its RTP port (rtpOutputUrl); audio's has a port of its own.
      const plain = async (rtcpMux: boolean) => {
        const t = await plainInput(router, rtcpMux);
        transports.push(t);
        return t;
      };
      const videoSsrcs = Array.from({ length: Math.max(1, ladder.length) }, () => randomInt(1, 2 ** 31));
      const video = await plain(true);
      const videoParameters: RtpParameters = {
        codecs: [
          passthroughProfile
            ? { ...videoCodec, payloadType: VIDEO_PT, parameters: { ...videoCodec.parameters, 'profile-level-id': passthroughProfile } }
            : { ...videoCodec, payloadType: VIDEO_PT },
        ],
        // A ladder's layers lowest first, named by their height; one SSRC each, which is how
        // mediasoup tells them apart (ffmpeg's RTP carries no rid header extension).
        encodings: ladder.length > 0 ? ladder.map((r, i) => ({ ssrc: videoSsrcs[i]!, rid: r.rid, maxBitrate: r.kbps * 1000 })) : [{ ssrc: videoSsrcs[0]! }],
      };
      const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-rw_timeout', '10000000', '-i', input];
      const videoOutput = (ssrc: number) => ['-payload_type', String(VIDEO_PT), '-ssrc', String(ssrc), '-seq', FfmpegProcess.seqSlot(ssrc), '-f', 'rtp', rtpOutputUrl(video)];
      if (mode === 'ladder') {
        // The picture is decoded once and split; each rung is scaled and encoded on its own.
        const graph = `[0:v:0]split=${ladder.length}${ladder.map((_, i) => `[s${i}]`).join('')};` + ladder.map((r, i) => `[s${i}]scale=${r.width}:${r.height}[v${i}]`).join(';');
        args.push('-filter_complex', graph);
        ladder.forEach((rung, i) => args.push('-map', `[v${i}]`, ...encoderArgs('h264', rung.kbps), ...videoOutput(videoSsrcs[i]!)));
      } else if (mode === 'passthrough') {
        // In-band SPS/PPS before every key frame: FLV keeps them out of band, browsers need them.
        args.push('-map', '0:v:0', '-c:v', 'copy', '-bsf:v', 'h264_mp4toannexb', ...videoOutput(videoSsrcs[0]!));
      } else {
        // x264 picks its own rate for the bridge's re-encode, as it always has; a VP8 rendition
        // needs one (libvpx's default is 256 kbit/s): what a ladder rung of this size gets.
        const kbps = codec === 'vp8' && width && height ? renditionKbps(width, height, fps) : undefined;
        args.push('-map', '0:v:0', ...encoderArgs(codec, kbps), ...videoOutput(videoSsrcs[0]!));
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
        args.push('-payload_type', String(AUDIO_PT), '-ssrc', String(audioSsrc), '-seq', FfmpegProcess.seqSlot(audioSsrc), '-f', 'rtp', RtmpBridge.#rtpUrl(audio));
      }
      const bridge = new RtmpBridge(stream, mode, args, transports, producers, logger, { ...options, probed: found });
      bridge.#ladder = ladder;
      await bridge.#ffmpeg.start();
      const layers = ladder.length > 0 ? ladder.map((r) => `${r.width}x${r.height}@${r.kbps}k`) : undefined;
      logger.info({ mode, codec, video: found.video, audio, layers, pid: bridge.pid }, 'rtmp bridge started');
      return bridge;
    } catch (error) {
      for (const t of transports) t.close();
      throw error;
    }
  }

  /** Where ffmpeg's rtp:// output sends audio RTP and RTCP, each from the port the transport is connected to. */
  static #rtpUrl(transport: PlainTransport): string {
    const { tuple, rtcpTuple } = transport;
    return (
      `rtp://127.0.0.1:${tuple.localPort}?rtcpport=${rtcpTuple!.localPort}` +
      `&localrtpport=${tuple.remotePort}&localrtcpport=${rtcpTuple!.remotePort}&pkt_size=1200`
    );
  }

  /**
   * A version of the video in `codec` for viewers that cannot decode it as it is sent: Constrained
   * Baseline for x264's and OBS's default High profile in Firefox with OpenH264 or in Chromium
   * builds without High; VP8 for browsers without H.264. A second ffmpeg reading the same publish,
   * re-encoding its video alone. Undefined when the stream is sent as that already. The caller
   * closes it when no viewer needs it.
   */
  async rendition(codec: RenditionCodec): Promise<RtmpBridge | undefined> {
    if (this.#closed) throw new Error(`the bridge of ${this.stream} has closed`);
    if (isRendition(this.producers.find((p) => p.kind === 'video')?.rtpParameters.codecs[0], codec)) return undefined;
    const rendition = await RtmpBridge.start({ ...this.#options, rendition: codec });
    this.once('closed', (reason) => rendition.close(reason));
    return rendition;
  }

  /**
   * What the stream's HLS packagers read (media/hls/HlsPackager.ts), one per variant, best first.
   * First the RTMP publish itself, its H.264 and AAC as they arrive: HLS takes what WebRTC does
   * not (B-frames, High and Main profiles), so nothing is re-encoded for it; another video or
   * audio codec is encoded to those. Then each rung of a ladder smaller than the publish, scaled
   * and encoded from the publish by the variant's own ffmpeg, only while HLS is watched: the
   * bridge's rungs leave it as RTP layers of one simulcast producer, and mediasoup's consumer of
   * one lower layer on a PlainTransport did not stay on it (it went to the lowest within seconds).
   */
  packagerSources(): PackagerSource[] {
    const { video, audio } = this.#options.probed ?? {};
    const input = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-rw_timeout', '10000000', '-i', this.#options.input];
    const sound = audio ? ['-map', '0:a:0', ...(audio.codec === 'aac' ? ['-c:a', 'copy'] : HLS_AUDIO_ENCODE)] : [];
    const own = [...input, '-map', '0:v:0', ...(video?.codec === 'h264' ? ['-c:v', 'copy'] : HLS_VIDEO_ENCODE), ...sound];
    const source = video?.height ?? Infinity;
    const rungs = this.#ladder.filter((rung) => rung.height < source).reverse();
    const rung = (r: LadderRung) => [...input, '-map', '0:v:0', '-vf', `scale=${r.width}:${r.height}`, ...HLS_VIDEO_ENCODE, '-b:v', `${r.kbps}k`, '-maxrate', `${r.kbps}k`, '-bufsize', `${2 * r.kbps}k`, ...sound];
    return [{ args: own }, ...rungs.map((r) => ({ args: rung(r) }))];
  }

  /**
   * The publish as a recording starts it before the bridge's probe (RtmpIngest): its H.264 and
   * AAC copied, as packagerSources() copies them once probed. `copiedAsIs` says whether a probe
   * agrees (nothing else in the publish to encode).
   */
  static earlyPackagerSource(input: string): PackagerSource {
    return { args: ['-hide_banner', '-loglevel', 'error', '-nostdin', '-rw_timeout', '10000000', '-i', input, '-map', '0:v:0', '-c:v', 'copy', '-map', '0:a:0?', '-c:a', 'copy'] };
  }

  /** Whether the publish is what earlyPackagerSource() copies: H.264, and AAC or no audio. */
  get copiedAsIs(): boolean {
    const { video, audio } = this.#options.probed ?? {};
    return video?.codec === 'h264' && (!audio || audio.codec === 'aac');
  }

  /** The running ffmpeg's pid. */
  get pid(): number | undefined {
    return this.#ffmpeg.pid;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ffmpeg.stop();
    for (const t of this.#transports) t.close();
    this.#logger.info({ reason }, 'rtmp bridge closed');
    this.emit('closed', reason);
  }
}
