import type { HlsMode } from '../core/config.ts';
import type { Logger } from '../core/logger.ts';
import { HlsPackager } from '../media/hls/HlsPackager.ts';
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

/** How often idle packagers are looked for: a tenth of the default linger. */
const SWEEP_MS = 3000;

interface Entry {
  stream: PublishedStream;
  packager: Promise<HlsPackager>;
  lastRequest: number;
}

export class HlsPackaging {
  readonly #options: HlsPackagingOptions;
  readonly #entries = new Map<string, Entry>();
  /** The live streams' own modes (their `hls` setting as they went live). */
  readonly #modes = new Map<string, HlsMode>();
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

  /** Packagers running. */
  get size(): number {
    return this.#entries.size;
  }

  /** A stream went live, with its own setting (null: the origin's): `always` starts its packaging now. */
  placed(stream: PublishedStream, mode: HlsMode | null): void {
    if (mode) this.#modes.set(stream.name, mode);
    stream.once('ended', () => {
      if (this.#modes.get(stream.name) === mode) this.#modes.delete(stream.name);
    });
    if (this.modeOf(stream.name) === 'always') void this.packager(stream).catch(() => undefined);
  }

  /** The stream's packager, started if it is not running; each call counts as a request (the linger starts again). */
  packager(stream: PublishedStream): Promise<HlsPackager> {
    const now = Date.now();
    const entry = this.#entries.get(stream.name);
    if (entry && entry.stream === stream) {
      entry.lastRequest = now;
      return entry.packager;
    }
    const started = this.#start(stream);
    const fresh: Entry = { stream, packager: started, lastRequest: now };
    this.#entries.set(stream.name, fresh);
    const forget = () => {
      if (this.#entries.get(stream.name) === fresh) this.#entries.delete(stream.name);
    };
    started.then((packager) => packager.once('closed', forget), forget);
    return started;
  }

  /** Stops every packager (the origin shuts down). */
  close(): void {
    clearInterval(this.#sweep);
    for (const entry of this.#entries.values()) void entry.packager.then((p) => p.close('origin shutting down', true)).catch(() => undefined);
    this.#entries.clear();
  }

  async #start(stream: PublishedStream): Promise<HlsPackager> {
    const source = await stream.packagerSource();
    const packager = new HlsPackager({ stream: stream.name, source, logger: this.#options.logger });
    const ended = () => packager.close('stream ended', true);
    stream.once('ended', ended);
    packager.once('closed', () => stream.off('ended', ended));
    return packager;
  }

  #stopIdle(): void {
    const idleSince = Date.now() - this.#options.lingerMs;
    for (const [name, entry] of this.#entries) {
      if (entry.lastRequest < idleSince && this.modeOf(name) !== 'always') void entry.packager.then((p) => p.close('no HLS request for the linger time')).catch(() => undefined);
    }
  }
}
