import { createRequire } from 'node:module';
import type metadataExports from 'mmdb-lib/lib/metadata.js';
import { ConfigError } from '../core/errors.ts';
import { PagedFile } from './PagedFile.ts';
import type { Position } from '../core/geo.ts';

/**
 * One .mmdb file (the MaxMind DB format 2.0, https://maxmind.github.io/MaxMind-DB/), read through
 * PagedFile rather than held in memory: its search tree, node by node, for walking every network
 * in it (GeoMapBuilder) or looking one address up (GeoLocator), and its data records. The tree has
 * `node_count` nodes of two records each (left: the next address bit is 0, right: 1), a record
 * being another node (< node_count), "no data" (= node_count) or a pointer into the data section
 * (> node_count). Lookups and records decode as mmdb-lib (what the maxmind package reads with)
 * decodes them, type by type; its metadata parser is used as it is.
 */

/** mmdb-lib's metadata parser (CommonJS), required the same way however this file is loaded. */
const { parseMetadata } = createRequire(import.meta.url)('mmdb-lib/lib/metadata.js') as typeof metadataExports;

/** The 16 zero bytes between the search tree and the data section (the format's separator). */
const DATA_SECTION_SEPARATOR = 16;
/** Bits of an IPv6 address before its IPv4 part: IPv4 lives at ::/96 of an IPv6 tree. */
const IPV4_IN_IPV6_DEPTH = 96;
/** The metadata is within the file's last 128 KiB (the format's bound). */
const METADATA_MAX_BYTES = 128 * 1024;
/** What pointers of each size add to their packed value (the format's rule). */
const POINTER_BASE = [0, 2048, 526336, 0];

/** How the search tree and the data section are each read: pages of `pageBytes`, at most `cacheBytes` of them kept. */
export interface MmdbReadOptions {
  tree: { pageBytes: number; cacheBytes: number };
  data: { pageBytes: number; cacheBytes: number };
}

/**
 * Lookups (GeoLocator): small pages, so that a lookup reads little; 6 MB of the tree's most recent
 * kept (its top, which every lookup crosses, stays in) and 2 MB of the data's.
 */
export const LOOKUP_READS: MmdbReadOptions = { tree: { pageBytes: 4096, cacheBytes: 6 << 20 }, data: { pageBytes: 4096, cacheBytes: 2 << 20 } };
/**
 * A map build (GeoMapBuilder) walks the tree from its first node to its last, in order (large pages,
 * few kept), and decodes each record it meets once, here and there in the data section (small
 * pages, 4 MB of them kept: records met together mostly lie together).
 */
export const BUILD_READS: MmdbReadOptions = { tree: { pageBytes: 64 << 10, cacheBytes: 1 << 20 }, data: { pageBytes: 4096, cacheBytes: 4 << 20 } };

/** A record's position, in either shape; undefined when it has none (the next database is asked). */
export function recordPosition(record: unknown): { lat: number; lon: number } | undefined {
  if (!record || typeof record !== 'object') return undefined;
  const r = record as { latitude?: number; longitude?: number; location?: { latitude?: number; longitude?: number } };
  const lat = r.latitude ?? r.location?.latitude;
  const lon = r.longitude ?? r.location?.longitude;
  return lat === undefined || lon === undefined ? undefined : { lat, lon };
}

export class MmdbTree {
  readonly path: string;
  /** 4: an IPv4-only tree; 6: an IPv6 tree, which may hold IPv4 at ::/96. */
  readonly ipVersion: 4 | 6;
  readonly nodeCount: number;
  /**
   * The record IPv4 addresses start from, as mmdb-lib looks them up: the root of an IPv4 tree, the
   * record reached by 96 zero bits in an IPv6 one (a node, "no data", or one record for all IPv4).
   */
  readonly ipv4Root: number;
  readonly #file: PagedFile;
  readonly #data: PagedFile;
  readonly #recordSize: 24 | 28 | 32;
  readonly #nodeBytes: number;
  readonly #searchTreeSize: number;
  /** Where pointers in the data section count from: the data section's start in the file. */
  readonly #dataStart: number;
  /** A node's bytes when they straddle two pages. */
  readonly #scratch = Buffer.alloc(8);
  /** Where #node's answer starts in the bytes it returned. */
  #at = 0;

  private constructor(path: string, file: PagedFile, data: PagedFile) {
    let metadata: ReturnType<typeof parseMetadata>;
    try {
      metadata = parseMetadata(file.bytes(Math.max(0, file.size - METADATA_MAX_BYTES), Math.min(file.size, METADATA_MAX_BYTES)));
    } catch (error) {
      throw new ConfigError('geoDatabase', `cannot read ${path}: ${(error as Error).message}`);
    }
    const { recordSize, ipVersion, nodeCount, nodeByteSize, searchTreeSize } = metadata;
    if (recordSize !== 24 && recordSize !== 28 && recordSize !== 32) throw new ConfigError('geoDatabase', `${path}: unsupported record size ${recordSize}`);
    if (ipVersion !== 4 && ipVersion !== 6) throw new ConfigError('geoDatabase', `${path}: unsupported ip_version ${ipVersion}`);
    if (nodeCount * nodeByteSize !== searchTreeSize || searchTreeSize + DATA_SECTION_SEPARATOR > file.size) throw new ConfigError('geoDatabase', `${path}: search tree larger than the file`);
    this.path = path;
    this.#file = file;
    this.#data = data;
    this.#recordSize = recordSize;
    this.#nodeBytes = nodeByteSize;
    this.#searchTreeSize = searchTreeSize;
    this.#dataStart = searchTreeSize + DATA_SECTION_SEPARATOR;
    this.ipVersion = ipVersion;
    this.nodeCount = nodeCount;
    let root = 0;
    for (let depth = 0; ipVersion === 6 && depth < IPV4_IN_IPV6_DEPTH && root < nodeCount; depth++) root = this.left(root);
    this.ipv4Root = root;
  }

  /** Opens `path` (read as `reads` says: LOOKUP_READS unless told otherwise). */
  static async open(path: string, reads: MmdbReadOptions = LOOKUP_READS): Promise<MmdbTree> {
    if (typeof path !== 'string' || !path) throw new TypeError('an .mmdb path is required');
    const files: PagedFile[] = [];
    try {
      for (const { pageBytes, cacheBytes } of [reads.tree, reads.data]) files.push(new PagedFile(path, pageBytes, cacheBytes));
    } catch (error) {
      for (const file of files) file.close();
      throw new ConfigError('geoDatabase', `cannot open ${path}: ${(error as Error).message}`);
    }
    try {
      return new MmdbTree(path, files[0]!, files[1]!);
    } catch (error) {
      for (const file of files) file.close();
      throw error;
    }
  }

  isNode(record: number): boolean {
    return record < this.nodeCount;
  }

  /** The record for bit 0 after `node`. */
  left(node: number): number {
    const db = this.#node(node);
    const at = this.#at;
    switch (this.#recordSize) {
      case 24:
        return (db[at]! << 16) | (db[at + 1]! << 8) | db[at + 2]!;
      case 28:
        return (db[at + 3]! >> 4) * 0x1000000 + ((db[at]! << 16) | (db[at + 1]! << 8) | db[at + 2]!);
      case 32:
        return db.readUInt32BE(at);
    }
  }

  /** The record for bit 1 after `node`. */
  right(node: number): number {
    const db = this.#node(node);
    const at = this.#at;
    switch (this.#recordSize) {
      case 24:
        return (db[at + 3]! << 16) | (db[at + 4]! << 8) | db[at + 5]!;
      case 28:
        return (db[at + 3]! & 0x0f) * 0x1000000 + ((db[at + 4]! << 16) | (db[at + 5]! << 8) | db[at + 6]!);
      case 32:
        return db.readUInt32BE(at + 4);
    }
  }

  /**
   * The data record an address (its bytes: 4 for IPv4, 16 for IPv6) leads to, as mmdb-lib's
   * Reader finds it: > nodeCount, or 0 when the tree has no data for it.
   */
  lookup(address: ArrayLike<number>): number {
    const bits = address.length * 8;
    let record = address.length === 4 ? this.ipv4Root : 0;
    for (let depth = 0; depth < bits && record < this.nodeCount; depth++) {
      const bit = (address[depth >> 3]! >> (7 - (depth & 7))) & 1;
      record = bit ? this.right(record) : this.left(record);
    }
    return record > this.nodeCount ? record : 0;
  }

  /** The data record `record` points to (> nodeCount), decoded. */
  record(record: number): unknown {
    // The format's own rule: the file offset is the record value − node_count + the tree's size.
    return this.#decode(record - this.nodeCount + this.#searchTreeSize)[0];
  }

  /**
   * The position of the data record `record` points to (> nodeCount); undefined when it has none.
   * Only the fields recordPosition reads are decoded (a map build reads 700,000 records: their
   * names and codes decoded too were most of the build's garbage); the others are stepped over.
   */
  position(record: number): Position | undefined {
    const file = this.#data;
    let at = record - this.nodeCount + this.#searchTreeSize;
    let control = file.byte(at);
    if (control >> 5 === 1) [at, control] = [this.#pointer(at), file.byte(this.#pointer(at))];
    if (control >> 5 !== 7) return recordPosition(this.#decode(at)[0]);
    const [size, start] = this.#header(at);
    at = start;
    const fields: Record<string, unknown> = {};
    for (let i = 0; i < size; i++) {
      const [key, next] = this.#decode(at);
      if (key === 'latitude' || key === 'longitude' || key === 'location') [fields[key], at] = this.#decode(next);
      else at = this.#skip(next);
    }
    return recordPosition(fields);
  }

  /** Bytes from the data section's start to the file's end: a bound on (record − nodeCount − 16). */
  get dataBytes(): number {
    return this.#file.size - this.#dataStart;
  }

  /** Lets the file go (the tree cannot be read after). */
  close(): void {
    this.#file.close();
    this.#data.close();
  }

  /** The bytes holding `node` (its page), with where in them it starts in #at (no pair allocated: millions of calls a build). */
  #node(node: number): Buffer {
    const file = this.#file;
    const at = node * this.#nodeBytes;
    const index = Math.floor(at / file.pageBytes);
    const within = at - index * file.pageBytes;
    if (within + this.#nodeBytes <= file.pageBytes) {
      this.#at = within;
      return file.page(index);
    }
    file.bytes(at, this.#nodeBytes).copy(this.#scratch);
    this.#at = 0;
    return this.#scratch;
  }

  /** Where the pointer at `at` points (a file offset). */
  #pointer(at: number): number {
    const file = this.#data;
    const control = file.byte(at++);
    const size = (control >> 3) & 3;
    const packed = size === 3 ? file.uint(at, 4) : (control & 7) * 2 ** (8 * (size + 1)) + file.uint(at, size + 1);
    return this.#dataStart + POINTER_BASE[size]! + packed;
  }

  /** A value's size field (of a map, its pairs; of an array, its items) and where its payload starts: `at` is its control byte, not a pointer. */
  #header(at: number): [number, number] {
    const control = this.#data.byte(at++);
    if (control >> 5 === 0) at++;
    return this.#size(control, at);
  }

  /** The size a control byte encodes, with the 1–3 bytes that follow it at `at` when it needs them, and where the payload starts. */
  #size(control: number, at: number): [number, number] {
    const file = this.#data;
    const size = control & 0x1f;
    if (size === 29) return [29 + file.byte(at), at + 1];
    if (size === 30) return [285 + file.uint(at, 2), at + 2];
    if (size === 31) return [65821 + file.uint(at, 3), at + 3];
    return [size, at];
  }

  /** The offset after the value at `at`, decoding nothing (a pointer is stepped over, not followed). Bounded by the file. */
  #skip(at: number): number {
    const file = this.#data;
    const control = file.byte(at);
    let type = control >> 5;
    if (type === 1) return at + 2 + ((control >> 3) & 3);
    if (type === 0) type = file.byte(at + 1) + 7;
    const [size, start] = this.#header(at);
    let next = start;
    switch (type) {
      case 7:
        for (let i = 0; i < 2 * size; i++) next = this.#skip(next);
        return next;
      case 11:
        for (let i = 0; i < size; i++) next = this.#skip(next);
        return next;
      case 14:
        return next;
      default:
        return next + size;
    }
  }

  /** The value at file offset `at` and the offset after it: mmdb-lib's Decoder.decode, type by type. Bounded by the file. */
  #decode(at: number): [unknown, number] {
    const file = this.#data;
    const control = file.byte(at++);
    let type = control >> 5;
    if (type === 1) {
      // A pointer: 001SSVVV, then SS + 1 bytes; the value there is decoded in place of this one.
      const size = (control >> 3) & 3;
      const packed = size === 3 ? file.uint(at, 4) : (control & 7) * 2 ** (8 * (size + 1)) + file.uint(at, size + 1);
      return [this.#decode(this.#dataStart + POINTER_BASE[size]! + packed)[0], at + size + 1];
    }
    if (type === 0) {
      type = file.byte(at++) + 7;
      if (type < 8) throw new Error(`${this.path}: invalid extended type at offset ${at - 1}`);
    }
    let size: number;
    [size, at] = this.#size(control, at);
    switch (type) {
      case 2: // UTF-8 string
        return [file.utf8(at, size), at + size];
      case 3: // double
        return [file.double(at), at + size];
      case 4: // bytes
        return [Buffer.from(file.bytes(at, size)), at + size];
      case 5: // uint16
      case 6: // uint32
        if (size > 4) throw new Error(`Invalid size for unsigned integer: ${size}`);
        return [size === 0 ? 0 : file.uint(at, size), at + size];
      case 7: {
        // map: keys and values, as many pairs as its size (a repeated key: the last one counts)
        const map: Record<string, unknown> = {};
        for (let i = 0; i < size; i++) {
          const [key, next] = this.#decode(at);
          const [value, after] = this.#decode(next);
          map[key as string] = value;
          at = after;
        }
        return [map, at];
      }
      case 8: // int32 (mmdb-lib reads fewer than 4 bytes unsigned)
        return [size === 0 ? 0 : size < 4 ? file.uint(at, size) : file.uint(at, 4) | 0, at + size];
      case 9: // uint64
      case 10: {
        // uint128
        if (size > 16) throw new Error(`Invalid size for big unsigned integer: ${size}`);
        let integer = 0n;
        for (const byte of file.bytes(at, size)) integer = (integer << 8n) | BigInt(byte);
        return [integer, at + size];
      }
      case 11: {
        // array
        const array: unknown[] = new Array(size);
        for (let i = 0; i < size; i++) [array[i], at] = this.#decode(at);
        return [array, at];
      }
      case 14: // boolean: the size is the value
        return [size !== 0, at];
      case 15: // float
        return [file.float(at), at + size];
    }
    throw new Error(`Unknown type ${type} at offset ${at}`);
  }
}
