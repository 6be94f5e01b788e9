import assert from 'node:assert/strict';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { GeoLocator } from '../balancer/GeoLocator.ts';
import { GeoMapBuilder, ipv6Text } from '../balancer/GeoMapBuilder.ts';
import { regionsByDistance } from '../balancer/policies.ts';
import { parseGeoPins } from '../core/geoPins.ts';
import { rng, type Rng } from '../bench/simulator/random.ts';
import { HaproxyMap, socketText } from './helpers/haproxyMap.ts';

/**
 * The geo map's merging and pins, without a database: GeoMapBuilder over pins alone, read back the
 * way HAProxy's map_ip reads a map (helpers/haproxyMap.ts: longest prefix, its IPv4 ⇄ IPv6
 * fallbacks), against GeoLocator and regionsByDistance.
 */

const SITES = new Map([
  ['eu-west', [{ lat: 48.86, lon: 2.35 }]],
  ['us-east', [{ lat: 39.04, lon: -77.49 }]],
  ['ap-south', [{ lat: 1.35, lon: 103.82 }]],
]);
const DEFAULT_REGION = 'eu-west';

const mapOf = (pins: string) => ({ text: new GeoMapBuilder([]).build({ sites: SITES, pins: parseGeoPins(pins), defaultRegion: DEFAULT_REGION }).map.toString() });
/**
 * The map's IPv4 entries, or its IPv6 entries of regions other than the default (every map has
 * default-region entries over ::/96 and 2002::/16: those must not fall back to IPv4).
 */
const entries = (pins: string, family: 4 | 6 = 4) =>
  mapOf(pins)
    .text.split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .filter((line) => (family === 4 ? !line.includes(':') : line.includes(':') && !line.endsWith(` ${DEFAULT_REGION}`)));

/** HAProxy's answer for `ip` from the map `text` (see helpers/haproxyMap.ts). */
const haproxyLookup = (text: string, ip: string) => new HaproxyMap(text, DEFAULT_REGION).lookup(ip);

/**
 * Where the route API sends a client at `ip` (as Node reports it): GeoLocator's answer, then the
 * nearest region (a pin's region if it has edges).
 */
function routeRegion(geo: GeoLocator, ip: string): string {
  const location = geo.locate(socketText(ip));
  if (location.source === 'default') return DEFAULT_REGION;
  if (location.region !== undefined) return SITES.has(location.region) ? location.region : DEFAULT_REGION;
  return regionsByDistance({ lat: location.lat!, lon: location.lon! }, SITES)[0]!;
}

/** A random address inside `cidr`. */
function inside(cidr: string, random: Rng): string {
  const [address, bits] = ipaddr.parseCIDR(cidr);
  const bytes = address.toByteArray();
  for (let bit = bits; bit < bytes.length * 8; bit++) {
    const mask = 1 << (7 - (bit & 7));
    bytes[bit >> 3] = random() < 0.5 ? bytes[bit >> 3]! | mask : bytes[bit >> 3]! & ~mask;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

describe('geo map merging and pins', () => {
  it('merges adjacent networks of one region into one CIDR', () => {
    assert.deepEqual(entries('10.0.0.0/25=us-east, 10.0.0.128/25=us-east'), ['10.0.0.0/24 us-east']);
    assert.deepEqual(entries('10.0.0.0/26=us-east, 10.0.0.64/26=us-east, 10.0.0.128/25=us-east'), ['10.0.0.0/24 us-east']);
    assert.deepEqual(entries('10.0.0.0/25=40.71:-74.01, 10.0.0.128/25=38.9:-77.04'), ['10.0.0.0/24 us-east'], 'two positions nearest one region');
    assert.deepEqual(entries('2001:db8::/33=us-east, 2001:db8:8000::/33=us-east', 6), ['2001:db8::/32 us-east']);
  });

  it('keeps networks of different regions, and same-region networks that are not adjacent, apart', () => {
    const { text } = mapOf('10.0.0.0/25=us-east, 10.0.0.128/25=ap-south');
    assert.deepEqual([haproxyLookup(text, '10.0.0.127'), haproxyLookup(text, '10.0.0.128'), haproxyLookup(text, '10.0.1.0')], ['us-east', 'ap-south', DEFAULT_REGION]);
    assert.equal(entries('10.0.0.0/25=us-east, 10.0.0.128/25=ap-south').length, 2, 'two entries (which two is ORTC’s choice)');
    assert.deepEqual(entries('10.0.0.0/25=us-east, 10.0.1.0/25=us-east'), ['10.0.0.0/25 us-east', '10.0.1.0/25 us-east']);
    assert.deepEqual(entries('10.0.0.128/25=us-east, 10.0.1.0/25=us-east'), ['10.0.0.128/25 us-east', '10.0.1.0/25 us-east'], 'adjacent, but no one CIDR covers exactly both');
  });

  it('writes a region with a hole as one entry and the hole (longest prefix wins)', () => {
    assert.deepEqual(entries('10.0.0.192/26=ap-south, 10.0.0.0/24=us-east'), ['10.0.0.0/24 us-east', '10.0.0.192/26 ap-south']);
    assert.deepEqual(entries(`10.0.0.64/26=${DEFAULT_REGION}, 10.0.0.0/24=us-east`), ['10.0.0.0/24 us-east', `10.0.0.64/26 ${DEFAULT_REGION}`], 'a default-region hole needs its entry');
  });

  it('leaves the default region out, and gives it to pins of regions without edges', () => {
    assert.deepEqual(entries(`10.0.0.0/8=${DEFAULT_REGION}`), []);
    assert.deepEqual(entries('10.0.0.0/8=nowhere'), []);
    assert.deepEqual(entries('10.0.0.0/16=nowhere, 10.0.0.0/8=us-east'), ['10.0.0.0/8 us-east', `10.0.0.0/16 ${DEFAULT_REGION}`]);
  });

  it('covers no IPv4-mapped address with an IPv6 entry, even under ::/0', () => {
    const { text } = mapOf('::/0=us-east, 10.0.0.0/8=ap-south');
    assert.equal(haproxyLookup(text, '::ffff:10.0.0.1'), 'ap-south', 'IPv4-mapped: the IPv4 entries');
    assert.equal(haproxyLookup(text, '::ffff:192.168.0.1'), DEFAULT_REGION);
    assert.equal(haproxyLookup(text, '192.168.0.1'), DEFAULT_REGION, 'an IPv4 miss does not find ::/0');
    assert.equal(haproxyLookup(text, '2002:a00:1::'), 'us-east', '6to4 is IPv6 to GeoLocator');
    assert.equal(haproxyLookup(text, '::a00:1'), 'ap-south', 'IPv4-compatible: Node reports ::10.0.0.1, IPv4 to GeoLocator');
    assert.equal(haproxyLookup(text, '::1'), 'us-east', '::1 is IPv6 to both');
  });

  it('formats IPv6 addresses as RFC 5952 does (ipaddr.js)', () => {
    const random = rng(5);
    for (let i = 0; i < 2000; i++) {
      const words = Array.from({ length: 4 }, () => (random() < 0.4 ? 0 : random() < 0.5 ? 0xffff0000 : Math.floor(random() * 2 ** 32)) >>> 0);
      const bytes = words.flatMap((w) => [w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);
      assert.equal(ipv6Text(words), ipaddr.fromByteArray(bytes).toString());
    }
  });

  it('answers every address as GeoLocator and regionsByDistance do, for random overlapping pins', async () => {
    const v4 = fc.tuple(fc.constantFrom('10.0.0.0', '10.0.128.0', '10.0.7.64', '10.1.0.0', '0.0.0.0', '192.168.1.0'), fc.integer({ min: 0, max: 32 }));
    const v6 = fc.tuple(fc.constantFrom('2001:db8::', '2001:db8:0:8000::', '::', '::ffff:0:0', '::ffff:10.0.0.0', '2002::', '2002:a00::', '::a00:0'), fc.integer({ min: 0, max: 128 }));
    const target = fc.oneof(
      fc.constantFrom('eu-west', 'us-east', 'ap-south', 'nowhere'),
      fc.tuple(fc.integer({ min: -80, max: 80 }), fc.integer({ min: -179, max: 179 })).map(([lat, lon]) => `${lat}.5:${lon}.25`),
    );
    const pin = fc.tuple(fc.oneof(v4, v6), target).map(([[address, bits], to]) => `${address}/${bits}=${to}`);
    await fc.assert(
      fc.asyncProperty(fc.array(pin, { maxLength: 8 }), fc.integer(), async (pins, seed) => {
        const text = pins.join(',');
        const geo = await GeoLocator.open({ databases: [], pins: parseGeoPins(text), defaultRegion: DEFAULT_REGION });
        const map = mapOf(text).text;
        const random = rng(seed);
        const addresses = [...pins.map((p) => p.split('=')[0]!), '10.0.0.0/16', '2001:db8::/48', '::ffff:10.0.0.0/112', '2002:a00::/32', '::a00:0/112'].flatMap((cidr) =>
          Array.from({ length: 4 }, () => inside(cidr, random)),
        );
        for (const ip of addresses) assert.equal(haproxyLookup(map, ip), routeRegion(geo, ip), `${ip} with pins ${text}\n${map}`);
      }),
      { numRuns: 300, seed: 42 },
    );
  });
});
