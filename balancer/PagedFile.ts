import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * A read-only file read in pages on demand (positional reads), with the pages last used kept in
 * memory, up to a bound (the least recently used go first): what GeoLocator and GeoMapBuilder read the .mmdb databases through, so that
 * neither holds a copy of a whole database (the bundled two are 134 MB; a lookup reads a few
 * kilobytes of them, a map build walks them from start to end). The kernel's page cache holds the
 * file, shared by every process that reads it and not counted in any one's resident memory.
 */

export class PagedFile {
  readonly path: string;
  /** The file's size in bytes. */
  readonly size: number;
  readonly pageBytes: number;
  #fd: number | undefined;
  readonly #maxPages: number;
  /** Page number → its bytes and when it was last used (a count of page switches). */
  readonly #pages = new Map<number, { bytes: Buffer; used: number }>();
  #tick = 0;
  /** Full-size pages let go, to be read into again (a build reads thousands: not one allocation each). */
  readonly #free: Buffer[] = [];
  /** The page read last (most reads fall in it: a walk goes on where it stopped). */
  #lastIndex = -1;
  #last: Buffer = Buffer.alloc(0);

  /** `pageBytes`: a power of two; `cacheBytes`: how much of the file is kept at most. */
  constructor(path: string, pageBytes: number, cacheBytes: number) {
    if (!Number.isInteger(Math.log2(pageBytes))) throw new TypeError(`page size ${pageBytes} is not a power of two`);
    this.path = path;
    this.pageBytes = pageBytes;
    this.#maxPages = Math.max(2, Math.floor(cacheBytes / pageBytes));
    this.#fd = openSync(path, 'r');
    try {
      this.size = fstatSync(this.#fd).size;
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /** The page holding byte `at` (its bytes start at page × pageBytes; the last page may be short). */
  page(index: number): Buffer {
    if (index === this.#lastIndex) return this.#last;
    const held = this.#pages.get(index);
    let page: Buffer;
    if (held) {
      held.used = ++this.#tick;
      page = held.bytes;
    } else {
      if (this.#fd === undefined) throw new Error(`${this.path} is closed`);
      const start = index * this.pageBytes;
      if (start >= this.size || start < 0) throw new RangeError(`${this.path}: offset ${start} is past the end (${this.size} bytes)`);
      const length = Math.min(this.pageBytes, this.size - start);
      page = (length === this.pageBytes ? this.#free.pop() : undefined) ?? Buffer.allocUnsafeSlow(length);
      let done = 0;
      while (done < page.length) {
        const n = readSync(this.#fd, page, done, page.length - done, start + done);
        if (n === 0) throw new Error(`${this.path}: the file shrank while it was read`);
        done += n;
      }
      if (this.#pages.size >= this.#maxPages) this.#evict();
      this.#pages.set(index, { bytes: page, used: ++this.#tick });
    }
    this.#lastIndex = index;
    this.#last = page;
    return page;
  }

  /** The byte at `at`. */
  byte(at: number): number {
    return this.page(Math.floor(at / this.pageBytes))[at % this.pageBytes]!;
  }

  /** `length` bytes from `at`: a view of the page when they lie in one, else a copy. */
  bytes(at: number, length: number): Buffer {
    if (at < 0 || length < 0 || at + length > this.size) throw new RangeError(`${this.path}: bytes ${at}..${at + length} are outside the file (${this.size} bytes)`);
    const index = Math.floor(at / this.pageBytes);
    const within = at - index * this.pageBytes;
    if (within + length <= this.pageBytes) return this.page(index).subarray(within, within + length);
    const out = Buffer.allocUnsafe(length);
    for (let done = 0; done < length; ) {
      const p = Math.floor((at + done) / this.pageBytes);
      const from = at + done - p * this.pageBytes;
      done += this.page(p).copy(out, done, from, Math.min(this.pageBytes, from + length - done));
    }
    return out;
  }

  /** An unsigned big-endian integer of `length` (≤ 6) bytes at `at`. */
  uint(at: number, length: number): number {
    const index = Math.floor(at / this.pageBytes);
    const within = at - index * this.pageBytes;
    if (within + length <= this.pageBytes) return this.page(index).readUIntBE(within, length);
    return this.bytes(at, length).readUIntBE(0, length);
  }

  /** The 8-byte big-endian double at `at`. */
  double(at: number): number {
    const index = Math.floor(at / this.pageBytes);
    const within = at - index * this.pageBytes;
    return within + 8 <= this.pageBytes ? this.page(index).readDoubleBE(within) : this.bytes(at, 8).readDoubleBE(0);
  }

  /** The 4-byte big-endian float at `at`. */
  float(at: number): number {
    const index = Math.floor(at / this.pageBytes);
    const within = at - index * this.pageBytes;
    return within + 4 <= this.pageBytes ? this.page(index).readFloatBE(within) : this.bytes(at, 4).readFloatBE(0);
  }

  /** `length` bytes at `at` as UTF-8 text. */
  utf8(at: number, length: number): string {
    const index = Math.floor(at / this.pageBytes);
    const within = at - index * this.pageBytes;
    return within + length <= this.pageBytes ? this.page(index).toString('utf8', within, within + length) : this.bytes(at, length).toString('utf8');
  }

  /** Pages held now. */
  get cachedPages(): number {
    return this.#pages.size;
  }

  /** Lets the least recently used quarter of the pages go (at once: a scan per page read would cost more). */
  #evict(): void {
    const used = [...this.#pages.values()].map((p) => p.used).sort((a, b) => a - b);
    const below = used[Math.floor(used.length / 4)]!;
    for (const [index, page] of this.#pages) {
      if (page.used >= below) continue;
      this.#pages.delete(index);
      if (page.bytes.length === this.pageBytes && index !== this.#lastIndex) this.#free.push(page.bytes);
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#pages.clear();
    this.#free.length = 0;
    this.#lastIndex = -1;
    this.#last = Buffer.alloc(0);
  }
}
