import type { Knex } from 'knex';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { closeRecording, expireSegments, forgetGarbage, garbageOf, openRecording, writeSegment } from '../db/repositories/recordings.ts';
import { Recorder, type RecordingIndex } from '../media/record/Recorder.ts';
import type { RecordingStore, WritableRecordingStore } from '../media/record/RecordingStore.ts';
import type { HlsPackaging } from './HlsPackaging.ts';
import type { PublishedStream } from './PublishedStream.ts';

/**
 * The origin's recorders: a stream recorded (its `record` setting, else --record) keeps its HLS
 * packagers running and a Recorder on its best variant (media/record/), started again when the
 * packager stops without the stream ending. Recordings outlive their origin in the index; the
 * next run of the stream, here or on another origin, continues the same recording.
 *
 * Every RETENTION_SWEEP_MS the origin also deletes what is past retention (any origin may: the
 * rows go in one transaction), and the bytes of deleted segments that its own store holds.
 */

export interface RecordingsOptions {
  db: Knex;
  nodeId: string;
  store: WritableRecordingStore;
  /** The shared object store, when recordings go to S3: its garbage is any origin's to delete. */
  shared?: RecordingStore;
  hls: HlsPackaging;
  /** --record on: streams without a setting of their own are recorded. */
  recordByDefault: boolean;
  retentionDays: number;
  logger: Logger;
  metrics: Metrics;
}

/**
 * A stream's next run joins its last recording if that ended at most this long before: a
 * publisher's reconnect (OBS retries after 2 to 10 s), or a failover (the node TTL, 10 s, then the
 * publisher's reconnect to another origin) stays one recording with a discontinuity.
 */
export const RESUME_GAP_MS = 60_000;

/** After a packager stopped under a live stream: a second before the next (a failing ffmpeg is not restarted in a loop), doubling to 30 s. */
const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 30_000;

/** Retention and garbage every minute: expiry is by days; nothing needs to go sooner. */
const RETENTION_SWEEP_MS = 60_000;
/** Rows per retention transaction and files per garbage pass: short transactions, bounded work per sweep. */
const SWEEP_BATCH = 1000;

export class Recordings {
  readonly #options: RecordingsOptions;
  readonly #active = new Map<PublishedStream, { release: () => void; recorder: Recorder | undefined; timer: NodeJS.Timeout | undefined }>();
  readonly #sweep: NodeJS.Timeout;
  #sweeping: Promise<void> | undefined;
  #closing = false;

  constructor(options: RecordingsOptions) {
    this.#options = options;
    this.#sweep = setInterval(() => void this.sweep(), RETENTION_SWEEP_MS);
    this.#sweep.unref();
  }

  /** Streams recorded now. */
  get size(): number {
    return this.#active.size;
  }

  /** A stream went live with its own setting (null: --record): a recorded one starts recording now. */
  placed(stream: PublishedStream, setting: boolean | null): void {
    if (!(setting ?? this.#options.recordByDefault) || this.#closing) return;
    const entry = { release: this.#options.hls.hold(stream.name), recorder: undefined as Recorder | undefined, timer: undefined as NodeJS.Timeout | undefined };
    this.#active.set(stream, entry);
    this.#options.metrics.recordings.set(this.#active.size);
    stream.once('ended', () => {
      clearTimeout(entry.timer);
      entry.release();
      this.#active.delete(stream);
      this.#options.metrics.recordings.set(this.#active.size);
    });
    void this.#start(stream, RESTART_MIN_MS);
  }

  /** Waits for the recorders to write what they have (the packagers are closed by HlsPackaging.close()). */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweep);
    const recorders = [...this.#active.values()].map((e) => {
      clearTimeout(e.timer);
      return e.recorder?.closed();
    });
    await Promise.all(recorders);
    await this.#sweeping;
  }

  /** One retention pass and one garbage pass (every RETENTION_SWEEP_MS; the tests call it). */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweepOnce().finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async #sweepOnce(): Promise<void> {
    const { db, nodeId, store, logger } = this.#options;
    try {
      let expired = 0;
      for (let batch = 0; batch < 10; batch++) {
        const n = await expireSegments(db, { defaultDays: this.#options.retentionDays, limit: SWEEP_BATCH });
        expired += n;
        if (n < SWEEP_BATCH) break;
      }
      if (expired > 0) logger.info({ segments: expired }, 'recorded segments past retention deleted');
      // This node's own files, and (any origin may) the shared store's.
      const passes: Array<[RecordingStore, string | undefined]> = [[store, nodeId]];
      if (this.#options.shared) passes.push([this.#options.shared, undefined]);
      for (const [from, owner] of passes) {
        const garbage = await garbageOf(db, { nodeId: owner, store: from.kind, limit: SWEEP_BATCH });
        const gone: string[] = [];
        for (const item of garbage) {
          try {
            await from.remove(item.key);
            gone.push(item.id);
          } catch (error) {
            logger.warn({ err: error, key: item.key, store: from.kind }, 'could not delete a recorded file; trying again at the next sweep');
          }
        }
        await forgetGarbage(db, gone);
      }
    } catch (error) {
      logger.warn({ err: error }, 'recording retention sweep failed; trying again at the next one');
    }
  }

  async #start(stream: PublishedStream, backoffMs: number): Promise<void> {
    const entry = this.#active.get(stream);
    if (!entry || stream.ended || this.#closing) return;
    const { logger } = this.#options;
    const again = (reason: string, next: number) => {
      if (stream.ended || this.#closing || !this.#active.has(stream)) return;
      logger.warn({ stream: stream.name, reason, retryMs: backoffMs }, 'recording interrupted; starting the packager again');
      entry.timer = setTimeout(() => void this.#start(stream, next), backoffMs);
    };
    let packager;
    try {
      packager = (await this.#options.hls.variants(stream))[0]!;
    } catch (error) {
      again((error as Error).message, Math.min(backoffMs * 2, RESTART_MAX_MS));
      return;
    }
    if (stream.ended || this.#closing) return;
    const recorder = new Recorder({ packager, store: this.#options.store, index: this.#index(stream.name), logger });
    entry.recorder = recorder;
    recorder.on('failure', (where) => this.#options.metrics.recordingFailures.inc({ where }));
    recorder.on('recorded', () => this.#options.metrics.recordedSegments.inc());
    // A run that made media resets the backoff; one that made none doubles it.
    const started = Date.now();
    packager.once('closed', (reason) => again(reason, Date.now() - started > RESTART_MAX_MS ? RESTART_MIN_MS : Math.min(backoffMs * 2, RESTART_MAX_MS)));
  }

  #index(stream: string): RecordingIndex {
    const { db, nodeId } = this.#options;
    return {
      open: async (startedAt) => {
        const { recording, continued } = await openRecording(db, { stream, startedAt, resumeGapMs: RESUME_GAP_MS });
        return { id: recording.id, continued };
      },
      write: (segment, added) => writeSegment(db, { ...segment, nodeId }, added),
      close: (id) => closeRecording(db, id),
    };
  }
}
