import type { HlsAnswer } from '../media/hls/hlsFiles.ts';

/**
 * An edge's HLS cache: answers kept in memory up to a number of bytes (least recently used
 * evicted first), each for as long as its Cache-Control lets a shared cache keep it, and request
 * coalescing: however many viewers ask for a URL at once, and that includes a blocking playlist
 * reload that waits upstream for the next part, one request goes upstream and they all get its
 * answer. Only 200s are kept; a failure is every waiter's, and the next request asks again.
 */

export type CacheOutcome = 'hit' | 'coalesced' | 'miss';

interface Kept {
  answer: HlsAnswer;
  expires: number;
  bytes: number;
}

/** Bytes counted for an entry beyond its body: its key, headers and bookkeeping. */
const ENTRY_OVERHEAD = 256;

/** How long an answer is fresh (ms), from its Cache-Control: max-age, 0 when it says no-store/no-cache/private or nothing. */
export function freshFor(cacheControl: string | undefined): number {
  if (!cacheControl || /\b(no-store|no-cache|private)\b/.test(cacheControl)) return 0;
  const maxAge = /\bs-maxage=(\d+)/.exec(cacheControl) ?? /\bmax-age=(\d+)/.exec(cacheControl);
  return maxAge ? Number(maxAge[1]) * 1000 : 0;
}

export class HlsCache {
  readonly maxBytes: number;
  /** Map order is recency: a hit moves its entry to the end, eviction takes from the start. */
  readonly #kept = new Map<string, Kept>();
  readonly #inFlight = new Map<string, Promise<HlsAnswer>>();
  readonly #now: () => number;
  #bytes = 0;

  constructor(maxBytes: number, now: () => number = Date.now) {
    if (!Number.isInteger(maxBytes) || maxBytes <= 0) throw new TypeError('maxBytes must be a positive integer');
    this.maxBytes = maxBytes;
    this.#now = now;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get entries(): number {
    return this.#kept.size;
  }

  /** The answer for `key`: kept and fresh, or that of a fetch under way, or `fetch()`'s. */
  async get(key: string, fetch: () => Promise<HlsAnswer>): Promise<{ answer: HlsAnswer; outcome: CacheOutcome }> {
    const kept = this.#kept.get(key);
    if (kept && kept.expires > this.#now()) {
      this.#kept.delete(key);
      this.#kept.set(key, kept);
      return { answer: kept.answer, outcome: 'hit' };
    }
    if (kept) this.#drop(key, kept);
    const pending = this.#inFlight.get(key);
    if (pending) return { answer: await pending, outcome: 'coalesced' };
    const started = fetch().then((answer) => {
      this.#keep(key, answer);
      return answer;
    });
    this.#inFlight.set(key, started);
    try {
      return { answer: await started, outcome: 'miss' };
    } finally {
      this.#inFlight.delete(key);
    }
  }

  #keep(key: string, answer: HlsAnswer): void {
    const ttl = answer.status === 200 ? freshFor(answer.headers['cache-control']) : 0;
    const bytes = answer.body.length + key.length + ENTRY_OVERHEAD;
    if (ttl <= 0 || bytes > this.maxBytes) return;
    const previous = this.#kept.get(key);
    if (previous) this.#drop(key, previous);
    this.#kept.set(key, { answer, expires: this.#now() + ttl, bytes });
    this.#bytes += bytes;
    for (const [oldest, entry] of this.#kept) {
      if (this.#bytes <= this.maxBytes) break;
      this.#drop(oldest, entry);
    }
  }

  #drop(key: string, entry: Kept): void {
    this.#kept.delete(key);
    this.#bytes -= entry.bytes;
  }
}
