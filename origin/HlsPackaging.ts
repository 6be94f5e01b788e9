import type { HlsMode } from '../core/config.ts';
import type { Logger } from '../core/logger.ts';
import { HlsPackager, type PackagerSource } from '../media/hls/HlsPackager.ts';
import type { PublishedStream } from './PublishedStream.ts';

/**
 * The origin's HLS packagers, one per stream that is asked for over HLS (or every stream, with
 * `--hls always`): started by the first request (requests arriving together share the start),
 * kept while requests come, stopped --hls-linger-ms after the last one, and ended with the stream.
 */

export interface HlsPackagingOptions {
  /** The origin's --hls: what a stream without a setting of its own gets. */
  mode: HlsMode;
  lingerMs: number;
  logger: Logger;
}

/**
 * How long an early packager (prestart) waits for its stream to be placed: the bridge's probe and
 * start and the placement take a second or two; a publish refused never claims it.
 */
const EARLY_CLAIM_MS = 30_000;

/** How often idle packagers are looked for: a tenth of the default linger. */
const SWEEP_MS = 3000;

interface Entry {
  stream: PublishedStream;
  /** The stream's variants' packagers, best first (PublishedStream.packagerSources). */
  variants: Promise<HlsPackager[]>;
  /** When the last request ended (or the first began), and how many are under way (a blocking reload, the first request waiting for the start). */
  lastRequest: number;
  requests: number;
}

export class HlsPackaging {
  readonly #options: HlsPackagingOptions;
  readonly #entries = new Map<string, Entry>();
  /** The live streams' own modes (their `hls` setting as they went live). */
  readonly #modes = new Map<string, HlsMode>();
  /** Packagers started before their stream was placed (prestart), by stream name. */
  readonly #early = new Map<string, { packager: HlsPackager; timer: NodeJS.Timeout }>();
  /** Streams whose packagers run whether asked for or not (recorded ones), with how many hold them. */
  readonly #held = new Map<string, number>();
  readonly #sweep: NodeJS.Timeout;

  constructor(options: HlsPackagingOptions) {
    this.#options = options;
    this.#sweep = setInterval(() => this.#stopIdle(), Math.min(SWEEP_MS, Math.max(100, options.lingerMs / 2)));
    this.#sweep.unref();
  }

  /** How stream `name` is packaged: its own setting, else the origin's. */
  modeOf(name: string): HlsMode {
    return this.#modes.get(name) ?? this.#options.mode;
  }

  /** Streams packaged now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes the packagers hold (their windows). */
  async bytes(): Promise<number> {
    let total = 0;
    for (const entry of this.#entries.values()) {
      const variants = await entry.variants.catch(() => []);
      for (const packager of variants) total += packager.playlist.bytes;
    }
    return total;
  }

  /** A stream went live, with its own setting (null: the origin's): `always` starts its packaging now. */
  placed(stream: PublishedStream, mode: HlsMode | null): void {
    if (mode) this.#modes.set(stream.name, mode);
    stream.once('ended', () => {
      if (this.#modes.get(stream.name) === mode) this.#modes.delete(stream.name);
    });
    if (this.modeOf(stream.name) === 'always') void this.variants(stream).catch(() => undefined);
  }

  /**
   * Starts the best variant's packager of stream `name` before the stream is placed (a recorded
   * RTMP publish, whose first key frames would be gone from the RTMP server by the time the
   * bridge is up and the stream placed: it keeps only the last GOP). The stream's packaging takes
   * it as its first variant when it starts; unclaimed after EARLY_CLAIM_MS, it is closed.
   */
  prestart(name: string, source: PackagerSource): void {
    if (this.#early.has(name) || this.#entries.has(name)) return;
    const packager = new HlsPackager({ stream: name, variant: 0, source, logger: this.#options.logger });
    const timer = setTimeout(() => this.dropEarly(name), EARLY_CLAIM_MS);
    this.#early.set(name, { packager, timer });
    packager.once('closed', () => {
      if (this.#early.get(name)?.packager === packager) this.dropEarly(name);
    });
  }

  /** Closes the early packager of `name`, if unclaimed (the publish was refused, or needs encoding). */
  dropEarly(name: string): void {
    const early = this.#early.get(name);
    if (!early) return;
    this.#early.delete(name);
    clearTimeout(early.timer);
    early.packager.close('not claimed by a placed stream');
  }

  /**
   * Keeps stream `name`'s packagers from stopping for want of requests (a recorder reads them)
   * until the returned release is called.
   */
  hold(name: string): () => void {
    this.#held.set(name, (this.#held.get(name) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#held.get(name) ?? 1) - 1;
      if (left > 0) this.#held.set(name, left);
      else this.#held.delete(name);
    };
  }

  /**
   * Answers one HLS request of `stream` with `answer`, given its packagers (started if they are
   * not running). The linger counts from the end of the last request: none stops a packager that
   * a request is waiting on.
   */
  async serve<T>(stream: PublishedStream, answer: (variants: HlsPackager[]) => Promise<T>): Promise<T> {
    const variants = this.variants(stream);
    const entry = this.#entries.get(stream.name);
    if (entry) entry.requests++;
    try {
      return await answer(await variants);
    } finally {
      if (entry) {
        entry.requests--;
        entry.lastRequest = Date.now();
      }
    }
  }

  /**
   * The stream's packagers, one per variant, best first, started if they are not running; each
   * call counts as a request (the linger starts again). The variants start and stop together: a
   * player switches between them.
   */
  variants(stream: PublishedStream): Promise<HlsPackager[]> {
    const now = Date.now();
    const entry = this.#entries.get(stream.name);
    if (entry && entry.stream === stream) {
      entry.lastRequest = now;
      return entry.variants;
    }
    const started = this.#start(stream);
    const fresh: Entry = { stream, variants: started, lastRequest: now, requests: 0 };
    this.#entries.set(stream.name, fresh);
    const forget = () => {
      if (this.#entries.get(stream.name) === fresh) this.#entries.delete(stream.name);
    };
    started.then((variants) => {
      // One variant's ffmpeg gone (not the stream): all stop, and the next request starts afresh.
      const stopAll = (reason: string) => {
        forget();
        for (const packager of variants) packager.close(reason);
      };
      for (const packager of variants) packager.once('closed', stopAll);
    }, forget);
    return started;
  }

  /** Stops every packager (the origin shuts down). */
  close(): void {
    clearInterval(this.#sweep);
    for (const name of [...this.#early.keys()]) this.dropEarly(name);
    for (const entry of this.#entries.values()) void entry.variants.then((all) => all.forEach((p) => p.close('origin shutting down', true))).catch(() => undefined);
    this.#entries.clear();
  }

  async #start(stream: PublishedStream): Promise<HlsPackager[]> {
    const early = this.#early.get(stream.name);
    if (early) {
      this.#early.delete(stream.name);
      clearTimeout(early.timer);
    }
    const first = early && !early.packager.playlist.ended ? early.packager : undefined;
    const sources = await stream.packagerSources();
    // Together: a layered source waits for its layer to be scored (ProducerPackagerSource).
    const made = await Promise.allSettled(sources.map((source, i) => (i === 0 && first ? Promise.resolve(undefined) : source())));
    const failed = made.find((m) => m.status === 'rejected');
    if (failed) {
      for (const m of made) if (m.status === 'fulfilled') m.value?.close?.();
      first?.close('another variant failed');
      throw failed.reason;
    }
    const variants = made.map((m, i) =>
      i === 0 && first ? first : new HlsPackager({ stream: stream.name, variant: i, source: (m as PromiseFulfilledResult<PackagerSource>).value!, logger: this.#options.logger }),
    );
    const ended = () => variants.forEach((p) => p.finish('stream ended'));
    stream.once('ended', ended);
    variants[0]!.once('closed', () => stream.off('ended', ended));
    return variants;
  }

  #stopIdle(): void {
    const idleSince = Date.now() - this.#options.lingerMs;
    for (const [name, entry] of this.#entries) {
      if (entry.requests === 0 && entry.lastRequest < idleSince && this.modeOf(name) !== 'always' && !this.#held.has(name)) {
        void entry.variants.then((all) => all.forEach((p) => p.close('no HLS request for the linger time'))).catch(() => undefined);
      }
    }
  }
}
