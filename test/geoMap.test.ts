import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundledDatabases, GeoLocator } from '../balancer/GeoLocator.ts';
import { buildGeoMap, type GeoMapBytes } from '../balancer/GeoMap.ts';
import { MmdbTree } from '../balancer/MmdbTree.ts';
import { packing, rank, regionsByDistance, type NodeSnapshot, type Position } from '../balancer/policies.ts';
import { parseGeoPins } from '../core/geoPins.ts';
import { rng, type Rng } from '../bench/simulator/random.ts';
import { freePort } from '../kit/postgres.ts';
import { HaproxyMap, socketText } from './helpers/haproxyMap.ts';
import { spawnTracked, stopProcess, waitFor } from '../kit/processes.ts';

/**
 * HAProxy's geo map built from the bundled GeoIP database (DB-IP City Lite), loaded by a real
 * HAProxy: for sampled IPv4 and IPv6 addresses from many countries, HAProxy's own answer (`get map`
 * on its runtime socket, the lookup map_ip does) must be the region the route API picks for the
 * same address (GeoLocator.locate, then rank() over one idle edge per site). Pins on top, unknown
 * addresses to the default region.
 */

const SITES: Record<string, Position[]> = {
  'eu-west': [{ lat: 48.86, lon: 2.35 }, { lat: 51.51, lon: -0.13 }],
  'us-east': [{ lat: 39.04, lon: -77.49 }, { lat: 40.71, lon: -74.01 }],
  'us-west': [{ lat: 37.77, lon: -122.42 }, { lat: 47.61, lon: -122.33 }],
  'sa-east': [{ lat: -23.55, lon: -46.63 }],
  'ap-northeast': [{ lat: 35.68, lon: 139.69 }],
  'ap-south': [{ lat: 19.08, lon: 72.88 }, { lat: 1.35, lon: 103.82 }],
  'af-south': [{ lat: -26.2, lon: 28.05 }],
  'oc-south': [{ lat: -33.87, lon: 151.21 }],
};
const DEFAULT_REGION = 'eu-west';
/**
 * A wide pin over database networks (8.8.0.0/16) and a narrower one listed after it (shadowed, as
 * GeoLocator takes the first pin that holds the address); a narrow pin listed before a wide one
 * (it wins inside itself); a position pin; a private network; an IPv6 pin.
 */
const PINS = '8.8.0.0/16=sa-east, 8.8.8.0/24=us-east, 9.9.9.0/24=us-west, 9.9.0.0/16=ap-south, 1.1.1.0/24=35.6:139.7, 10.0.0.0/8=oc-south, 2001:4860::/32=af-south';
/** Sampled database addresses per family, and the countries they must span at least. */
const IPV4_SAMPLES = 300;
const IPV6_SAMPLES = 150;
const MIN_COUNTRIES = 20;
/** Bounds the random search for addresses the database places. */
const MAX_TRIES = 200_000;
/** `get map` commands sent to HAProxy per connection (well inside its 16 kB command buffer). */
const COMMANDS_PER_BATCH = 50;

const sites = new Map(Object.entries(SITES));
const edges: NodeSnapshot[] = Object.entries(SITES).flatMap(([region, positions], r) =>
  positions.map((p, i) => ({ id: `e${r}-${i}`, roles: ['edge'], region, ...p, publicUrl: `http://127.0.0.1:${9000 + r * 10 + i}`, capacity: 100, viewers: 0, cpu: 0, draining: false, streams: new Set<string>() })),
);

function ipv4(random: Rng): string {
  const n = Math.floor(random() * 2 ** 32);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** A random address under a random network of the IPv6 tree: a descent that avoids empty branches. */
function ipv6(tree: MmdbTree, random: Rng): string {
  const bits: number[] = [];
  let record = 0;
  while (tree.isNode(record) && bits.length < 128) {
    const choices = ([0, 1] as const).filter((side) => (side ? tree.right(record) : tree.left(record)) !== tree.nodeCount);
    if (choices.length === 0) break;
    const side = choices[Math.floor(random() * choices.length)]!;
    bits.push(side);
    record = side ? tree.right(record) : tree.left(record);
  }
  while (bits.length < 128) bits.push(random() < 0.5 ? 0 : 1);
  const groups = Array.from({ length: 8 }, (_, g) => parseInt(bits.slice(g * 16, g * 16 + 16).join(''), 2).toString(16));
  return groups.join(':');
}

/** HAProxy's answers to `get map`, one per address (the default region where nothing matches). */
async function haproxyRegions(socket: string, mapPath: string, addresses: string[]): Promise<string[]> {
  const answers: string[] = [];
  for (let i = 0; i < addresses.length; i += COMMANDS_PER_BATCH) {
    const batch = addresses.slice(i, i + COMMANDS_PER_BATCH);
    const connection = createConnection(socket);
    let reply = '';
    connection.on('data', (d) => (reply += d));
    await once(connection, 'connect');
    connection.end(`${batch.map((a) => `get map ${mapPath} ${a}`).join('; ')}\n`);
    await once(connection, 'close');
    const blocks = reply.split('\n\n').filter((b) => b.trim());
    assert.equal(blocks.length, batch.length, `one answer per address: ${reply}`);
    for (const block of blocks) {
      if (/found=no/.test(block)) answers.push(DEFAULT_REGION);
      else answers.push(/value="([^"]*)"/.exec(block)?.[1] ?? `unreadable: ${block}`);
    }
  }
  return answers;
}

describe('HAProxy geo map from the GeoIP database', function () {
  let dir: string;
  let geo: GeoLocator;
  let built: GeoMapBytes;
  let haproxy: ChildProcess | undefined;
  let socket: string;
  let mapPath: string;
  /** The route API's region for a client at `ip`, given as Node reports a socket's address. */
  const routeRegion = (ip: string) => rank(edges, { stream: 's', role: 'edge', location: geo.locate(socketText(ip)) }, packing, { streams: 1, viewers: 1 }, 1)[0]!.node.region;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relaycast-geomap-'));
    geo = await GeoLocator.open({ pins: parseGeoPins(PINS), defaultRegion: DEFAULT_REGION });
    built = await buildGeoMap({ sites, pins: parseGeoPins(PINS), defaultRegion: DEFAULT_REGION });
    mapPath = join(dir, 'geo.map');
    socket = join(dir, 'runtime.sock');
    writeFileSync(mapPath, built.map);
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      [
        'global',
        `  stats socket ${socket} mode 600 level admin`,
        'defaults',
        '  mode http',
        '  timeout client 5s',
        '  timeout server 5s',
        '  timeout connect 5s',
        'frontend geo',
        `  bind 127.0.0.1:${await freePort()}`,
        `  http-request set-var(txn.region) src,map_ip(${mapPath},${DEFAULT_REGION})`,
        '  http-request return status 200 hdr x-region %[var(txn.region)]',
        '',
      ].join('\n'),
    );
    haproxy = spawnTracked('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    haproxy.stderr!.on('data', (d) => (stderr += d));
    await waitFor(`HAProxy's runtime socket (${stderr})`, () => existsSync(socket) || haproxy!.exitCode !== null, 60_000, 100);
    assert.ok(existsSync(socket), `HAProxy did not start: ${stderr}`);
  });

  after(async () => {
    if (haproxy) await stopProcess(haproxy, 5000);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('covers the whole database in IPv4 and IPv6 entries', () => {
    assert.ok(built.ipv4Entries > 10_000 && built.ipv6Entries > 10_000, `entries: ${built.ipv4Entries} IPv4, ${built.ipv6Entries} IPv6`);
    assert.equal(built.text.split('\n').filter((l) => l && !l.startsWith('#')).length, built.entries);
    assert.ok(built.entries < built.networks / 10, `${built.entries} entries for ${built.networks} networks: merged`);
  });

  it('sends sampled addresses of many countries to the region the route API chooses', async () => {
    const random = rng(17);
    const countries = new Set<string>();
    const sample = (family: string, wanted: number, next: () => string) => {
      const found: string[] = [];
      for (let tries = 0; found.length < wanted && tries < MAX_TRIES; tries++) {
        const ip = next();
        const location = geo.locate(ip);
        if (location.source !== 'database') continue;
        found.push(ip);
        if (location.country) countries.add(`${location.country}`);
      }
      assert.equal(found.length, wanted, `${family}: ${wanted} addresses the database places`);
      return found;
    };
    const tree = await MmdbTree.open(bundledDatabases()[1]!);
    const addresses = [...sample('IPv4', IPV4_SAMPLES, () => ipv4(random)), ...sample('IPv6', IPV6_SAMPLES, () => ipv6(tree, random))];
    assert.ok(countries.size >= MIN_COUNTRIES, `countries: ${[...countries].join(' ')}`);
    const answers = await haproxyRegions(socket, mapPath, addresses);
    const wrong = addresses.map((ip, i) => ({ ip, haproxy: answers[i], route: routeRegion(ip) })).filter((a) => a.haproxy !== a.route);
    assert.deepEqual(wrong, [], `${wrong.length} of ${addresses.length} addresses disagree`);
    // rank() and regionsByDistance agree on where a database address goes (the rule the map uses).
    for (const ip of addresses.slice(0, 50)) {
      const { lat, lon } = geo.locate(socketText(ip));
      assert.equal(routeRegion(ip), regionsByDistance({ lat: lat!, lon: lon! }, sites)[0]);
    }
    console.log(`      ${addresses.length} addresses (${IPV4_SAMPLES} IPv4, ${IPV6_SAMPLES} IPv6) from ${countries.size} countries; map ${built.entries} entries, ${built.ms.toFixed(0)} ms`);
  });

  it('is read by HAProxy as the other tests read maps (helpers/haproxyMap.ts), IPv4 fallbacks included', async () => {
    const model = new HaproxyMap(built.text, DEFAULT_REGION);
    const random = rng(23);
    const tree = await MmdbTree.open(bundledDatabases()[1]!);
    const addresses = [
      ...Array.from({ length: 100 }, () => ipv4(random)),
      ...Array.from({ length: 100 }, () => ipv6(tree, random)),
      ...['::ffff:8.8.8.8', '::8.8.8.8', '2002:808:808::1', '2002:a00:1::1', '2001:0:808:808::1', '::1', '::', '0.0.0.0', '255.255.255.255', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ];
    const answers = await haproxyRegions(socket, mapPath, addresses);
    addresses.forEach((ip, i) => assert.equal(model.lookup(ip), answers[i], ip));
  });

  it('lets pins win over the database, the first pin over a later one', async () => {
    const expected: Record<string, string> = {
      '8.8.8.8': 'sa-east', // the /16 listed first holds it: the later /24 is shadowed
      '8.8.4.4': 'sa-east',
      '9.9.9.9': 'us-west', // the /24 listed first wins inside itself
      '9.9.1.1': 'ap-south',
      '1.1.1.1': 'ap-northeast', // a position pin: its nearest region
      '10.20.30.40': 'oc-south',
      '::ffff:10.0.0.1': 'oc-south', // IPv4-mapped: HAProxy and GeoLocator read it as IPv4
      '::10.0.0.1': 'oc-south', // IPv4-compatible: so does Node's ::a.b.c.d for GeoLocator
      '2001:4860:4860::8888': 'af-south',
    };
    const addresses = Object.keys(expected);
    const answers = await haproxyRegions(socket, mapPath, addresses);
    addresses.forEach((ip, i) => {
      assert.equal(answers[i], expected[ip], `HAProxy: ${ip}`);
      assert.equal(routeRegion(ip), expected[ip], `route API: ${ip}`);
    });
  });

  it('gives unknown and private addresses the default region', async () => {
    const addresses = ['192.168.1.1', '172.16.5.4', '127.0.0.1', '0.0.0.1', '::1', 'fc00::1', 'fe80::1', '::ffff:192.168.1.1'];
    const answers = await haproxyRegions(socket, mapPath, addresses);
    addresses.forEach((ip, i) => {
      assert.equal(answers[i], DEFAULT_REGION, `HAProxy: ${ip}`);
      assert.equal(routeRegion(ip), DEFAULT_REGION, `route API: ${ip}`);
    });
  });
});
