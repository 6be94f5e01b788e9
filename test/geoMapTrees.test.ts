import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import { GeoLocator } from '../balancer/GeoLocator.ts';
import { GeoMapBuilder } from '../balancer/GeoMapBuilder.ts';
import { MmdbTree } from '../balancer/MmdbTree.ts';
import { regionsByDistance, type Position } from '../balancer/policies.ts';
import { parseGeoPins } from '../core/geoPins.ts';
import { rng, type Rng } from '../bench/simulator/random.ts';
import { embeddedIPv4, HaproxyMap, socketText } from './helpers/haproxyMap.ts';
import { writeMmdb, type MmdbSpec, type MmdbValue } from './helpers/mmdbWriter.ts';

/**
 * The geo map from databases of every shape the bundled one is not: record sizes 24, 28 and 32,
 * IPv4-only and IPv6 trees, IPv4 at ::/96 of an IPv6 tree with MaxMind's aliases, MaxMind's
 * location.latitude records and records without a position, several databases where the first
 * with a position wins. Random trees, written by helpers/mmdbWriter.ts; every network's first,
 * last and a random address, read from the map as HAProxy reads it, against GeoLocator and
 * regionsByDistance.
 */

const SITES = new Map<string, Position[]>([
  ['eu-west', [{ lat: 48.86, lon: 2.35 }]],
  ['us-east', [{ lat: 39.04, lon: -77.49 }, { lat: 41.88, lon: -87.63 }]],
  ['ap-south', [{ lat: 1.35, lon: 103.82 }]],
  ['sa-east', [{ lat: -23.55, lon: -46.63 }]],
]);
const DEFAULT_REGION = 'eu-west';
const CITIES: Position[] = [
  { lat: 51.5, lon: -0.13 },
  { lat: 40.71, lon: -74.01 },
  { lat: 35.68, lon: 139.69 },
  { lat: -33.87, lon: 151.21 },
  { lat: 19.43, lon: -99.13 },
  { lat: 55.76, lon: 37.62 },
  { lat: -1.29, lon: 36.82 },
  { lat: 28.61, lon: 77.21 },
];
/** Past 2^24: data pointers of 28- and 32-bit records use their high bits (see MmdbSpec.dataPadding). */
const DATA_PADDING = 2 ** 24;
/** Leaves per random tree: enough structure, few enough to check every network. */
const MAX_NETWORKS = 300;

type Shape = 'dbip' | 'maxmind';

function record(random: Rng, shape: Shape): { [key: string]: MmdbValue } | undefined {
  const roll = random();
  if (roll < 0.15) return undefined; // no data
  if (roll < 0.25) return shape === 'dbip' ? { country_code: 'ZZ' } : { country: { iso_code: 'ZZ' } }; // no position
  const city = CITIES[Math.floor(random() * CITIES.length)]!;
  return shape === 'dbip' ? { latitude: city.lat, longitude: city.lon, country_code: 'XX' } : { location: { latitude: city.lat, longitude: city.lon }, country: { iso_code: 'XX' } };
}

/** Random networks splitting `cidr`: split with a chance falling with depth, at most `limit` of them. */
function networks(random: Rng, cidr: string, shape: Shape, limit = MAX_NETWORKS): Array<[string, { [key: string]: MmdbValue }]> {
  const out: Array<[string, { [key: string]: MmdbValue }]> = [];
  const [base, length] = ipaddr.parseCIDR(cidr);
  const bits = base.toByteArray().length * 8;
  const split = (bytes: number[], depth: number): void => {
    if (depth < bits && depth < length + 24 && out.length < limit && (depth < length + 2 || random() < 0.8)) {
      for (const bit of [0, 1]) {
        const child = [...bytes];
        if (bit) child[depth >> 3]! |= 1 << (7 - (depth & 7));
        split(child, depth + 1);
      }
      return;
    }
    const data = record(random, shape);
    if (data) out.push([`${ipaddr.fromByteArray(bytes).toString()}/${depth}`, data]);
  };
  split(base.toByteArray(), length);
  return out;
}

/** First, last and one random address of a CIDR. */
function addressesOf(cidr: string, random: Rng): string[] {
  const [address, length] = ipaddr.parseCIDR(cidr);
  const bytes = address.toByteArray();
  const fill = (pick: () => number) =>
    ipaddr
      .fromByteArray(bytes.map((b, i) => [...Array(8).keys()].reduce((v, k) => (i * 8 + k < length ? v : pick() ? v | (1 << (7 - k)) : v & ~(1 << (7 - k))), b)))
      .toString();
  return [fill(() => 0), fill(() => 1), fill(() => (random() < 0.5 ? 1 : 0))];
}

describe('geo map from databases of every shape', () => {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-geomap-trees-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Builds the map over `specs` (in order) and checks every network's addresses, and the aliased forms of IPv4 ones. */
  async function check(name: string, specs: MmdbSpec[], pins: string, random: Rng) {
    const paths = specs.map((spec, i) => {
      const path = join(dir, `${name}-${i}.mmdb`);
      writeFileSync(path, writeMmdb(spec));
      return path;
    });
    const geo = await GeoLocator.open({ databases: paths, pins: parseGeoPins(pins), defaultRegion: DEFAULT_REGION });
    const trees = await Promise.all(paths.map((p) => MmdbTree.open(p)));
    const map = new HaproxyMap(new GeoMapBuilder(trees).build({ sites: SITES, pins: parseGeoPins(pins), defaultRegion: DEFAULT_REGION }).map.toString(), DEFAULT_REGION);
    const aliases = specs.some((s) => s.aliases);
    const route = (ip: string): string => {
      const location = geo.locate(socketText(ip));
      if (location.source === 'default') return DEFAULT_REGION;
      if (location.region !== undefined) return SITES.has(location.region) ? location.region : DEFAULT_REGION;
      return regionsByDistance({ lat: location.lat!, lon: location.lon! }, SITES)[0]!;
    };
    // Where a database aliases its IPv4 subtree, HAProxy answers 6to4 addresses as the IPv4 address
    // they embed, and Teredo ones (2001::/32) with the default (see GeoMapBuilder).
    const expected = (ip: string): string => {
      const address = ipaddr.parse(ip);
      if (!aliases || address.kind() === 'ipv4') return route(ip);
      if ((address as ipaddr.IPv6).match(ipaddr.parseCIDR('2001::/32') as [ipaddr.IPv6, number])) return DEFAULT_REGION;
      if ((address as ipaddr.IPv6).match(ipaddr.parseCIDR('2002::/16') as [ipaddr.IPv6, number])) return route(embeddedIPv4(address as ipaddr.IPv6)!.toString());
      return route(ip);
    };
    let checked = 0;
    let placed = 0;
    for (const spec of specs) {
      for (const [cidr] of spec.networks) {
        for (const ip of addressesOf(cidr, random)) {
          const forms = [ip];
          if (!ip.includes(':')) {
            const b = ipaddr.parse(ip).toByteArray().map((x) => x.toString(16).padStart(2, '0'));
            forms.push(`::ffff:${ip}`, `::${ip}`, `2002:${b[0]}${b[1]}:${b[2]}${b[3]}::1`, `2001:0:${b[0]}${b[1]}:${b[2]}${b[3]}::1`);
          }
          for (const form of forms) {
            const region = expected(form);
            assert.equal(map.lookup(form), region, `${name}: ${form} (network ${cidr})`);
            checked++;
            if (region !== DEFAULT_REGION) placed++;
          }
        }
      }
    }
    assert.ok(checked > 500 && placed > checked / 4, `${checked} addresses checked, ${placed} outside the default region`);
  }

  it('reads IPv4-only trees of 24-bit records and MaxMind-shaped records', async () => {
    const random = rng(1);
    await check('v4-24', [{ ipVersion: 4, recordSize: 24, networks: networks(random, '0.0.0.0/0', 'maxmind') }], '10.1.0.0/16=sa-east', random);
  });

  it('reads IPv6 trees of 28-bit records holding IPv4 at ::/96 with MaxMind aliases, without copying the aliased subtree', async () => {
    const random = rng(2);
    const spec: MmdbSpec = { ipVersion: 6, recordSize: 28, aliases: true, dataPadding: DATA_PADDING, networks: [...networks(random, '0.0.0.0/0', 'maxmind'), ...networks(random, '2400::/6', 'maxmind')] };
    await check('v6-28-aliases', [spec], '', random);
    const trees = [await MmdbTree.open(join(dir, 'v6-28-aliases-0.mmdb'))];
    const text = new GeoMapBuilder(trees).build({ sites: SITES, pins: [], defaultRegion: DEFAULT_REGION }).map.toString();
    for (const line of text.split('\n').filter((l) => l.includes(':') && !l.startsWith('#'))) {
      const [address, length] = ipaddr.parseCIDR(line.split(' ')[0]!) as [ipaddr.IPv6, number];
      if (address.match(ipaddr.parse('::') as ipaddr.IPv6, 112)) continue; // ::/112 is IPv6 to the route API: copied
      for (const [zone, zoneLength] of [['::ffff:0:0', 96], ['::', 96], ['2002::', 16], ['2001::', 32]] as const) {
        assert.ok(!(length > zoneLength && address.match(ipaddr.parse(zone) as ipaddr.IPv6, zoneLength)), `${line}: inside the aliased ${zone}/${zoneLength}`);
      }
    }
  });

  it('takes the first database with a position: an IPv4 file of 32-bit records, then an IPv6 file with IPv4 inside and aliases', async () => {
    const random = rng(3);
    await check(
      'first-wins',
      [
        { ipVersion: 4, recordSize: 32, dataPadding: DATA_PADDING, networks: networks(random, '0.0.0.0/1', 'dbip') },
        { ipVersion: 6, recordSize: 24, aliases: true, networks: [...networks(random, '0.0.0.0/0', 'dbip'), ...networks(random, '2400::/6', 'dbip')] },
      ],
      '10.1.0.0/16=us-east, 2001:db8::/32=40:-74',
      random,
    );
  });

  it('gives IPv4 addresses to an IPv4 file listed after an IPv6 file without IPv4', async () => {
    const random = rng(4);
    await check(
      'v6-then-v4',
      [
        { ipVersion: 6, recordSize: 24, networks: networks(random, '2000::/3', 'dbip') },
        { ipVersion: 4, recordSize: 28, dataPadding: DATA_PADDING, networks: networks(random, '0.0.0.0/0', 'dbip') },
      ],
      '',
      random,
    );
  });
});
