import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from '../../core/logger.ts';
import { Fmp4Reader, type Fmp4Init } from './Fmp4Reader.ts';
import { LivePlaylist } from './LivePlaylist.ts';

/**
 * One live stream packaged for HLS: an ffmpeg that reads the stream (the origin says how: the RTMP
 * publish, or the WebRTC publish's RTP) and writes CMAF, fragmented MP4, to its stdout; the
 * fragments go through Fmp4Reader into the LivePlaylist that the HLS routes serve. ffmpeg muxes
 * (a well-kept muxer: moov, moof, trun, the CMAF brand); the playlist logic is ours.
 *
 * H.264 goes through as it arrives and AAC too; what else arrives is encoded to those (the source
 * gives the encoder arguments). A packager whose ffmpeg ends, ends: the next request starts another
 * with a new run id, so no name is ever reused.
 */

export interface PackagerSource {
  /** ffmpeg's arguments up to and including its input(s) and its -map/-c choices. */
  args: string[];
  /** Called once the packager's ffmpeg runs (e.g. to ask a WebRTC publisher for a key frame until media comes out). */
  started?: () => void;
  /** Called once the packager's first part is out. */
  flowing?: () => void;
  /** Releases what the source holds (transports, consumers); called once, at close. */
  close?: () => void;
}

export interface HlsPackagerEvents {
  /** The packager stopped: the stream ended, ffmpeg failed, or it was closed. */
  closed: [reason: string];
}

export interface HlsPackagerOptions {
  stream: string;
  /** Which of the stream's variants, 0 the best (its media playlist is media.m3u8, then media-1.m3u8…). */
  variant?: number;
  source: PackagerSource;
  logger: Logger;
  ffmpeg?: string;
  /** Seconds: the longest part. */
  partTarget?: number;
  /** Seconds: a key frame after this long starts a segment. */
  segmentMin?: number;
  /** Whole seconds: the longest segment. */
  targetDuration?: number;
  /** Seconds of segments listed. */
  window?: number;
}

/**
 * Parts of a third of a second: inside RFC 8216bis's "0.2 to 0.5 s" and Apple's 0.33 s example,
 * short enough for hls.js to sit 1 s (three parts, PART-HOLD-BACK) behind the live edge, long
 * enough that a viewer's requests stay at three a second.
 */
export const PART_TARGET_S = 0.334;

/**
 * ffmpeg's fragment length (µs); LivePlaylist groups fragments into parts. ffmpeg cuts a fragment
 * at the first frame at least this long after the fragment's first, so a fragment is one to three
 * frames: parts come out within a frame or two of their last frame, and fill their target to 90 %
 * or more at any common frame rate (15 to 60 fps; strict players want 85 %), at a cost of some
 * 250 bytes of moof per fragment (30 kbit/s).
 */
const FRAGMENT_US = 50_000;

/** A key frame starts a new segment once the segment is a second long: an encoder's 2 s GOP makes 2 s segments. */
export const SEGMENT_MIN_S = 1;

/**
 * TARGETDURATION: a segment is cut at 4 s even without a key frame (a publisher with 10 s GOPs,
 * ffmpeg's default at 25 fps, still gets segments a player can load promptly).
 */
export const TARGET_DURATION_S = 4;

/** A window of 36 s: CAN-SKIP-UNTIL (six target durations, 24 s) and a margin for delta updates to skip. */
export const WINDOW_S = 36;

/**
 * How the packager encodes video that is not H.264 (a VP8 or VP9 WebRTC publish): x264 without
 * look-ahead or B-frames (zerolatency: each frame leaves as it arrives), a key frame every 2 s so
 * that segments are 2 s long whatever the publisher's key frames.
 */
export const HLS_VIDEO_ENCODE = ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-force_key_frames', 'expr:gte(t,n_forced*2)'];

/**
 * How it encodes audio that is not AAC (a WebRTC publish's Opus). AAC rather than Opus in fMP4:
 * hls.js plays both in Chromium and Firefox, but Safari's native HLS (every iPhone) took Opus in
 * fMP4 only from iOS 17 on, and smart TVs' players take AAC alone; one AAC encode per stream costs
 * little next to the video.
 */
export const HLS_AUDIO_ENCODE = ['-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-ac', '2'];

/**
 * How long an ended stream's ffmpeg may take to write its last fragments: it reads them from its
 * input's end at once (an RTMP publish) or never (RTP, which has no end); a recording keeps the
 * last frames of a publish that way.
 */
const FINISH_GRACE_MS = 2000;

/** How long a packager waits for ffmpeg's init segment before it gives up: probing an input takes a second or two. */
const INIT_TIMEOUT_MS = 15_000;

export class HlsPackager extends EventEmitter<HlsPackagerEvents> {
  readonly stream: string;
  readonly variant: number;
  readonly playlist: LivePlaylist;
  readonly #reader = new Fmp4Reader();
  readonly #child: ChildProcess;
  readonly #source: PackagerSource;
  readonly #logger: Logger;
  readonly #ready: Promise<Fmp4Init>;
  /** The end of ffmpeg's stderr, for the log when it fails. */
  #stderr = '';
  #closed = false;
  /** The stream ended; ffmpeg is writing what it still holds (finish()). */
  #finishing = false;

  constructor(options: HlsPackagerOptions) {
    super();
    this.stream = options.stream;
    this.variant = options.variant ?? 0;
    this.#source = options.source;
    const run = randomBytes(4).toString('hex');
    this.#logger = options.logger.child({ component: 'hls-packager', stream: options.stream, variant: this.variant, run });
    this.playlist = new LivePlaylist({
      run,
      partTarget: options.partTarget ?? PART_TARGET_S,
      segmentMin: options.segmentMin ?? SEGMENT_MIN_S,
      targetDuration: options.targetDuration ?? TARGET_DURATION_S,
      window: options.window ?? WINDOW_S,
    });
    const args = [
      ...options.source.args,
      '-f', 'mp4', '-movflags', 'empty_moov+default_base_moof+frag_keyframe+cmaf', '-frag_duration', String(FRAGMENT_US), '-flush_packets', '1', 'pipe:1',
    ];
    const child = (this.#child = spawn(options.ffmpeg ?? 'ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stderr!.on('data', (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-2000)));
    child.stdout!.on('data', (chunk: Buffer) => {
      try {
        this.#reader.push(chunk);
      } catch (error) {
        this.close(`unreadable packager output: ${(error as Error).message}`);
      }
    });
    this.#reader.on('fragment', (fragment) => this.playlist.addFragment(fragment));
    child.once('error', (error) => this.close(`could not start ffmpeg: ${error.message}`));
    // 'close', not 'exit': everything ffmpeg wrote has been read by then.
    child.once('close', (code, signal) => {
      if (this.#finishing) return this.close('stream ended', true);
      if (!this.#closed) this.#logger.warn({ code, signal, stderr: this.#stderr }, 'packager ffmpeg exited');
      this.close('ffmpeg exited');
    });
    this.#ready = new Promise<Fmp4Init>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no media from the stream in time')), INIT_TIMEOUT_MS);
      const fail = (reason: string) => {
        clearTimeout(timer);
        reject(new Error(reason));
      };
      this.once('closed', fail);
      // Ready once the first part is out: the init segment alone would give players an empty playlist.
      const first = () => {
        if (!this.playlist.lastPosition) return;
        clearTimeout(timer);
        this.off('closed', fail);
        this.#reader.off('fragment', firstPart);
        resolve(this.#reader.init!);
        this.#source.flowing?.();
      };
      const firstPart = () => setImmediate(first);
      this.#reader.on('fragment', firstPart);
    });
    this.#ready.catch((error: Error) => {
      if (!this.#closed) this.#logger.warn({ stderr: this.#stderr }, `packager made nothing: ${error.message}`);
      this.close(error.message);
    });
    this.#logger.info({ pid: child.pid }, 'packager started');
    options.source.started?.();
  }

  /** The init segment, once ffmpeg wrote it and the first part is out; rejects if the packager fails first. */
  ready(): Promise<Fmp4Init> {
    return this.#ready;
  }

  get init(): Fmp4Init | undefined {
    return this.#reader.init;
  }

  get initUri(): string {
    return `init-${this.playlist.run}.mp4`;
  }

  /** Its media playlist's name: media.m3u8 for the best variant, media-{n}.m3u8 for the others. */
  get playlistUri(): string {
    return this.variant === 0 ? 'media.m3u8' : `media-${this.variant}.m3u8`;
  }

  /**
   * The stream ended: ffmpeg gets FINISH_GRACE_MS to write what it still holds (the last frames
   * of an RTMP publish, whose input ends by itself; a WebRTC publish's RTP input does not, and
   * waits the grace out), then the packager closes and its playlist says EXT-X-ENDLIST.
   */
  finish(reason: string): void {
    if (this.#closed || this.#finishing) return;
    this.#finishing = true;
    const timer = setTimeout(() => this.close(reason, true), FINISH_GRACE_MS);
    this.once('closed', () => clearTimeout(timer));
  }

  /** Stops packaging; `streamEnded` when the stream itself ended (the playlist then says EXT-X-ENDLIST). */
  close(reason: string, streamEnded = false): void {
    if (this.#closed) return;
    this.#closed = true;
    this.playlist.end(streamEnded);
    const child = this.#child;
    // SIGKILL: the playlist has ended, nothing ffmpeg writes now is used; and blocked on an RTP
    // input (a WHIP publish's) ffmpeg may not exit on SIGTERM, outliving an origin that stops
    // before a grace period's SIGKILL (as ProducerRendition found).
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    this.#source.close?.();
    this.#logger.info({ reason }, 'packager stopped');
    this.emit('closed', reason);
  }
}
