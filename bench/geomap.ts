/**
 * Geo map benchmark (reports, does not pass or fail): HAProxy's geo map built from the whole GeoIP
 * database (the bundled DB-IP City Lite, or --database files) for N regions, through the product's
 * GeoMap (a worker thread):
 *
 *   entries, bytes  the map's IPv4 and IPv6 lines and its size
 *   build           GeoMap.build() as the balancer waits for it: the first build also starts the
 *                   worker, reads the databases and decodes every record; later builds reuse them
 *   loop delay      the longest stall of this (the balancer's) event loop during the build
 *   haproxy -c      `haproxy -c` of a config that reads the map with map_ip, next to the same config
 *                   reading an empty map, alternately, in the same run (what each refresh pays)
 *
 * Regions are placed as bench:balancer places them (seeded, anywhere between 70° S and 70° N),
 * each with --edges-per-region edges within half a degree.
 *
 *   npm run bench:geomap [-- --regions 10,50,100 --edges-per-region 10 --runs 3]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { GeoMap } from '../balancer/GeoMap.ts';
import type { Position } from '../balancer/policies.ts';
import { spread } from '../kit/stats.ts';
import { runCommand } from './lib/options.ts';
import { renderTable } from './lib/report.ts';

const USAGE = `npm run bench:geomap [-- options]

  --regions LIST         region counts to build the map for (default 10,50,100)
  --edges-per-region N   edges per region (default 10)
  --runs N               haproxy -c runs per map, with and without it (default 3)
  --database FILE        an .mmdb file (repeat for several, in GeoLocator's order); default the bundled DB-IP City Lite
`;

/** The region HAProxy falls back to: the first generated one. */
const DEFAULT_REGION = 'region-0';

interface Options {
  regions: number[];
  edgesPerRegion: number;
  runs: number;
  databases: string[] | undefined;
}

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      regions: { type: 'string', default: '10,50,100' },
      'edges-per-region': { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      database: { type: 'string', multiple: true },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const int = (name: string, text: string) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be an integer ≥ 1, got ${text}`);
    return n;
  };
  return {
    regions: values.regions.split(',').map((r) => int('regions', r.trim())),
    edgesPerRegion: int('edges-per-region', values['edges-per-region']),
    runs: int('runs', values.runs),
    databases: values.database,
  };
}

/** bench:balancer's placement: a repeatable pseudo-random sequence, so that runs compare. */
function sitesFor(regions: number, edgesPerRegion: number): Map<string, Position[]> {
  let seed = 42;
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const sites = new Map<string, Position[]>();
  for (let i = 0; i < regions; i++) {
    const centre = { lat: rnd() * 140 - 70, lon: rnd() * 360 - 180 };
    sites.set(
      `region-${i}`,
      Array.from({ length: edgesPerRegion }, () => ({ lat: centre.lat + rnd() - 0.5, lon: centre.lon + rnd() - 0.5 })),
    );
  }
  return sites;
}

function haproxyConfig(mapPath: string): string {
  return [
    'defaults',
    '  mode http',
    '  timeout client 5s',
    '  timeout server 5s',
    '  timeout connect 5s',
    'frontend geo',
    '  bind 127.0.0.1:18080',
    `  use_backend %[src,map_ip(${mapPath},${DEFAULT_REGION}),regsub(^,be_)]`,
    'backend be_region-0',
    '  server s 127.0.0.1:18081',
    '',
  ].join('\n');
}

/** Wall time of `haproxy -c -q -f cfg`, in ms. */
function checkMs(cfg: string): number {
  const started = performance.now();
  execFileSync('haproxy', ['-c', '-q', '-f', cfg], { stdio: 'pipe' });
  return performance.now() - started;
}

async function main(options: Options): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-bench-geomap-'));
  const geoMap = new GeoMap({ databases: options.databases });
  const rows: string[][] = [];
  try {
    const empty = join(dir, 'empty.map');
    writeFileSync(empty, '');
    writeFileSync(join(dir, 'empty.cfg'), haproxyConfig(empty));
    let first = true;
    for (const regions of options.regions) {
      const sites = sitesFor(regions, options.edgesPerRegion);
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      const built = await geoMap.build({ sites, pins: [], defaultRegion: DEFAULT_REGION });
      delay.disable();
      const mapPath = join(dir, `geo-${regions}.map`);
      writeFileSync(mapPath, built.map);
      const cfg = join(dir, `geo-${regions}.cfg`);
      writeFileSync(cfg, haproxyConfig(mapPath));
      const [withMap, withoutMap]: [number[], number[]] = [[], []];
      for (let run = 0; run < options.runs; run++) {
        withMap.push(checkMs(cfg));
        withoutMap.push(checkMs(join(dir, 'empty.cfg')));
      }
      process.stderr.write(`${regions} regions: ${built.entries} entries in ${built.ms.toFixed(0)} ms\n`);
      rows.push([
        String(regions),
        built.ipv4Entries.toLocaleString('en'),
        built.ipv6Entries.toLocaleString('en'),
        `${(built.bytes / 1e6).toFixed(1)} MB`,
        `${built.ms.toFixed(0)}${first ? ' (first)' : ''}`,
        built.buildMs.toFixed(0),
        (delay.max / 1e6).toFixed(0),
        spread(withMap, 0),
        spread(withoutMap, 0),
      ]);
      first = false;
    }
  } finally {
    await geoMap.close();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    renderTable({
      title: `HAProxy geo map from ${options.databases?.join(', ') ?? 'the bundled DB-IP City Lite (IPv4 + IPv6)'}, ${options.edgesPerRegion} edges per region`,
      head: ['regions', 'IPv4 entries', 'IPv6 entries', 'size', 'build ms', 'in worker ms', 'loop stall ms', 'haproxy -c ms', 'empty map ms'],
      rows,
      how: [
        'build: GeoMap.build() from call to answer; the first also starts the worker, reads the databases and decodes every record, later ones reuse them',
        'in worker: the build alone (walk of every network, nearest region per record, ORTC entries, text)',
        'loop stall: the longest delay of this process\'s event loop while the build ran (perf_hooks, 10 ms resolution)',
        `haproxy -c: median (and range) of ${options.runs} runs of \`haproxy -c -q\` on a config whose use_backend reads the map with map_ip, and of the same config on an empty map, alternately`,
        `machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
      ],
    }),
  );
  return 0;
}

await runCommand(parse, USAGE, main);
