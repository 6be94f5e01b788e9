import { parseRange, type AddressRange } from './TrustedProxies.ts';

/**
 * Client ranges pinned to a region or a position (the `geoPins` setting): private networks the
 * geo database cannot place, tests, corrections. Checked before the database, by the balancer's
 * GeoLocator and HAProxy's geo map alike.
 */

/** A region name: `eu-west`, `us-east-1`. Regions name node groups and appear in HAProxy backends. */
export const REGION = /^[a-z0-9][a-z0-9-]{0,31}$/;
export const REGION_RULE = 'lower-case letters, digits and -, at most 32';

export interface GeoPin {
  range: AddressRange;
  /** The range as CIDR text (HAProxy's map). */
  cidr: string;
  /** Set when the pin names a region: that region is nearest by definition. */
  region?: string;
  lat?: number;
  lon?: number;
}

const COORDINATES = /^(-?\d+(?:\.\d+)?):(-?\d+(?:\.\d+)?)$/;

/** `cidr=region` or `cidr=lat:lon`, comma-separated; an address alone means itself. Throws TypeError. */
export function parseGeoPins(text: string): GeoPin[] {
  return text
    .split(',')
    .filter((entry) => entry.trim())
    .map((entry) => {
      const [where, target = ''] = entry.split('=').map((s) => s.trim());
      let range: AddressRange;
      try {
        range = parseRange(where!);
      } catch (error) {
        throw new TypeError(`"${entry.trim()}": ${(error as Error).message}`, { cause: error });
      }
      const cidr = `${range[0].toString()}/${range[1]}`;
      const coords = COORDINATES.exec(target);
      if (coords) {
        const [lat, lon] = [Number(coords[1]), Number(coords[2])];
        if (Math.abs(lat) > 90 || Math.abs(lon) > 180) throw new TypeError(`"${entry.trim()}": ${target} is not a latitude:longitude`);
        return { range, cidr, lat, lon };
      }
      if (REGION.test(target)) return { range, cidr, region: target };
      throw new TypeError(`"${entry.trim()}": expected address-or-cidr=region or address-or-cidr=lat:lon`);
    });
}
