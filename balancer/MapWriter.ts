/**
 * HAProxy map file text (`cidr region` lines), written straight into a buffer rather than as a
 * million small strings (the garbage of which cost the geo map more than its walk): one growing
 * buffer, or, given a sink, a buffer of SINK_CHUNK_BYTES handed to the sink each time it fills (the
 * map process writes its file so, without ever holding the whole map).
 */

/** What the buffer starts at (the bundled database's maps are 10–40 MB); it doubles when full. */
const INITIAL_BYTES = 1 << 20;
/** What a sink is handed at a time. */
const SINK_CHUNK_BYTES = 1 << 20;
/** The longest line a prefix can make: an IPv6 address, "/128", a space, and a newline. */
const MAX_PREFIX_BYTES = 39 + 4 + 2;

export class MapWriter {
  #buffer = Buffer.allocUnsafeSlow(Math.max(INITIAL_BYTES, SINK_CHUNK_BYTES));
  #length = 0;
  #lines = 0;
  /** Per region code: " name\n". */
  readonly #suffixes: Buffer[];
  readonly #sink: ((bytes: Buffer) => void) | undefined;

  /** `sink`: called with each full chunk of the text (a view, to be used before it returns); unset: finish() returns it all. */
  constructor(regionNames: readonly string[], header: string, sink?: (bytes: Buffer) => void) {
    this.#sink = sink;
    if (!Array.isArray(regionNames) || regionNames.some((n) => typeof n !== 'string' || /\s/.test(n))) throw new TypeError('region names are strings without spaces');
    this.#suffixes = regionNames.map((name) => Buffer.from(` ${name}\n`, 'latin1'));
    this.#text(header);
  }

  /** Lines written (the header aside). */
  get lines(): number {
    return this.#lines;
  }

  /** An IPv4 prefix: the address as one 32-bit word. */
  ipv4(word: number, length: number, code: number): void {
    this.#room(MAX_PREFIX_BYTES + this.#suffixes[code]!.length);
    for (let shift = 24; shift >= 0; shift -= 8) {
      this.#number((word >>> shift) & 255);
      this.#buffer[this.#length++] = shift > 0 ? 0x2e : 0x2f; // '.' or '/'
    }
    this.#end(length, code);
  }

  /** An IPv6 prefix, its address already as text. */
  ipv6(address: string, length: number, code: number): void {
    this.#room(MAX_PREFIX_BYTES + this.#suffixes[code]!.length);
    this.#length += this.#buffer.write(address, this.#length, 'latin1');
    this.#buffer[this.#length++] = 0x2f; // '/'
    this.#end(length, code);
  }

  /** The map's bytes (with a sink: what was not handed to it yet, handed now, and none); the writer is done. */
  finish(): Buffer {
    if (this.#sink) {
      if (this.#length > 0) this.#sink(this.#buffer.subarray(0, this.#length));
      this.#length = 0;
    }
    const done = this.#buffer.subarray(0, this.#length);
    this.#buffer = Buffer.alloc(0);
    return done;
  }

  #end(length: number, code: number): void {
    this.#number(length);
    const suffix = this.#suffixes[code]!;
    suffix.copy(this.#buffer, this.#length);
    this.#length += suffix.length;
    this.#lines++;
  }

  #number(n: number): void {
    if (n >= 100) this.#buffer[this.#length++] = 0x30 + Math.floor(n / 100);
    if (n >= 10) this.#buffer[this.#length++] = 0x30 + (Math.floor(n / 10) % 10);
    this.#buffer[this.#length++] = 0x30 + (n % 10);
  }

  #text(text: string): void {
    const bytes = Buffer.from(text, 'utf8');
    this.#room(bytes.length);
    bytes.copy(this.#buffer, this.#length);
    this.#length += bytes.length;
  }

  #room(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    if (this.#sink && this.#length > 0) {
      this.#sink(this.#buffer.subarray(0, this.#length));
      this.#length = 0;
      if (bytes <= this.#buffer.length) return;
    }
    const grown = Buffer.allocUnsafeSlow(Math.max(this.#buffer.length * 2, this.#length + bytes));
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}
