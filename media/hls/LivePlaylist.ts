import { EventEmitter } from 'node:events';
import type { Fmp4Fragment } from './Fmp4Reader.ts';

/**
 * The live window of one packaged stream: CMAF fragments grouped into parts and key-frame
 * segments, and its Low-Latency HLS media playlist (RFC 8216bis): EXT-X-PART, EXT-X-PRELOAD-HINT,
 * blocking reloads (_HLS_msn, _HLS_part), delta updates (_HLS_skip), EXT-X-PROGRAM-DATE-TIME.
 *
 * Names never collide, across restarts of a packager or origins: each carries the run id (random,
 * one per packager start), and media sequence numbers start from the wall clock (seconds since
 * the epoch), so that a player that reloads the same playlist URL after a restart sees them go on
 * forward. Parts are numbered on their own, through the run: the part a preload hint names is the
 * next one whichever segment it falls in.
 */

export interface Part {
  /** The part's number in the run (its URI's). */
  seq: number;
  /** The segment it belongs to, and its place there. */
  msn: number;
  index: number;
  duration: number;
  independent: boolean;
  uri: string;
  /** Its bytes; dropped once the part is no longer listed (the segment's bytes hold them). */
  data: Buffer | undefined;
}

export interface Segment {
  msn: number;
  uri: string;
  parts: Part[];
  duration: number;
  /** Media time of its first sample, seconds. */
  mediaStart: number;
  /** Wall-clock time of its first sample, ms since the epoch (set again while it is being made, as the clock offset settles). */
  programDateTime: number;
  /** Set once the segment is complete. */
  data: Buffer | undefined;
}

export interface LivePlaylistOptions {
  /** The run id in every name. */
  run: string;
  /** Seconds: the longest part (PART-TARGET). */
  partTarget: number;
  /** Seconds: a key frame starts a new segment once the segment is this long. */
  segmentMin: number;
  /** Whole seconds: the longest segment (TARGETDURATION); a segment without a key frame by then is cut anyway. */
  targetDuration: number;
  /** Seconds of segments the playlist lists. */
  window: number;
  /** The wall clock (ms), for the program date-time and the first media sequence number. */
  now?: () => number;
}

/** Where a blocking reload waits to: a segment, or a part of one (RFC 8216bis 6.2.5.2). */
export interface ReloadPoint {
  msn: number;
  part?: number;
}

/**
 * How far ahead a blocking reload may ask: two segments past the last one. Further is a client's
 * mistake (RFC 8216bis 6.2.5.2 says answer 400), not something to hold a connection open for.
 */
const MAX_MSN_AHEAD = 2;

/**
 * EXT-X-PART lines are listed for the last three segments (the one being made counts): RFC 8216bis
 * 4.4.4.9 asks that they go once more than three target durations from the end, and strict
 * parsers (hls-parser) read that as the last three segments. Their bytes are kept a while longer
 * (PART_DATA_TARGETS) for a player that read an older playlist.
 */
const PARTS_LISTED_SEGMENTS = 3;
const PART_DATA_TARGETS = 4;

/** CAN-SKIP-UNTIL, in target durations: six, the least RFC 8216bis 4.4.3.8 allows. */
const SKIP_TARGETS = 6;

type Waiter = { ready: () => boolean; resolve: (ended: boolean) => void };

export interface LivePlaylistEvents {
  /** A part is done (the recorder appends it). */
  part: [segment: Segment, part: Part];
  /** A segment is complete, its bytes in `data`. */
  segment: [segment: Segment];
}

export class LivePlaylist extends EventEmitter<LivePlaylistEvents> {
  readonly run: string;
  readonly partTarget: number;
  readonly targetDuration: number;
  readonly #options: LivePlaylistOptions;
  readonly #now: () => number;
  readonly #segments: Segment[] = [];
  /** The segment being filled (its parts so far), and the part being filled (its fragments). */
  #open: Segment | undefined;
  #openPart: { fragments: Fmp4Fragment[]; duration: number; independent: boolean } | undefined;
  #nextMsn: number;
  #nextPartSeq = 0;
  /** Wall clock minus media time (ms), for the program date-time: the least seen at a fragment's arrival. */
  #clockOffset: number | undefined;
  #waiters: Waiter[] = [];
  #ended = false;
  #endList = false;
  /** Bytes held (segments and listed parts), for the metrics. */
  #bytes = 0;

  constructor(options: LivePlaylistOptions) {
    super();
    if (!(options.partTarget > 0) || !(options.targetDuration >= 1) || !Number.isInteger(options.targetDuration)) {
      throw new TypeError('partTarget must be positive and targetDuration a whole number of seconds');
    }
    this.#options = options;
    this.run = options.run;
    this.partTarget = options.partTarget;
    this.targetDuration = options.targetDuration;
    this.#now = options.now ?? Date.now;
    this.#nextMsn = Math.floor(this.#now() / 1000);
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Whether the stream itself ended (the playlist says EXT-X-ENDLIST), not just its packaging. */
  get streamEnded(): boolean {
    return this.#endList;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The complete segments listed. */
  get segments(): readonly Segment[] {
    return this.#segments;
  }

  /** The media sequence number of the last complete segment, or of the one before the first. */
  get lastMsn(): number {
    return this.#segments.at(-1)?.msn ?? (this.#open?.msn ?? this.#nextMsn) - 1;
  }

  /** PART-HOLD-BACK: three part targets, as RFC 8216bis 4.4.3.8 recommends (two at least). */
  get partHoldBack(): number {
    return 3 * this.partTarget;
  }

  /** Takes the next fragment of the stream (Fmp4Reader's), and publishes what it completes. */
  addFragment(fragment: Fmp4Fragment): void {
    if (this.#ended) return;
    // The playlist starts at a key frame: what comes before (audio ahead of the first picture, a
    // picture that needs an earlier one) is nothing a player can start with.
    if (!this.#open && this.#segments.length === 0 && !fragment.independent) return;
    // Wall clock minus media time: at most the fragment's end's arrival. The least seen is the
    // closest to live (the first fragments may be old, e.g. an RTMP server's cached GOP read at once).
    const offset = this.#now() - (fragment.start + fragment.duration) * 1000;
    if (this.#clockOffset === undefined || offset < this.#clockOffset) {
      this.#clockOffset = offset;
      // The segment being made moves with it: the first fragments of a publish often come in a
      // burst (an RTMP server's cached GOP), which stamped it seconds late.
      if (this.#open) this.#open.programDateTime = Math.round(this.#open.mediaStart * 1000 + offset);
    }
    const open = this.#open;
    const openDuration = (open?.duration ?? 0) + (this.#openPart?.duration ?? 0);
    if (open && ((fragment.independent && openDuration >= this.#options.segmentMin) || openDuration + fragment.duration > this.targetDuration)) {
      this.#closePart();
      this.#closeSegment();
    }
    // (A key frame within a segment does not end a part: the part before it would be short, and
    // parts other than a segment's last must fill 85 % of PART-TARGET.)
    if (this.#openPart && this.#openPart.duration + fragment.duration > this.partTarget) this.#closePart();
    if (!this.#open) {
      const msn = this.#nextMsn++;
      this.#open = {
        msn,
        uri: `seg-${this.run}-${msn}.m4s`,
        parts: [],
        duration: 0,
        mediaStart: fragment.start,
        programDateTime: Math.round(fragment.start * 1000 + this.#clockOffset!),
        data: undefined,
      };
    }
    this.#openPart ??= { fragments: [], duration: 0, independent: fragment.independent };
    this.#openPart.fragments.push(fragment);
    this.#openPart.duration += fragment.duration;
    // The next fragment (about as long as this one) would not fit: the part is done now, not a
    // fragment later.
    if (this.#openPart.duration + fragment.duration > this.partTarget) this.#closePart();
    this.#wake();
  }

  /**
   * No more media: the open segment closes and every wait returns. With `endList` (the stream
   * ended) the playlist says so (EXT-X-ENDLIST); without (the packager stopped), it just stops.
   */
  end(endList = true): void {
    if (this.#ended) return;
    this.#closePart();
    if (this.#open && this.#open.parts.length > 0) this.#closeSegment();
    this.#ended = true;
    this.#endList = endList;
    this.#wake();
  }

  /** A segment's bytes by its URI, if listed and complete. */
  segment(uri: string): Buffer | undefined {
    return this.#segments.find((s) => s.uri === uri)?.data;
  }

  /** A part by its number: now if it is done; undefined if it is gone or will not be. */
  part(seq: number): Part | undefined {
    for (const segment of [...this.#segments.slice(-2 * PART_DATA_TARGETS), ...(this.#open ? [this.#open] : [])]) {
      const part = segment.parts.find((p) => p.seq === seq);
      if (part) return part;
    }
    return undefined;
  }

  /** Whether the part numbered `seq` is the one being made, or the one after (a preload hint's, or the next one's): worth waiting for. */
  partComing(seq: number): boolean {
    return !this.#ended && seq >= this.#nextPartSeq && seq <= this.#nextPartSeq + 1;
  }

  /** Whether a blocking reload to `point` is too far ahead to wait for (a 400). */
  tooFarAhead(point: ReloadPoint): boolean {
    return point.msn > this.lastMsn + 1 + MAX_MSN_AHEAD;
  }

  /** Whether the playlist holds `point`: segment msn complete, or part `part` of it (or a later one) done. */
  holds(point: ReloadPoint): boolean {
    if (this.#ended) return true;
    if (point.part === undefined) return this.lastMsn >= point.msn;
    const last = this.#lastPart();
    return last !== undefined && (last.msn > point.msn || (last.msn === point.msn && last.index >= point.part));
  }

  /**
   * Resolves when `ready()` holds (false) or the stream ended (true), or with undefined after
   * `timeoutMs`.
   */
  waitUntil(ready: () => boolean, timeoutMs: number): Promise<boolean | undefined> {
    if (this.#ended) return Promise.resolve(true);
    if (ready()) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        ready,
        resolve: (ended) => {
          clearTimeout(timer);
          resolve(ended);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        resolve(undefined);
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Wall clock minus media time (ms), as it stands: the least seen so far. */
  get clockOffset(): number | undefined {
    return this.#clockOffset;
  }

  /** The segment being made, with its parts so far (their bytes kept), if any. */
  get open(): Readonly<Segment> | undefined {
    return this.#open;
  }

  /** The segment being made: its parts' bytes and duration so far, and when it began (wall clock, ms). */
  get openSegment(): { bytes: number; duration: number; programDateTime: number | undefined } {
    const parts = this.#open?.parts ?? [];
    return { bytes: parts.reduce((sum, p) => sum + (p.data?.length ?? 0), 0), duration: this.#open?.duration ?? 0, programDateTime: this.#open?.programDateTime };
  }

  /** Where the live edge is: the last part made (its segment's sequence number and its index there). */
  get lastPosition(): { msn: number; part: number } | undefined {
    const last = this.#lastPart();
    return last && { msn: last.msn, part: last.index };
  }

  /**
   * The media playlist; with `skip`, a delta update that leaves out what lies past CAN-SKIP-UNTIL;
   * `reports`: where the stream's other variants are (EXT-X-RENDITION-REPORT), so that a player
   * switching to one asks it for the right part at once.
   */
  render(options: { skip?: boolean; initUri: string; reports?: Array<{ uri: string; position: { msn: number; part: number } | undefined }> }): string {
    const td = this.targetDuration;
    const skipUntil = SKIP_TARGETS * td;
    const segments = this.#segments;
    const first = segments[0]?.msn ?? this.#open?.msn ?? this.#nextMsn;
    const lines = [
      '#EXTM3U',
      '#EXT-X-VERSION:9',
      `#EXT-X-TARGETDURATION:${td}`,
      `#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=${skipUntil.toFixed(1)},PART-HOLD-BACK=${this.partHoldBack.toFixed(3)}`,
      `#EXT-X-PART-INF:PART-TARGET=${this.partTarget.toFixed(3)}`,
      `#EXT-X-MEDIA-SEQUENCE:${first}`,
      `#EXT-X-MAP:URI="${options.initUri}"`,
    ];
    const total = segments.reduce((sum, s) => sum + s.duration, 0) + (this.#open?.duration ?? 0);
    let skipped = 0;
    if (options.skip) {
      let from = 0;
      for (const segment of segments) {
        if (total - from - segment.duration < skipUntil) break;
        from += segment.duration;
        skipped++;
      }
      if (skipped > 0) lines.push(`#EXT-X-SKIP:SKIPPED-SEGMENTS=${skipped}`);
    }
    // Until the end, the playlist's last segment is the one being made, whether it has a part yet
    // or only the preload hint (a strict parser gives the hint a segment of its own then): it counts.
    const partsFrom = segments.length + (this.#ended ? 0 : 1) - PARTS_LISTED_SEGMENTS;
    segments.forEach((segment, i) => {
      const listedParts = i >= partsFrom;
      if (i < skipped) return;
      lines.push(`#EXT-X-PROGRAM-DATE-TIME:${new Date(segment.programDateTime).toISOString()}`);
      if (listedParts) for (const part of segment.parts) lines.push(partLine(part));
      lines.push(`#EXTINF:${segment.duration.toFixed(5)},`, segment.uri);
    });
    if (this.#open) {
      if (this.#open.parts.length > 0) lines.push(`#EXT-X-PROGRAM-DATE-TIME:${new Date(this.#open.programDateTime).toISOString()}`);
      for (const part of this.#open.parts) lines.push(partLine(part));
    }
    if (this.#endList) lines.push('#EXT-X-ENDLIST');
    else if (!this.#ended) lines.push(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="${this.#partUri(this.#nextPartSeq)}"`);
    for (const { uri, position } of options.reports ?? []) {
      if (position) lines.push(`#EXT-X-RENDITION-REPORT:URI="${uri}",LAST-MSN=${position.msn},LAST-PART=${position.part}`);
    }
    return `${lines.join('\n')}\n`;
  }

  #partUri(seq: number): string {
    return `part-${this.run}-${seq}.m4s`;
  }

  #lastPart(): Part | undefined {
    return this.#open?.parts.at(-1) ?? this.#segments.at(-1)?.parts.at(-1);
  }

  #closePart(): void {
    const open = this.#openPart;
    const segment = this.#open;
    this.#openPart = undefined;
    if (!open || !segment) return;
    const seq = this.#nextPartSeq++;
    const data = Buffer.concat(open.fragments.map((f) => f.data));
    const part: Part = { seq, msn: segment.msn, index: segment.parts.length, duration: open.duration, independent: open.independent, uri: this.#partUri(seq), data };
    segment.parts.push(part);
    segment.duration += open.duration;
    this.#bytes += data.length;
    this.emit('part', segment, part);
  }

  #closeSegment(): void {
    const segment = this.#open;
    this.#open = undefined;
    if (!segment || segment.parts.length === 0) return;
    segment.data = Buffer.concat(segment.parts.map((p) => p.data!));
    this.#bytes += segment.data.length;
    this.#segments.push(segment);
    this.#trim();
    this.emit('segment', segment);
  }

  /** Drops segments older than the window, and the bytes of parts no longer listed. */
  #trim(): void {
    const total = () => this.#segments.reduce((sum, s) => sum + s.duration, 0);
    while (this.#segments.length > 1 && total() - this.#segments[0]!.duration >= this.#options.window) {
      const dropped = this.#segments.shift()!;
      this.#bytes -= dropped.data?.length ?? 0;
      for (const part of dropped.parts) this.#bytes -= part.data?.length ?? 0;
    }
    let fromEnd = 0;
    for (let i = this.#segments.length - 1; i >= 0; i--) {
      const segment = this.#segments[i]!;
      fromEnd += segment.duration;
      if (fromEnd <= PART_DATA_TARGETS * this.targetDuration) continue;
      for (const part of segment.parts) {
        this.#bytes -= part.data?.length ?? 0;
        part.data = undefined;
      }
    }
  }

  #wake(): void {
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiting) {
      if (this.#ended) waiter.resolve(true);
      else if (waiter.ready()) waiter.resolve(false);
      else this.#waiters.push(waiter);
    }
  }
}

function partLine(part: Part): string {
  return `#EXT-X-PART:DURATION=${part.duration.toFixed(5)},URI="${part.uri}"${part.independent ? ',INDEPENDENT=YES' : ''}`;
}
