import ipaddr from 'ipaddr.js';
import { REGION, type GeoPin } from '../core/geoPins.ts';
import { parseRange } from '../core/TrustedProxies.ts';
import type { MmdbTree } from './MmdbTree.ts';
import { NearestRegion } from './NearestRegion.ts';
import type { Position } from '../core/geo.ts';
import { MapWriter } from './MapWriter.ts';
import { MUST_MISS, NO_ENTRY, PrefixTable } from './PrefixTable.ts';
import { EMPTY, PrefixTrie } from './PrefixTrie.ts';

/**
 * Writes HAProxy's geo map (`cidr region` lines for map_ip) so that HAProxy sends every client
 * address to the region the route API would choose for it: GeoLocator.locate (the first pin that
 * holds the address, else the first database with a position for it, else the default region),
 * then the nearest region by regionsByDistance. It walks the databases' search trees and the pins
 * side by side, bit by bit, from the root; where one source decides a whole subtree, the subtree
 * is one value (one record's region, looked up once per record), and two sibling subtrees of one
 * value are one. PrefixTable then writes the fewest longest-prefix-match entries for the result
 * (ORTC): a region with holes is one entry and the holes'. The default region needs entries only
 * inside other regions: elsewhere HAProxy falls back to it.
 *
 * HAProxy's IPv6 lookups fall back to IPv4 when no IPv6 entry matches an address of ::/96,
 * ::ffff:0:0/96 or 2002::/16 (it reads the embedded IPv4 address). The route API reads ::/96 and
 * ::ffff:0:0/96 as IPv4 too (Node reports such a client as ::a.b.c.d or ::ffff:a.b.c.d, which
 * GeoLocator takes for IPv4), so no IPv6 entry covers them — but ::/112 (Node's ::x, IPv6 to both),
 * which gets explicit entries, as 2002::/16 (IPv6 to the route API) does, the default's included. An IPv4
 * subtree that a database aliases into its IPv6 tree (MaxMind's ::/96, ::ffff:0:0/96, 2001::/32,
 * 2002::/16) is not copied: HAProxy's fallback answers 6to4 addresses from the IPv4 entries (the
 * same record, unless an earlier database or an IPv4 pin has the address), and Teredo (2001::/32)
 * addresses, which embed a relay's address rather than the client's, get the default region.
 *
 * A pin naming a region without edges gives its addresses the default region (HAProxy's fallback;
 * renderHaproxy leaves such a pin out). Synchronous and CPU-bound (seconds for the bundled
 * database): GeoMap runs it in a child process.
 */

/** What the map needs of a pin (the `geoPins` setting's GeoPin has it). */
export type GeoMapPin = Omit<GeoPin, 'range'>;

export interface GeoMapInput {
  /** Per region with edges, where its edges are (the route API's sites for role edge). */
  sites: ReadonlyMap<string, readonly Position[]>;
  pins: readonly GeoMapPin[];
  /** The region HAProxy falls back to (map_ip's default in haproxy.cfg). */
  defaultRegion: string;
}

export interface GeoMapBuilt {
  /** The map file (UTF-8 text), over memory of its own (see MapWriter). */
  map: Buffer;
  ipv4Entries: number;
  ipv6Entries: number;
  /** Networks of the databases and pins visited. */
  networks: number;
  /** Distinct database records whose position was read in this build. */
  records: number;
  /** Time spent on each family's walk and entries (pins and regions set up aside). */
  ipv4Ms: number;
  ipv6Ms: number;
}

/** No source has a position here (a leaf's "no data", a record without one). */
const NONE = -3;
/** A database's IPv4 subtree met again in its IPv6 tree (see #aliased). */
const ALIAS = -4;
/** Zone values: addresses left to IPv4 entries, and addresses that need explicit entries. */
const CUT = 0;
const EXPLICIT = 1;
/** Explicit, and a database's aliased IPv4 subtree is walked like any other (::/112: IPv4 0.0.0.0/16, no copy to speak of). */
const EXACT = 2;
const NO_ZONE = -1;
/** Region codes must fit RecordCodes' Uint16Array (NONE stored as 65535). */
const MAX_REGIONS = 65535;

type Layer = { tree: MmdbTree; trie?: undefined; alias: number } | { trie: PrefixTrie; tree?: undefined };
interface Cursor {
  layer: Layer;
  at: number;
}

const HEADER = '# Client network → region, for map_ip in haproxy.cfg: the GeoIP database, pins on top. Rendered by the relaycast balancer.\n';

export class GeoMapBuilder {
  readonly #trees: readonly MmdbTree[];
  /** Per build. */
  #bits = 32;
  #names: string[] = [];
  #default = 0;
  #nearest: NearestRegion | undefined;
  /** Per tree: data record → region code. */
  #codes = new Map<MmdbTree, RecordCodes>();
  #zones: PrefixTrie | undefined;
  #out = new MapWriter([], '');
  #networks = 0;
  #table = new PrefixTable(1, 0);
  /** The tree the fast walk is in, and its IPv4 alias node (or -1). */
  #tree: MmdbTree | undefined;
  #alias = -1;
  #treeCodes = new RecordCodes();

  /** `trees`: the databases in GeoLocator's order (the first with a position for an address wins). */
  constructor(trees: readonly MmdbTree[]) {
    if (!Array.isArray(trees)) throw new TypeError('trees must be an array');
    this.#trees = trees;
  }

  /** `sink`: takes the map's text chunk by chunk as it is written (the result's `map` is then empty). */
  build(input: GeoMapInput, sink?: (bytes: Buffer) => void): GeoMapBuilt {
    const { sites, pins, defaultRegion } = input;
    if (!(sites instanceof Map)) throw new TypeError('sites must be a Map of region → positions');
    if (!Array.isArray(pins)) throw new TypeError('pins must be an array');
    if (typeof defaultRegion !== 'string' || !REGION.test(defaultRegion)) throw new TypeError(`default region "${String(defaultRegion)}" is not a region name`);
    for (const [name, positions] of sites) {
      if (!REGION.test(name)) throw new TypeError(`"${name}" is not a region name`);
      for (const p of positions) if (!Number.isFinite(p.lat) || !Number.isFinite(p.lon)) throw new TypeError(`region ${name}: position ${JSON.stringify(p)} is not lat/lon`);
    }
    this.#names = [...sites.keys()].filter((name) => sites.get(name)!.length > 0).sort();
    if (!this.#names.includes(defaultRegion)) this.#names.push(defaultRegion);
    const codes = new Map(this.#names.map((name, i) => [name, i]));
    this.#default = codes.get(defaultRegion)!;
    this.#table = new PrefixTable(this.#names.length, this.#default);
    this.#nearest = new NearestRegion(sites, codes, this.#default);
    if (this.#names.length > MAX_REGIONS) throw new TypeError(`at most ${MAX_REGIONS} regions, not ${this.#names.length}`);
    this.#codes = new Map(this.#trees.map((tree) => [tree, new RecordCodes()]));
    this.#out = new MapWriter(this.#names, HEADER, sink);
    this.#networks = 0;

    const [pins4, pins6] = [new PrefixTrie(32), new PrefixTrie(128)];
    for (const pin of pins) {
      const [address, length] = parseRange(pin.cidr);
      const code =
        pin.region !== undefined
          ? (codes.get(pin.region) ?? this.#default)
          : pin.lat !== undefined && pin.lon !== undefined
            ? this.#nearest.codeOf({ lat: pin.lat, lon: pin.lon })
            : undefined;
      if (code === undefined) throw new TypeError(`pin ${pin.cidr} names neither a region nor a position`);
      (address.kind() === 'ipv4' ? pins4 : pins6).add(words(address), length, code);
    }
    const zones = new PrefixTrie(128);
    zones.add(words(ipaddr.parse('::')), 112, EXACT); // Node reports ::x as ::x, not ::0.0.a.b: IPv6 to the route API too
    zones.add(words(ipaddr.parse('::')), 96, CUT);
    zones.add(words(ipaddr.parse('::ffff:0:0')), 96, CUT);
    zones.add(words(ipaddr.parse('2002::')), 16, EXPLICIT);

    const trie = (t: PrefixTrie): Cursor[] => (t.empty ? [] : [{ layer: { trie: t }, at: t.root }]);
    const started = performance.now();
    this.#family(32, [...trie(pins4), ...this.#trees.map((tree) => ({ layer: { tree, alias: -1 }, at: tree.ipv4Root }))], undefined);
    const ipv4Entries = this.#out.lines;
    const ipv4Done = performance.now();
    const v6Trees = this.#trees.filter((tree) => tree.ipVersion === 6);
    this.#family(128, [...trie(pins6), ...v6Trees.map((tree) => ({ layer: { tree, alias: tree.isNode(tree.ipv4Root) ? tree.ipv4Root : -1 }, at: 0 }))], zones);
    const ipv6Entries = this.#out.lines - ipv4Entries;
    const [ipv4Ms, ipv6Ms] = [ipv4Done - started, performance.now() - ipv4Done];
    const records = [...this.#codes.values()].reduce((n, c) => n + c.size, 0);
    this.#codes = new Map(); // not kept between builds: a new geography gives every record another code
    this.#treeCodes = new RecordCodes();
    return { map: this.#out.finish(), ipv4Entries, ipv6Entries, networks: this.#networks, records, ipv4Ms, ipv6Ms };
  }

  #family(bits: 32 | 128, cursors: Cursor[], zones: PrefixTrie | undefined): void {
    this.#bits = bits;
    this.#zones = zones;
    const root = this.#walk(0, zones ? zones.root : NO_ZONE, false, cursors);
    this.#table.entries(root, (words, length, code) => this.#emit(words, length, code));
  }

  /** The general walk, for where several sources (or zones) meet. Depth ≤ 128: bounded. */
  #walk(depth: number, zone: number, explicit: boolean, cursors: Cursor[]): number {
    const zones = this.#zones;
    if (zone !== NO_ZONE && zones && !zones.isNode(zone)) {
      const value = zones.value(zone);
      if (value === CUT) return MUST_MISS;
      if (value === EXPLICIT || value === EXACT) explicit = true;
      if (value === EXACT) cursors = cursors.map((c) => (c.layer.tree ? { layer: { tree: c.layer.tree, alias: -1 }, at: c.at } : c));
      zone = NO_ZONE;
    }
    // The sources that matter here: inner nodes, up to and including the first one that decides
    // all of this subtree (sources after it are hidden by it). On a zone's path a database's
    // aliased IPv4 subtree is still walked: only the zone says what becomes of it.
    const aliasIsLeaf = zone === NO_ZONE;
    const live: Cursor[] = [];
    let decided = NONE;
    for (const cursor of cursors) {
      if (depth < this.#bits && this.#isNode(cursor, aliasIsLeaf)) {
        live.push(cursor);
        continue;
      }
      decided = this.#leafCode(cursor);
      if (decided === NONE) continue;
      live.push(cursor);
      break;
    }
    if (zone === NO_ZONE) {
      if (live.length === 0) return this.#final(NONE, explicit);
      const only = live[0]!;
      if (live.length === 1 && decided !== NONE) return this.#final(decided, explicit);
      if (live.length === 1 && only.layer.tree) {
        this.#tree = only.layer.tree;
        this.#alias = only.layer.alias;
        this.#treeCodes = this.#codes.get(only.layer.tree)!;
        return this.#treeWalk(only.at, depth, explicit);
      }
    }
    const l = this.#walk(depth + 1, zone === NO_ZONE ? NO_ZONE : zones!.left(zone), explicit, this.#children(live, 0, aliasIsLeaf));
    const r = this.#walk(depth + 1, zone === NO_ZONE ? NO_ZONE : zones!.right(zone), explicit, this.#children(live, 1, aliasIsLeaf));
    return this.#table.join(l, r);
  }

  /** The fast walk: one database decides everything under `node`. Depth ≤ 128: bounded. */
  #treeWalk(node: number, depth: number, explicit: boolean): number {
    if (depth === this.#bits) return this.#final(NONE, explicit); // mmdb-lib stops here: no data
    const tree = this.#tree!;
    const l = this.#treeRecord(tree, tree.left(node), depth + 1, explicit);
    const r = this.#treeRecord(tree, tree.right(node), depth + 1, explicit);
    return this.#table.join(l, r);
  }

  #treeRecord(tree: MmdbTree, record: number, depth: number, explicit: boolean): number {
    if (record < tree.nodeCount) return record === this.#alias ? this.#aliased(explicit) : this.#treeWalk(record, depth, explicit);
    this.#networks++;
    return this.#final(record === tree.nodeCount ? NONE : this.#pointerCode(tree, this.#treeCodes, record), explicit);
  }

  #pointerCode(tree: MmdbTree, codes: RecordCodes, record: number): number {
    // Data records are > node_count: what is past it is ≥ 1 and fits RecordCodes' 32-bit keys.
    const key = record - tree.nodeCount;
    const known = codes.get(key);
    if (known !== undefined) return known;
    const position = tree.position(record);
    const code = position ? this.#nearest!.codeOf(position) : NONE;
    codes.set(key, code);
    return code;
  }

  /** What a uniform subtree becomes in the map: a region code, or NO_ENTRY (the default's). */
  #final(code: number, explicit: boolean): number {
    if (code === NONE) return explicit ? this.#default : NO_ENTRY;
    if (code === ALIAS) return this.#aliased(explicit);
    return code === this.#default && !explicit ? NO_ENTRY : code;
  }

  /**
   * A database's IPv4 subtree seen again in its IPv6 tree: no entries (HAProxy reads ::/96 and
   * 2002::/16 addresses as IPv4 when no IPv6 entry matches; elsewhere the default answers).
   */
  #aliased(explicit: boolean): number {
    return explicit ? MUST_MISS : NO_ENTRY;
  }

  #children(cursors: Cursor[], side: 0 | 1, aliasIsLeaf: boolean): Cursor[] {
    const out: Cursor[] = [];
    for (const c of cursors) out.push(this.#isNode(c, aliasIsLeaf) ? { layer: c.layer, at: side ? this.#right(c) : this.#left(c) } : c);
    return out;
  }

  #isNode(c: Cursor, aliasIsLeaf: boolean): boolean {
    const { tree, trie } = c.layer;
    return tree ? c.at < tree.nodeCount && (c.at !== c.layer.alias || !aliasIsLeaf) : trie.isNode(c.at);
  }

  #left(c: Cursor): number {
    return c.layer.tree ? c.layer.tree.left(c.at) : c.layer.trie.left(c.at);
  }

  #right(c: Cursor): number {
    return c.layer.tree ? c.layer.tree.right(c.at) : c.layer.trie.right(c.at);
  }

  /** A leaf's code (a node at the last bit has no data, as mmdb-lib sees it). */
  #leafCode(c: Cursor): number {
    const { tree, trie } = c.layer;
    if (!tree) {
      if (trie.isNode(c.at)) return NONE;
      this.#networks++;
      const value = trie.value(c.at);
      return value === EMPTY ? NONE : value;
    }
    if (c.at === c.layer.alias) return ALIAS;
    if (c.at <= tree.nodeCount) return NONE;
    this.#networks++;
    return this.#pointerCode(tree, this.#codes.get(tree)!, c.at);
  }

  #emit(p: Uint32Array, length: number, code: number): void {
    if (this.#bits === 32) this.#out.ipv4(p[0]!, length, code);
    else this.#out.ipv6(ipv6Text(p), length, code);
  }
}

/**
 * Data record (as record − node_count, ≥ 1) → its region code (or NONE), for one build: an open-addressing hash table in two typed
 * arrays. The bundled database has ~700,000 distinct records among 15 million networks: ~12 MB here,
 * where a code per data byte took 62 MB and a Map of decoded positions ~90 MB of heap.
 */
class RecordCodes {
  /** Slots: the key (0: empty), and its code (NONE as 65535). */
  #keys = new Uint32Array(1 << 16);
  #codes = new Uint16Array(1 << 16);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(key: number): number | undefined {
    const mask = this.#keys.length - 1;
    for (let slot = hash(key) & mask; ; slot = (slot + 1) & mask) {
      const found = this.#keys[slot]!;
      if (found === 0) return undefined;
      if (found === key) {
        const code = this.#codes[slot]!;
        return code === 65535 ? NONE : code;
      }
    }
  }

  set(key: number, code: number): void {
    // At most half full: probes stay short.
    if ((this.#size + 1) * 2 > this.#keys.length) this.#grow();
    this.#put(key, code === NONE ? 65535 : code);
    this.#size++;
  }

  #put(key: number, code: number): void {
    const mask = this.#keys.length - 1;
    let slot = hash(key) & mask;
    while (this.#keys[slot] !== 0) slot = (slot + 1) & mask;
    this.#keys[slot] = key;
    this.#codes[slot] = code;
  }

  #grow(): void {
    const [keys, codes] = [this.#keys, this.#codes];
    this.#keys = new Uint32Array(keys.length * 2);
    this.#codes = new Uint16Array(keys.length * 2);
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) this.#put(keys[i]!, codes[i]!);
  }
}

/** Spreads keys (close together, in steps of a record's size) over the table. */
function hash(key: number): number {
  return Math.imul(key, 0x9e3779b1) >>> 7;
}

/** An address as 32-bit words, big-endian. */
function words(address: ipaddr.IPv4 | ipaddr.IPv6): number[] {
  const bytes = address.toByteArray();
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) out.push(((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0);
  return out;
}

/** RFC 5952 text of an IPv6 address given as four 32-bit words: the longest run of zero groups (≥ 2) is "::". */
export function ipv6Text(p: ArrayLike<number>): string {
  const groups = [p[0]! >>> 16, p[0]! & 0xffff, p[1]! >>> 16, p[1]! & 0xffff, p[2]! >>> 16, p[2]! & 0xffff, p[3]! >>> 16, p[3]! & 0xffff];
  let best = -1;
  let bestLength = 1;
  let run = 0;
  for (let i = 0; i < 8; i++) {
    run = groups[i] === 0 ? run + 1 : 0;
    if (run > bestLength) [best, bestLength] = [i - run + 1, run];
  }
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      text += '::';
      i += bestLength - 1;
    } else text += (text === '' || text.endsWith(':') ? '' : ':') + groups[i]!.toString(16);
  }
  return text;
}
