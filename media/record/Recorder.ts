import { EventEmitter } from 'node:events';
import type { Logger } from '../../core/logger.ts';
import type { RecordedSegment } from '../../core/recordings.ts';
import type { Fmp4Init } from '../hls/Fmp4Reader.ts';
import type { HlsPackager } from '../hls/HlsPackager.ts';
import type { Part, Segment } from '../hls/LivePlaylist.ts';
import type { AppendFile, WritableRecordingStore } from './RecordingStore.ts';

export type { RecordedSegment };

/**
 * Records one run of a stream's HLS packager: the same CMAF the live playlist serves (a stream is
 * packaged once), its init segment and each segment as a file of the store, appended part by part
 * (a third of a second) as the packager makes them, and a row per segment in the index.
 *
 * Nothing acknowledged is lost: every FLUSH_MS the open segment's file is synced to disk and then
 * its row says how far it goes, so a kill -9 of the origin loses about the last second at most;
 * a playback reads a segment only as far as its row says. A store or index that fails is
 * logged and counted (the `failure` event) and retried: the index at every flush, the store at the
 * next segment. The recorder never throws at its packager.
 */


/** The index the recorder writes to, bound to its stream (the origin gives it; media/ knows no database). */
export interface RecordingIndex {
  /** The recording this run goes into: the stream's last one if it ended moments ago (`continued`), else a new one. */
  open(startedAt: Date): Promise<{ id: string; continued: boolean }>;
  /** Writes a segment's row as it is now; `added`: what this write adds to the recording since the segment's last successful write. */
  write(segment: RecordedSegment, added: { duration: number; bytes: number }): Promise<void>;
  /** The stream ended: the recording is closed (a DVR playlist gets its ENDLIST). */
  close(recordingId: string): Promise<void>;
}

export interface RecorderEvents {
  /** Something could not be written: `where` the store or the index. The recorder goes on. (Not 'error': nothing has to listen.) */
  failure: [where: 'store' | 'index', error: Error];
  /** A segment's row is complete in the index. */
  recorded: [segment: RecordedSegment];
  /** The recorder stopped and wrote what it could. */
  closed: [];
}

export interface RecorderOptions {
  packager: HlsPackager;
  store: WritableRecordingStore;
  index: RecordingIndex;
  logger: Logger;
  flushMs?: number;
}

/**
 * Half a second between flushes: a crash loses what came since the last one, plus the part being
 * filled (a third of a second) and the sync and row write, so about a second at most (the
 * issue's bound; at 1 s the benchmark saw 1.2 s). The index gets two row updates per recorded
 * stream per second, which Postgres takes by the thousand.
 */
export const FLUSH_MS = 500;

/** How long a stopping recorder waits for its last rows: a Postgres that hangs must not hold up an origin's shutdown. */
const CLOSE_INDEX_WAIT_MS = 10_000;

interface OpenSegment {
  record: RecordedSegment;
  /** The playlist's segment (its wall-clock start can still move while it is made). */
  segment: Segment;
  file: AppendFile | undefined;
  /** What the index has of it (its last successful write). */
  indexed: { duration: number; bytes: number } | undefined;
  /** Bytes appended since the last sync. */
  unsynced: boolean;
  /** A store failure: the rest of its parts are skipped. */
  failed: boolean;
}

export class Recorder extends EventEmitter<RecorderEvents> {
  readonly #packager: HlsPackager;
  readonly #store: WritableRecordingStore;
  readonly #index: RecordingIndex;
  readonly #logger: Logger;
  readonly #timer: NodeJS.Timeout;
  /** Every write goes through this queue, in order. */
  #queue: Promise<void>;
  #recordingId: string | undefined;
  #initKey = '';
  #codecs = '';
  #open: OpenSegment | undefined;
  /**
   * Rows to write: each segment's latest synced state, oldest segment first. The index has a chain
   * of its own, so that a Postgres that hangs holds up no file write; rows it refused are tried
   * again at the next flush.
   */
  readonly #rows = new Map<OpenSegment, RecordedSegment>();
  #indexing: Promise<void> | undefined;
  #closed = false;
  readonly #done: Promise<void>;

  constructor(options: RecorderOptions) {
    super();
    this.#packager = options.packager;
    this.#store = options.store;
    this.#index = options.index;
    this.#logger = options.logger.child({ component: 'recorder', stream: options.packager.stream, run: options.packager.playlist.run });
    const playlist = options.packager.playlist;
    this.#queue = options.packager.ready().then(
      (init) => this.#begin(init),
      () => undefined, // the packager made nothing: nothing to record
    );
    // What the packager made before this recorder (an early start, before the stream was placed)
    // is recorded first: its complete segments whole, then the parts of the one being made.
    // Taken and subscribed in one go, so that nothing is recorded twice or missed.
    for (const segment of playlist.segments) this.#enqueue(() => this.#whole(segment));
    const open = playlist.open;
    if (open) for (const part of [...open.parts]) this.#enqueue(() => this.#append(open as Segment, part));
    const onPart = (segment: Segment, part: Part) => this.#enqueue(() => this.#append(segment, part));
    const onSegment = (segment: Segment) => this.#enqueue(() => this.#finish(segment));
    playlist.on('part', onPart);
    playlist.on('segment', onSegment);
    this.#timer = setInterval(() => this.#enqueue(() => this.#flush()), options.flushMs ?? FLUSH_MS);
    this.#done = new Promise((resolve) => {
      options.packager.once('closed', () => {
        // The playlist ended before 'closed': its last segment's event is queued already.
        playlist.off('part', onPart);
        playlist.off('segment', onSegment);
        clearInterval(this.#timer);
        this.#enqueue(() => this.#end(playlist.streamEnded));
        void this.#queue.then(() => {
          this.#closed = true;
          this.emit('closed');
          resolve();
        });
      });
    });
  }

  /** The recording this run goes into, once the index said. */
  get recordingId(): string | undefined {
    return this.#recordingId;
  }

  /** Resolves once the packager stopped and everything was written (or given up on). */
  closed(): Promise<void> {
    return this.#done;
  }

  #enqueue(step: () => Promise<void>): void {
    if (this.#closed) return;
    this.#queue = this.#queue.then(step).catch((error: Error) => this.#logger.error({ err: error }, 'recorder step failed'));
  }

  async #begin(init: Fmp4Init): Promise<void> {
    const playlist = this.#packager.playlist;
    const startedAt = new Date(playlist.segments[0]?.programDateTime ?? playlist.openSegment.programDateTime ?? Date.now());
    try {
      const { id, continued } = await this.#index.open(startedAt);
      this.#recordingId = id;
      this.#logger.info({ recording: id, continued }, continued ? 'recording continued' : 'recording started');
    } catch (error) {
      // No recording to put rows in: this run goes unrecorded; the origin starts a new run later.
      this.#fail('index', error as Error, 'could not open a recording; this run is not recorded');
      return;
    }
    this.#initKey = `${this.#recordingId}/${this.#packager.playlist.run}/init.mp4`;
    this.#codecs = init.tracks.map((t) => t.codec).join(',');
    try {
      await this.#store.writeFile(this.#initKey, init.data);
    } catch (error) {
      this.#fail('store', error as Error, 'could not write the init segment; this run is not recorded');
      this.#recordingId = undefined;
    }
  }

  async #append(segment: Segment, part: Part): Promise<void> {
    if (!this.#recordingId) return;
    if (!part.data) {
      // The playlist dropped the part's bytes before the recorder got to them (its disk hung for
      // many seconds): the rest of that segment is lost, and said so.
      if (this.#open?.segment === segment && !this.#open.failed) {
        this.#open.failed = true;
        this.#fail('store', new Error('the recorder fell behind the packager'), 'a part was gone before it could be written; the rest of its segment is not recorded');
      }
      return;
    }
    if (part.index === 0) {
      if (this.#open) {
        await this.#sync(this.#open);
        this.#queueRow(this.#open);
      }
      await this.#closeFile();
      this.#open = this.#recorded(this.#recordingId, segment);
      try {
        this.#open.file = await this.#store.append(this.#open.record.key);
      } catch (error) {
        this.#open.failed = true;
        this.#fail('store', error as Error, 'could not open a segment file; the segment is not recorded');
      }
    }
    const open = this.#open;
    // A part of a segment begun before this recorder (or after a failure): not recordable alone.
    if (!open || open.failed || open.record.msn !== segment.msn || !open.file) return;
    try {
      await open.file.append(part.data);
      open.record.duration += part.duration;
      open.record.bytes += part.data.length;
      open.unsynced = true;
    } catch (error) {
      open.failed = true;
      this.#fail('store', error as Error, 'could not write a part; the rest of its segment is not recorded');
    }
  }

  /** A segment complete before this recorder began: its bytes written at once. */
  async #whole(segment: Segment): Promise<void> {
    if (!this.#recordingId || !segment.data) return;
    const whole = this.#recorded(this.#recordingId, segment);
    Object.assign(whole.record, { duration: segment.duration, bytes: segment.data.length, complete: true });
    try {
      await this.#store.writeFile(whole.record.key, segment.data);
    } catch (error) {
      this.#fail('store', error as Error, 'could not write a segment; it is not recorded');
      return;
    }
    this.#queueRow(whole);
    this.#kickRows();
  }

  /** A segment of the playlist as this recorder keeps it: nothing of it written yet. */
  #recorded(recordingId: string, segment: Segment): OpenSegment {
    const run = this.#packager.playlist.run;
    return {
      record: {
        recordingId,
        run,
        msn: segment.msn,
        startedAt: new Date(segment.programDateTime),
        duration: 0,
        bytes: 0,
        complete: false,
        store: this.#store.kind,
        key: `${recordingId}/${run}/${segment.msn}.m4s`,
        initKey: this.#initKey,
        codecs: this.#codecs,
      },
      segment,
      file: undefined,
      indexed: undefined,
      unsynced: false,
      failed: false,
    };
  }

  async #finish(segment: Segment): Promise<void> {
    const open = this.#open;
    if (!open || open.record.msn !== segment.msn) return;
    await this.#sync(open);
    await this.#closeFile();
    open.record.complete = !open.failed;
    this.#open = undefined;
    this.#queueRow(open);
    this.#kickRows();
  }

  /** Every FLUSH_MS: the open segment synced and its row brought up to date, and any row behind. */
  async #flush(): Promise<void> {
    const open = this.#open;
    if (open && open.unsynced && !open.failed) {
      await this.#sync(open);
      this.#queueRow(open);
    }
    this.#kickRows();
  }

  async #end(streamEnded: boolean): Promise<void> {
    const open = this.#open;
    if (open) {
      await this.#sync(open);
      await this.#closeFile();
      this.#queueRow(open);
      this.#open = undefined;
    }
    // The rows still to write (a write under way takes them up too); a Postgres that hangs gets CLOSE_INDEX_WAIT_MS.
    let timer: NodeJS.Timeout | undefined;
    this.#kickRows();
    await Promise.race([this.#indexing, new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_INDEX_WAIT_MS)))]);
    clearTimeout(timer);
    if (this.#rows.size) this.#logger.error({ segments: this.#rows.size }, 'recorder stopped with segments not indexed (their bytes are on disk)');
    if (streamEnded && this.#recordingId) await this.#index.close(this.#recordingId).catch((error: Error) => this.#fail('index', error, 'could not close the recording'));
  }

  async #sync(open: OpenSegment): Promise<void> {
    if (!open.file || !open.unsynced) return;
    try {
      await open.file.sync();
      open.unsynced = false;
    } catch (error) {
      open.failed = true;
      this.#fail('store', error as Error, 'could not sync a segment; the rest of it is not recorded');
    }
  }

  async #closeFile(): Promise<void> {
    const file = this.#open?.file;
    if (!file) return;
    this.#open!.file = undefined;
    await file.close().catch(() => undefined);
  }

  /** Takes a segment's state as it is now (synced) for its next row: the latest replaces an earlier one not written yet. */
  #queueRow(segment: OpenSegment): void {
    if (segment.record.bytes === 0) return;
    // Its wall-clock start by the packager's latest clock offset: the first segments of a run
    // may have been stamped before the offset settled.
    const offset = this.#packager.playlist.clockOffset;
    const startedAt = offset === undefined ? new Date(segment.segment.programDateTime) : new Date(Math.round(segment.segment.mediaStart * 1000 + offset));
    this.#rows.set(segment, { ...segment.record, startedAt });
  }

  /** Starts writing the rows, unless that is under way. */
  #kickRows(): void {
    this.#indexing ??= this.#writeRows().finally(() => (this.#indexing = undefined));
  }

  /** Writes the rows waiting, oldest segment first; stops at the first failure (the next flush tries again). */
  async #writeRows(): Promise<void> {
    for (let next = this.#rows.entries().next(); !next.done; next = this.#rows.entries().next()) {
      const [segment, record] = next.value;
      const added = { duration: record.duration - (segment.indexed?.duration ?? 0), bytes: record.bytes - (segment.indexed?.bytes ?? 0) };
      try {
        await this.#index.write(record, added);
      } catch (error) {
        this.#fail('index', error as Error, 'could not index a segment; retrying at the next flush');
        return;
      }
      segment.indexed = { duration: record.duration, bytes: record.bytes };
      // A newer state taken meanwhile stays for the next round.
      if (this.#rows.get(segment) === record) this.#rows.delete(segment);
      if (record.complete) this.emit('recorded', record);
    }
  }

  #fail(where: 'store' | 'index', error: Error, message: string): void {
    this.#logger.error({ err: error, recording: this.#recordingId }, message);
    this.emit('failure', where, error);
  }
}
