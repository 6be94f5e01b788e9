/**
 * Geo map benchmark (reports, does not pass or fail): HAProxy's geo map built from the whole GeoIP
 * database (the bundled DB-IP City Lite, or --database files) for N regions, through the product's
 * GeoMap (a child process):
 *
 *   entries, bytes  the map's IPv4 and IPv6 lines and its size
 *   build           GeoMap.build() as the balancer waits for it, its process started (the first
 *                   build, which also starts it, is reported apart); per family, that family's
 *                   share of the work in that process
 *   loop delay      the longest stall of this (the balancer's) event loop during the build
 *   haproxy -c      `haproxy -c` of a config that reads the map (or one family's lines) with map_ip,
 *                   next to the same config reading an empty map, alternately, in the same run
 *                   (what each refresh of the balancer's HAProxy pays)
 *
 * With --balancer, then a real balancer's memory while it builds the map for the largest region
 * count and at rest, beside its start-up and map times (bench/lib/balancerMemory.ts; needs
 * Postgres, HAProxy and `npm run build`).
 *
 * Regions are placed as bench:balancer places them (seeded, anywhere between 70° S and 70° N),
 * each with --edges-per-region edges within half a degree.
 *
 *   npm run bench:geomap [-- --regions 10,50,100 --edges-per-region 10 --runs 3 --balancer]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { GeoMap } from '../balancer/GeoMap.ts';
import type { Position } from '../balancer/policies.ts';
import { spread } from '../kit/stats.ts';
import { measureBalancerMemory } from './lib/balancerMemory.ts';
import { integerOption, runCommand } from './lib/options.ts';
import { renderTable } from './lib/report.ts';

const USAGE = `npm run bench:geomap [-- options]

  --regions LIST         region counts to build the map for (default 10,50,100)
  --edges-per-region N   edges per region (default 10)
  --runs N               haproxy -c runs per map, with and without it (default 3)
  --database FILE        an .mmdb file (repeat for several, in GeoLocator's order); default the bundled DB-IP City Lite
  --balancer             also a real balancer's peak and resting memory with the largest region count (npm run build first)
`;

/** The region HAProxy falls back to: the first generated one. */
const DEFAULT_REGION = 'region-0';

interface Options {
  regions: number[];
  edgesPerRegion: number;
  runs: number;
  databases: string[] | undefined;
  balancer: boolean;
}

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      regions: { type: 'string', default: '10,50,100' },
      'edges-per-region': { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      database: { type: 'string', multiple: true },
      balancer: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  return {
    regions: values.regions.split(',').map((r) => integerOption('regions', r.trim())),
    edgesPerRegion: integerOption('edges-per-region', values['edges-per-region']),
    runs: integerOption('runs', values.runs),
    databases: values.database,
    balancer: values.balancer,
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

/** Median `haproxy -c` ms of a config reading `map`, written to `path` (runs alternate with the empty map's). */
function checkFigures(dir: string, name: string, map: Buffer, runs: number, empty: number[]): number[] {
  const mapPath = join(dir, `${name}.map`);
  writeFileSync(mapPath, map);
  const cfg = join(dir, `${name}.cfg`);
  writeFileSync(cfg, haproxyConfig(mapPath));
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    times.push(checkMs(cfg));
    empty.push(checkMs(join(dir, 'empty.cfg')));
  }
  return times;
}

async function main(options: Options): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-bench-geomap-'));
  const geoMap = new GeoMap({ databases: options.databases });
  const rows: string[][] = [];
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  let first: number | undefined;
  const empty: number[] = [];
  try {
    writeFileSync(join(dir, 'empty.map'), '');
    writeFileSync(join(dir, 'empty.cfg'), haproxyConfig(join(dir, 'empty.map')));
    // The first build starts the worker, reads the databases and decodes their records.
    first = (await geoMap.build({ sites: sitesFor(options.regions[0]!, options.edgesPerRegion), pins: [], defaultRegion: DEFAULT_REGION }, { out: join(dir, 'first.map') })).ms;
    for (const regions of options.regions) {
      const sites = sitesFor(regions, options.edgesPerRegion);
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      const built = await geoMap.build({ sites, pins: [], defaultRegion: DEFAULT_REGION }, { out: join(dir, `built-${regions}.map`) });
      delay.disable();
      // IPv4 lines come first: the map up to the first IPv6 line is the header and IPv4.
      const text = readFileSync(built.path);
      const header = text.indexOf(0x0a) + 1;
      const split = built.ipv6Entries > 0 ? text.lastIndexOf(0x0a, text.indexOf(':', header)) + 1 : text.length;
      const [ipv4, ipv6] = [text.subarray(0, split), Buffer.concat([text.subarray(0, header), text.subarray(split)])];
      const whole = checkFigures(dir, `geo-${regions}`, text, options.runs, empty);
      const v4 = checkFigures(dir, `geo-${regions}-ipv4`, ipv4, options.runs, empty);
      const v6 = checkFigures(dir, `geo-${regions}-ipv6`, ipv6, options.runs, empty);
      process.stderr.write(`${regions} regions: ${built.entries} entries in ${built.ms.toFixed(0)} ms\n`);
      rows.push([`${regions}`, 'all', built.entries.toLocaleString('en'), mb(built.bytes), built.ms.toFixed(0), (delay.max / 1e6).toFixed(0), spread(whole, 0)]);
      rows.push(['', 'IPv4', built.ipv4Entries.toLocaleString('en'), mb(ipv4.length), built.ipv4Ms.toFixed(0), '', spread(v4, 0)]);
      rows.push(['', 'IPv6', built.ipv6Entries.toLocaleString('en'), mb(ipv6.length), built.ipv6Ms.toFixed(0), '', spread(v6, 0)]);
    }
  } finally {
    await geoMap.close();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    renderTable({
      title: `HAProxy geo map from ${options.databases?.join(', ') ?? 'the bundled DB-IP City Lite (IPv4 + IPv6)'}, ${options.edgesPerRegion} edges per region`,
      head: ['regions', 'family', 'entries', 'size', 'build ms', 'loop stall ms', 'haproxy -c ms'],
      rows,
      how: [
        'build (all): GeoMap.build() from call to answer, its process reused (it keeps no decoded record between builds; the balancer starts one per build); IPv4/IPv6: each family\'s walk and entries in that process',
        `first build (${options.regions[0]} regions): ${first?.toFixed(0)} ms — it also starts the process`,
        "loop stall: the longest delay of this process's event loop while the build ran (perf_hooks, 10 ms resolution)",
        `haproxy -c: median (range) of ${options.runs} runs of \`haproxy -c -q\` on a config whose use_backend reads the map (whole, or one family's lines) with map_ip; the same config on an empty map, run alternately: ${spread(empty, 0)} ms`,
        `machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
      ],
    }),
  );
  if (options.balancer) {
    const regions = Math.max(...options.regions);
    process.stderr.write(`a balancer with edges in ${regions} regions: building the full map…\n`);
    const m = await measureBalancerMemory(regions, process.env.HAPROXY_BIN ?? 'haproxy');
    console.log(
      renderTable({
        title: `A balancer building the full geo map for ${regions} regions (relaycast balancer, HAProxy, --haproxy-geo-map full)`,
        head: ['ready ms', 'map built s', 'in HAProxy s', 'node peak MiB', 'map process peak MiB', 'tree peak MiB', 'node at rest MiB', 'HAProxy MiB'],
        rows: [[m.readyMs.toFixed(0), (m.builtMs / 1000).toFixed(1), (m.appliedMs / 1000).toFixed(1), `${m.nodePeakMiB}`, `${m.helperPeakMiB}`, `${m.treePeakMiB}`, `${m.nodeRestMiB}${m.helperRestMiB ? ` (+${m.helperRestMiB})` : ''}`, `${m.haproxyMiB}`]],
        how: [
          'ready: spawn → /readyz 200; map built / in HAProxy: from the last edge\'s registration to the build for every region logged, and to its map replaced through the runtime API',
          'node peak: VmHWM of the balancer\'s node process; map process peak: the largest sampled VmRSS (100 ms) of its other descendants but HAProxy; tree peak: the largest sample of the two summed',
          `at rest: VmRSS 30 s after the map is in HAProxy (any helper still running in brackets); HAProxy: its processes' VmRSS then, apart (the map's entries live there); load ${m.load}`,
        ],
      }),
    );
  }
  return 0;
}

await runCommand(parse, USAGE, main);
