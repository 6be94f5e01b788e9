import type { Knex } from 'knex';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { markStored, pendingUploads, uploadBacklog } from '../db/repositories/recordings.ts';
import type { LocalRecordingStore } from '../media/record/RecordingStore.ts';
import type { S3RecordingStore } from '../media/record/S3RecordingStore.ts';

/**
 * Moves an origin's recorded segments from its local directory (the backlog) to S3 once they are
 * complete, oldest first: the run's init segment, then the segment, then its row says `s3`, then
 * the local file goes (and the run's init segment's, once its first segment is there). While the store cannot be reached, segments wait on disk (playback reads
 * them there) and the uploads are tried again, every RETRY_MIN_MS at first, doubling to
 * RETRY_MAX_MS; the backlog is a metric (`relaycast_recording_upload_backlog`) and every failure
 * counts in `relaycast_recording_failures_total{where="upload"}`. A segment deleted meanwhile
 * (retention, the API) has its uploaded copy deleted again.
 */

export interface RecordingUploadsOptions {
  db: Knex;
  nodeId: string;
  local: LocalRecordingStore;
  s3: S3RecordingStore;
  logger: Logger;
  metrics: Metrics;
}

/** A pass a second: a segment reaches the bucket within about a second of being complete. */
const PASS_MS = 1000;
/** After a failed upload: a second, doubling to a minute while the store stays away. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** Segments per pass: a pass of a backlog of hours goes on at once in the next one, without a long query. */
const BATCH = 100;

export class RecordingUploads {
  readonly #options: RecordingUploadsOptions;
  /** Init segments uploaded by this process (uploading one again is harmless: after a restart). */
  readonly #inits = new Set<string>();
  /** Init segments whose local copy went (playback reads a run's init where its first segment is). */
  readonly #initsMoved = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #retryMs = RETRY_MIN_MS;
  #failing = false;
  #closed = false;

  constructor(options: RecordingUploadsOptions) {
    this.#options = options;
    this.#schedule(PASS_MS);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** One pass over the backlog now (the tests call it); resolves when it is done. */
  pass(): Promise<void> {
    this.#running ??= this.#pass().finally(() => (this.#running = undefined));
    return this.#running;
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      void this.pass().then((ok) => ok, () => undefined).finally(() => this.#schedule(this.#failing ? this.#retryMs : PASS_MS));
    }, ms);
    this.#timer.unref();
  }

  async #pass(): Promise<void> {
    const { db, nodeId, local, s3, logger, metrics } = this.#options;
    try {
      for (let batch = 0; batch < 100 && !this.#closed; batch++) {
        const pending = await pendingUploads(db, { nodeId, limit: BATCH });
        for (const segment of pending) {
          if (this.#closed) return;
          if (!this.#inits.has(segment.initKey)) {
            const init = await local.read(segment.initKey);
            if (init) await s3.upload(segment.initKey, init);
            this.#inits.add(segment.initKey);
          }
          const data = await local.read(segment.key, segment.bytes);
          if (data) await s3.upload(segment.key, data);
          if (await markStored(db, segment.id, s3.kind)) {
            await local.remove(segment.key);
            // The run's first segment in S3: playback reads its init segment there from now on.
            if (!this.#initsMoved.has(segment.initKey)) {
              await local.remove(segment.initKey);
              this.#initsMoved.add(segment.initKey);
            }
          } else await s3.remove(segment.key); // its row went while it was uploaded
        }
        if (pending.length < BATCH) break;
      }
      if (this.#failing) logger.info('recording uploads to S3 work again; the backlog is uploaded');
      this.#failing = false;
      this.#retryMs = RETRY_MIN_MS;
    } catch (error) {
      metrics.recordingFailures.inc({ where: 'upload' });
      if (!this.#failing) logger.error({ err: error }, 'could not upload recorded segments to S3; they wait on local disk and are tried again');
      this.#failing = true;
      this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
    } finally {
      metrics.recordingUploadBacklog.set(await uploadBacklog(db, nodeId).catch(() => 0));
    }
  }
}
