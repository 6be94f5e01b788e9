import { randomInt } from 'node:crypto';
import type { Consumer, PlainTransport, Producer, Router } from 'mediasoup/types';
import { UnsupportedMediaError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { isRendition, RENDITION_RTP_CODECS, type RenditionCodec } from '../media/codecs.ts';
import { producerBitrate } from '../media/producerBitrate.ts';
import { encoderArgs, evenPortPair, FfmpegProcess, plainInput, rtpOutputUrl } from './FfmpegProcess.ts';
import type { Rendition } from './PublishedStream.ts';

/**
 * A rendition of a WebRTC publish (WHIP): its video producer's RTP goes out of mediasoup through a
 * PlainTransport to an ffmpeg that decodes it (described to ffmpeg by an SDP), re-encodes it in
 * the rendition's codec, and sends RTP back into a producer of its own on the stream's router.
 * The audio stays the publisher's own (Opus plays everywhere). ffmpeg cannot ask for key frames,
 * so the rendition asks the publisher for one whenever an ffmpeg starts, until its first picture
 * comes out.
 */

/** What ffmpeg depacketizes from RTP (ffmpeg 5.1 has no AV1 depacketizer), by mediasoup's MIME type. */
const DECODABLE = new Map([
  ['video/H264', 'H264'],
  ['video/VP8', 'VP8'],
  ['video/VP9', 'VP9'],
]);

const VIDEO_PT = 102;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * How the rendition's bitrate follows the publisher's: the publish's own rate, within these bounds
 * (kbit/s). A WebRTC publisher's rate moves with its network and its picture; the lower bound keeps
 * a rendition started during a dip watchable, the upper one keeps a 1080p publish's rendition from
 * costing viewers more than a 720p one (VP8 and H.264 take about the same rate for a picture).
 */
const MIN_KBPS = 500;
const MAX_KBPS = 2500;

/**
 * After an ffmpeg starts, the publisher is asked for a key frame this often until the rendition's
 * first packet arrives, at most KEY_FRAME_TRIES times: ffmpeg takes a moment to open its port, and
 * its decoder starts at a key frame (a request it misses would otherwise cost the publisher's next
 * periodic one, or none at all: browsers send key frames only when asked).
 */
const KEY_FRAME_RETRY_MS = 500;
const KEY_FRAME_TRIES = 20;

/**
 * How long ffmpeg reads the input before it starts: enough to see a key frame's SPS and picture
 * size (it is asked for at once), little enough not to hold the viewer's first frame back.
 */
const ANALYZE_US = 1_000_000;

export class ProducerRendition implements Rendition {
  readonly producers: Producer[] = [];
  readonly codec: RenditionCodec;
  readonly #ffmpeg: FfmpegProcess;
  readonly #transports: PlainTransport[];
  readonly #source: Consumer;
  readonly #logger: Logger;
  /** Bumped at each ffmpeg start: an older round of key frame requests stops. */
  #keyFrameRound = 0;
  #closed = false;

  private constructor(codec: RenditionCodec, output: Producer, source: Consumer, transports: PlainTransport[], args: string[], ffmpeg: string, logger: Logger) {
    this.codec = codec;
    this.producers.push(output);
    this.#source = source;
    this.#transports = transports;
    this.#logger = logger;
    this.#ffmpeg = new FfmpegProcess({ ffmpeg, args, producers: this.producers, logger });
    this.#ffmpeg.on('spawned', () => void this.#askForKeyFrames());
    this.#ffmpeg.once('failed', (reason) => this.close(reason));
    source.observer.once('close', () => this.close('the publish ended'));
  }

  /**
   * Starts a rendition of `video` (a producer on `router`) in `codec`. Undefined when the video is
   * sent in that codec already; UnsupportedMediaError when ffmpeg cannot read it.
   */
  static async start(options: { router: Router; video: Producer; codec: RenditionCodec; logger: Logger; ffmpeg?: string }): Promise<ProducerRendition | undefined> {
    const { router, video, codec } = options;
    const sent = video.rtpParameters.codecs[0]!;
    if (isRendition(sent, codec)) return undefined;
    const wanted = RENDITION_RTP_CODECS[codec];
    const encoding = DECODABLE.get(sent.mimeType);
    if (!encoding) throw new UnsupportedMediaError(`no ${codec.toUpperCase()} version can be made of ${sent.mimeType.split('/')[1]} video`);
    const logger = options.logger.child({ component: 'whip-rendition', rendition: codec, from: sent.mimeType });
    const transports: PlainTransport[] = [];
    try {
      // Out of mediasoup: to the ports ffmpeg listens on (RTP, and RTCP one above, as ffmpeg's SDP input takes them).
      const port = await evenPortPair();
      const out = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: false, comedia: false });
      transports.push(out);
      await out.connect({ ip: '127.0.0.1', port, rtcpPort: port + 1 });
      const source = await out.consume({ producerId: video.id, rtpCapabilities: router.rtpCapabilities, paused: false });
      // A simulcast publish: the rendition is made from its top layer.
      if (source.type === 'simulcast') await source.setPreferredLayers({ spatialLayer: 255, temporalLayer: 255 });
      const pt = source.rtpParameters.codecs[0]!.payloadType;
      const fmtp = Object.entries(source.rtpParameters.codecs[0]!.parameters ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(';');
      const sdp = [
        'v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=relaycast rendition', 'c=IN IP4 127.0.0.1', 't=0 0',
        `m=video ${port} RTP/AVP ${pt}`, `a=rtpmap:${pt} ${encoding}/90000`, ...(fmtp ? [`a=fmtp:${pt} ${fmtp}`] : []), 'a=recvonly', '',
      ].join('\r\n');

      // Back into mediasoup: the rendition's producer.
      const back = await plainInput(router, true);
      transports.push(back);
      const ssrc = randomInt(1, 2 ** 31);
      const output = await back.produce({
        kind: 'video',
        rtpParameters: { codecs: [{ ...wanted, payloadType: VIDEO_PT }], encodings: [{ ssrc }] },
        appData: { rendition: codec },
      });
      const kbps = Math.round(Math.min(MAX_KBPS, Math.max(MIN_KBPS, (await producerBitrate(video)) / 1000)));
      const args = [
        '-hide_banner', '-loglevel', 'error', '-nostdin',
        '-protocol_whitelist', 'data,udp,rtp', '-analyzeduration', String(ANALYZE_US), '-fflags', 'nobuffer', '-flags', 'low_delay',
        '-f', 'sdp', '-i', `data:application/sdp;base64,${Buffer.from(sdp).toString('base64')}`,
        // Frames as they come (a WebRTC publisher's rate varies), not duplicated to a constant rate.
        '-map', '0:v:0', '-fps_mode', 'passthrough', ...encoderArgs(codec, kbps),
        '-payload_type', String(VIDEO_PT), '-ssrc', String(ssrc), '-seq', FfmpegProcess.seqSlot(ssrc), '-f', 'rtp', rtpOutputUrl(back),
      ];
      const rendition = new ProducerRendition(codec, output, source, transports, args, options.ffmpeg ?? 'ffmpeg', logger);
      await rendition.#ffmpeg.start();
      logger.info({ kbps, pid: rendition.#ffmpeg.pid }, 'rendition started');
      return rendition;
    } catch (error) {
      for (const t of transports) t.close();
      throw error;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The running ffmpeg's pid. */
  get pid(): number | undefined {
    return this.#ffmpeg.pid;
  }

  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    // SIGKILL: it has nothing to finish, and blocked on its RTP input it took SIGTERM's whole grace
    // period to exit in about half the stops the benchmark saw.
    this.#ffmpeg.stop('SIGKILL');
    for (const t of this.#transports) t.close();
    this.#logger.info({ reason }, 'rendition closed');
  }

  /** Asks the publisher for key frames until the rendition's packets come out (a new ffmpeg's first picture). */
  async #askForKeyFrames(): Promise<void> {
    const round = ++this.#keyFrameRound;
    const before = await this.#packetsOut();
    for (let i = 0; i < KEY_FRAME_TRIES && !this.#closed && round === this.#keyFrameRound; i++) {
      void this.#source.requestKeyFrame().catch(() => undefined);
      await sleep(KEY_FRAME_RETRY_MS);
      if ((await this.#packetsOut()) > before) return;
    }
  }

  async #packetsOut(): Promise<number> {
    const stats = await this.producers[0]!.getStats().catch(() => []);
    return stats.reduce((sum, s) => sum + s.packetCount, 0);
  }
}
