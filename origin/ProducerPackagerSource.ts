import type { Consumer, PlainTransport, Producer, Router } from 'mediasoup/types';
import { UnsupportedMediaError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { HLS_AUDIO_ENCODE, HLS_VIDEO_ENCODE, SEGMENT_MIN_S, type PackagerSource } from '../media/hls/HlsPackager.ts';
import { evenPortPair } from './FfmpegProcess.ts';

/**
 * What the HLS packager reads of a WebRTC publish (WHIP): its producers' RTP, out of mediasoup
 * through a PlainTransport each to the ports ffmpeg's SDP input listens on (as ProducerRendition
 * does). H.264 goes into the segments as it arrives; VP8 and VP9 are encoded to H.264 (only while
 * the packager runs, that is while HLS viewers ask); Opus is encoded to AAC (HLS_AUDIO_ENCODE says
 * why).
 *
 * Browsers send key frames only when asked, and a segment starts at one: the publisher is asked for
 * one every SEGMENT_TARGET_MS while the stream's own H.264 is packaged. Audio is held until the first
 * key frame reaches ffmpeg: ffmpeg drops the video before it, and audio that started earlier
 * would begin the segments a second ahead of the picture.
 */

/** How ffmpeg depacketizes each codec (ffmpeg 5.1 has no AV1 depacketizer), by mediasoup's MIME type. */
const DEPACKETIZERS = new Map([
  ['video/H264', 'H264/90000'],
  ['video/VP8', 'VP8/90000'],
  ['video/VP9', 'VP9/90000'],
  ['audio/opus', 'opus/48000/2'],
]);

/**
 * How often the publisher is asked for a key frame: twice per SEGMENT_MIN_S, so that segments are
 * about 2 s (a key frame after a one-second segment starts the next). Each key frame costs the
 * publisher's uplink a few times an ordinary frame, for WebRTC viewers too; only while HLS is asked.
 */
const SEGMENT_TARGET_MS = 2 * SEGMENT_MIN_S * 1000;

/**
 * The first key frame is asked for this often until the packager's first part is out (flowing()):
 * ffmpeg opens its ports a moment after it starts, and a key frame sent before that is lost (seen
 * going out by mediasoup all the same); ffmpeg then gives up on video that had no key frame within
 * ANALYZE_US ("unspecified size"), which a VP8 publisher, asked for no more key frames, never sent.
 */
const FIRST_KEY_FRAME_RETRY_MS = 300;

/** How long ffmpeg reads its input before it starts writing: enough for the first key frame's SPS. */
const ANALYZE_US = 1_000_000;

export class ProducerPackagerSource implements PackagerSource {
  readonly args: string[];
  readonly #transports: PlainTransport[];
  readonly #video: Consumer | undefined;
  readonly #audio: Consumer | undefined;
  /** Whether the publisher's own key frames start the segments (its H.264 is packaged as it is). */
  readonly #passthrough: boolean;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(args: string[], transports: PlainTransport[], video: Consumer | undefined, audio: Consumer | undefined, passthrough: boolean, logger: Logger) {
    this.args = args;
    this.#transports = transports;
    this.#video = video;
    this.#audio = audio;
    this.#passthrough = passthrough;
    this.#logger = logger;
  }

  /** A source of `producers` (a video, an audio; a simulcast video's top layer). */
  static async create(router: Router, producers: readonly Producer[], logger: Logger): Promise<ProducerPackagerSource> {
    const video = producers.find((p) => p.kind === 'video');
    const audio = producers.find((p) => p.kind === 'audio');
    if (!video) throw new UnsupportedMediaError('the stream has no video to package');
    const transports: PlainTransport[] = [];
    try {
      const media: string[] = [];
      const consume = async (producer: Producer, paused: boolean) => {
        const encoding = DEPACKETIZERS.get(producer.rtpParameters.codecs[0]!.mimeType);
        if (!encoding) throw new UnsupportedMediaError(`${producer.rtpParameters.codecs[0]!.mimeType} cannot be packaged for HLS`);
        const port = await evenPortPair();
        const transport = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: false, comedia: false });
        transports.push(transport);
        await transport.connect({ ip: '127.0.0.1', port, rtcpPort: port + 1 });
        // A simulcast publish's top layer (its every temporal layer), from the start: ffmpeg takes
        // the picture size of the first key frame it gets for the whole run.
        const simulcast = (producer.rtpParameters.encodings?.length ?? 0) > 1;
        const preferredLayers = simulcast ? { spatialLayer: 255, temporalLayer: 255 } : undefined;
        const consumer = await transport.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities, paused, preferredLayers });
        const codec = consumer.rtpParameters.codecs[0]!;
        const fmtp = Object.entries(codec.parameters ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(';');
        media.push(`m=${producer.kind} ${port} RTP/AVP ${codec.payloadType}`, `a=rtpmap:${codec.payloadType} ${encoding}`, ...(fmtp ? [`a=fmtp:${codec.payloadType} ${fmtp}`] : []), 'a=recvonly');
        return consumer;
      };
      const layered = (video.rtpParameters.encodings?.length ?? 0) > 1;
      const videoConsumer = await consume(video, layered);
      if (layered) {
        await layerFlowing(video);
        await videoConsumer.resume();
      }
      const audioConsumer = audio ? await consume(audio, true) : undefined;
      const sdp = ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=relaycast hls', 'c=IN IP4 127.0.0.1', 't=0 0', ...media, ''].join('\r\n');
      const passthrough = video.rtpParameters.codecs[0]!.mimeType === 'video/H264';
      const args = [
        '-hide_banner', '-loglevel', 'error', '-nostdin',
        '-protocol_whitelist', 'data,udp,rtp', '-analyzeduration', String(ANALYZE_US), '-fflags', 'nobuffer',
        '-f', 'sdp', '-i', `data:application/sdp;base64,${Buffer.from(sdp).toString('base64')}`,
        '-map', '0:v:0', ...(passthrough ? ['-c:v', 'copy'] : ['-fps_mode', 'passthrough', ...HLS_VIDEO_ENCODE]),
        ...(audioConsumer ? ['-map', '0:a:0', ...HLS_AUDIO_ENCODE] : []),
      ];
      const source = new ProducerPackagerSource(args, transports, videoConsumer, audioConsumer, passthrough, logger.child({ component: 'hls-source' }));
      videoConsumer.observer.once('close', () => source.close());
      return source;
    } catch (error) {
      for (const t of transports) t.close();
      throw error;
    }
  }

  /**
   * ffmpeg runs: ask for a key frame until its first part is out (flowing()). Not just until the
   * first key frame passes: ffmpeg opens its ports a moment after it starts (seconds on a busy
   * machine), and a key frame sent before that is lost to it. Audio flows from the first key frame on.
   */
  started(): void {
    const video = this.#video;
    if (!video) return;
    void video.enableTraceEvent(['keyframe']).catch(() => undefined);
    video.once('trace', () => void this.#audio?.resume().catch(() => undefined));
    this.#timer = setInterval(() => void video.requestKeyFrame().catch(() => undefined), FIRST_KEY_FRAME_RETRY_MS);
    void video.requestKeyFrame().catch(() => undefined);
  }

  /** The first part is out: from now on, for the publisher's own H.264, a key frame per segment. */
  flowing(): void {
    clearInterval(this.#timer);
    const video = this.#video;
    if (video && this.#passthrough && !this.#closed) this.#timer = setInterval(() => void video.requestKeyFrame().catch(() => undefined), SEGMENT_TARGET_MS);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const t of this.#transports) t.close();
    this.#logger.debug('hls source closed');
  }
}

/**
 * How long a simulcast source waits for its top layer to be scored before it starts anyway.
 * mediasoup scores a producer's layers from their first packets (a second or so); a consumer that
 * starts before then starts on a lower layer, and ffmpeg would take that picture size for good.
 */
const LAYER_SCORE_WAIT_MS = 3000;

/** Resolves once `producer`'s top layer is scored, or after LAYER_SCORE_WAIT_MS. */
async function layerFlowing(producer: Producer): Promise<void> {
  const index = (producer.rtpParameters.encodings?.length ?? 1) - 1;
  const scored = () => producer.score.some((s) => s.encodingIdx === index && s.score > 0);
  if (scored()) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      producer.off('score', check);
      resolve();
    };
    const check = () => scored() && done();
    const timer = setTimeout(done, LAYER_SCORE_WAIT_MS);
    producer.on('score', check);
  });
}
