import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Reader } from 'maxmind';
import type decoderExports from 'mmdb-lib/lib/decoder.js';
import { ConfigError } from '../core/errors.ts';
import { recordPosition } from './GeoLocator.ts';
import type { Position } from './policies.ts';

/**
 * One .mmdb file's search tree, read node by node, for walking every network in it (the MaxMind DB
 * format 2.0, https://maxmind.github.io/MaxMind-DB/): `node_count` nodes of two records each (left:
 * the next address bit is 0, right: 1), a record being another node (< node_count), "no data"
 * (= node_count) or a pointer into the data section (> node_count). mmdb-lib, which GeoLocator
 * looks addresses up with, enumerates no networks; its metadata parser (Reader.metadata) and its
 * data decoder are used here, so that a record decodes exactly as a lookup decodes it.
 */

/** mmdb-lib's decoder (CommonJS, exports.default), required the same way however this file is loaded. */
const { default: Decoder } = createRequire(import.meta.url)('mmdb-lib/lib/decoder.js') as typeof decoderExports;

/** The 16 zero bytes between the search tree and the data section (the format's separator). */
const DATA_SECTION_SEPARATOR = 16;
/** Bits of an IPv6 address before its IPv4 part: IPv4 lives at ::/96 of an IPv6 tree. */
const IPV4_IN_IPV6_DEPTH = 96;

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
  readonly #db: Buffer;
  readonly #recordSize: 24 | 28 | 32;
  readonly #nodeBytes: number;
  readonly #searchTreeSize: number;
  readonly #decoder: InstanceType<typeof Decoder>;
  /** Data pointer → the record's position (null: none). Many networks share one record. */
  readonly #positions = new Map<number, Position | null>();

  private constructor(path: string, db: Buffer) {
    let metadata: Reader<never>['metadata'];
    try {
      metadata = new Reader<never>(db).metadata;
    } catch (error) {
      throw new ConfigError('geoDatabase', `cannot read ${path}: ${(error as Error).message}`);
    }
    const { recordSize, ipVersion, nodeCount, nodeByteSize, searchTreeSize } = metadata;
    if (recordSize !== 24 && recordSize !== 28 && recordSize !== 32) throw new ConfigError('geoDatabase', `${path}: unsupported record size ${recordSize}`);
    if (ipVersion !== 4 && ipVersion !== 6) throw new ConfigError('geoDatabase', `${path}: unsupported ip_version ${ipVersion}`);
    if (nodeCount * nodeByteSize !== searchTreeSize || searchTreeSize + DATA_SECTION_SEPARATOR > db.length) throw new ConfigError('geoDatabase', `${path}: search tree larger than the file`);
    this.path = path;
    this.#db = db;
    this.#recordSize = recordSize;
    this.#nodeBytes = nodeByteSize;
    this.#searchTreeSize = searchTreeSize;
    this.ipVersion = ipVersion;
    this.nodeCount = nodeCount;
    this.#decoder = new Decoder(db, searchTreeSize + DATA_SECTION_SEPARATOR);
    let root = 0;
    for (let depth = 0; ipVersion === 6 && depth < IPV4_IN_IPV6_DEPTH && root < nodeCount; depth++) root = this.left(root);
    this.ipv4Root = root;
  }

  static async open(path: string): Promise<MmdbTree> {
    if (typeof path !== 'string' || !path) throw new TypeError('an .mmdb path is required');
    let db: Buffer;
    try {
      db = await readFile(path);
    } catch (error) {
      throw new ConfigError('geoDatabase', `cannot open ${path}: ${(error as Error).message}`);
    }
    return new MmdbTree(path, db);
  }

  isNode(record: number): boolean {
    return record < this.nodeCount;
  }

  /** The record for bit 0 after `node`. */
  left(node: number): number {
    const db = this.#db;
    const at = node * this.#nodeBytes;
    switch (this.#recordSize) {
      case 24:
        return (db[at]! << 16) | (db[at + 1]! << 8) | db[at + 2]!;
      case 28:
        return ((db[at + 3]! >> 4) * 0x1000000 + ((db[at]! << 16) | (db[at + 1]! << 8) | db[at + 2]!));
      case 32:
        return db.readUInt32BE(at);
    }
  }

  /** The record for bit 1 after `node`. */
  right(node: number): number {
    const db = this.#db;
    const at = node * this.#nodeBytes;
    switch (this.#recordSize) {
      case 24:
        return (db[at + 3]! << 16) | (db[at + 4]! << 8) | db[at + 5]!;
      case 28:
        return ((db[at + 3]! & 0x0f) * 0x1000000 + ((db[at + 4]! << 16) | (db[at + 5]! << 8) | db[at + 6]!));
      case 32:
        return db.readUInt32BE(at + 4);
    }
  }

  /** The position of the data record `record` points to (> nodeCount); undefined when it has none. */
  position(record: number): Position | undefined {
    let found = this.#positions.get(record);
    if (found === undefined) {
      // The format's own rule: the file offset is the record value − node_count + the tree's size.
      found = recordPosition(this.#decoder.decodeFast(record - this.nodeCount + this.#searchTreeSize).value) ?? null;
      this.#positions.set(record, found);
    }
    return found ?? undefined;
  }

  /** Bytes from the data section's start to the file's end: a bound on (record − nodeCount − 16). */
  get dataBytes(): number {
    return this.#db.length - this.#searchTreeSize - DATA_SECTION_SEPARATOR;
  }

  /** Distinct data records decoded so far. */
  get records(): number {
    return this.#positions.size;
  }
}
