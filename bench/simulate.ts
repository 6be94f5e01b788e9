/**
 * Cluster simulator (reports, does not pass or fail): the balancer's own policies (balancer/policies.ts)
 * and autoscaling signal (balancer/capacity.ts) over a simulated cluster, policy by policy, with
 * the same viewers for each.
 *
 *   npm run simulate [-- --edges 10000 --regions 100 --viewers 1000000 --streams 2000 --zipf 1.0 --seed 1]
 *   npm run simulate -- --origin-max-relays 4 --edge-max-children 8 [--stream-kbps 2700]
 *
 * The world (bench/simulator/model.ts): region centres over the globe, each region's population
 * share Zipf-distributed (some regions hot), edges spread evenly over the regions (--edge-skew 1:
 * in proportion to population), one origin per region; streams of Zipf popularity, each published
 * on the origin nearest its publisher; viewers living around their region's centre, arriving as a
 * Poisson process over --arrival-minutes and watching for an exponential time (--watch-minutes).
 * Each join is routed as the balancer's WHEP 307 routes it, rank(nodes, request, policy,
 * thresholds, 1) with the client's position, over a snapshot updated at every join and leave;
 * a join is rejected when rank() returns nothing. See bench/simulator/deciders.ts for how that
 * stays exact without passing every node at every join, and how it is checked.
 *
 * With --origin-max-relays, each stream's relays form a tree (bench/simulator/tiers.ts) by the
 * edge's own parent order (edge/RelayTree.ts), the origin at its limit making room by moving a
 * relay below a newcomer (chooseDemotion); the table adds origin egress in Gbit/s (--stream-kbps
 * per stream), relays and joins per tier, path / great circle, those moves, and a re-attachment
 * after the --kill busiest parents die. Without it every edge pulls from its origin, as before
 * tiers. Egress counts as load (--egress-gbps per edge, 0: not modelled; --origin-egress-gbps).
 * --hash-balance-factors 0,125,…: HAProxy's bounded-load hashing in place of the 307, counting the
 * second relays it opens (bench/simulator/haproxy.ts; --whep-ms, --relay-open-ms).
 *
 * Prints a table (stdout) and writes bench/results/simulate-<time>.json and .svg (--out DIR).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { POLICY_NAMES, type PolicyName } from '../balancer/policies.ts';
import { integerOption, runCommand } from './lib/options.ts';
import { buildModel, DEFAULT_OPTIONS, type SimOptions } from './simulator/model.ts';
import { chart, describe, json, table } from './simulator/report.ts';
import { runPolicy, type PolicyResult } from './simulator/run.ts';

const d = DEFAULT_OPTIONS;

const USAGE = `npm run simulate [-- options]

The world:
  --edges N               edges (default ${d.edges})
  --regions N             regions (default ${d.regions})
  --viewers N             viewers over the run (default ${d.viewers})
  --streams N             streams (default ${d.streams})
  --zipf S                streams' popularity skew (default ${d.zipf})
  --region-zipf S         regions' population skew (default ${d.regionZipf})
  --edge-skew 0..1        edges in proportion to population (1) or even (0; default ${d.edgeSkew})
  --capacity N            viewers per edge (default ${d.capacity})
  --origins-per-region N  (default ${d.originsPerRegion})
  --spread-km KM          how far viewers live from their region's centre (default ${d.spreadKm})
  --arrival-minutes M     viewers arrive over M minutes (default ${d.arrivalMinutes})
  --watch-minutes M       mean watching time (default ${d.watchMinutes})
  --sample-seconds S      figures sampled every S simulated seconds (default ${d.sampleSeconds})
  --seed N                (default ${d.seed})
The balancer:
  --policies LIST         comma-separated, of ${POLICY_NAMES.join(', ')} (default: all)
  --stream-threshold L, --viewer-threshold L   (default ${d.thresholds.streams}, ${d.thresholds.viewers})
  --engine fast|rank      fast: first choices without sorting, checked against rank() (default ${d.engine})
  --verify, --checks N    check N joins against rank() over all nodes (default ${d.checks})
Relay tiers and egress:
  --origin-max-relays N, --edge-max-children N   relay trees by the edge's own parent order
  --stream-kbps N         every stream's bitrate (default ${d.streamKbps})
  --egress-gbps G         each edge's egress capacity (0: not modelled; default ${d.egressGbps})
  --origin-egress-gbps G  each origin's (0: unlimited; default ${d.originEgressGbps})
  --kill N                the N busiest parents die at the peak; re-attachment measured (default ${d.kill})
HAProxy's bounded-load hashing in place of the 307:
  --hash-balance-factors LIST   e.g. 0,125,200: second relays counted per factor
  --whep-ms MS, --relay-open-ms MS   how long a join and a relay open take (default ${d.haproxyTiming.joinMs}, ${d.haproxyTiming.openMs})
  --out DIR               where the JSON and SVG go (default bench/results)
`;

/** The options, or undefined for --help; throws on a bad one (runCommand prints it with the usage, exit 2). */
function parse(argv: string[]): SimOptions & { out: string } | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h', default: false },
      edges: { type: 'string', default: String(d.edges) },
      regions: { type: 'string', default: String(d.regions) },
      viewers: { type: 'string', default: String(d.viewers) },
      streams: { type: 'string', default: String(d.streams) },
      zipf: { type: 'string', default: String(d.zipf) },
      'region-zipf': { type: 'string', default: String(d.regionZipf) },
      'edge-skew': { type: 'string', default: String(d.edgeSkew) },
      capacity: { type: 'string', default: String(d.capacity) },
      'origins-per-region': { type: 'string', default: String(d.originsPerRegion) },
      'spread-km': { type: 'string', default: String(d.spreadKm) },
      'arrival-minutes': { type: 'string', default: String(d.arrivalMinutes) },
      'watch-minutes': { type: 'string', default: String(d.watchMinutes) },
      'sample-seconds': { type: 'string', default: String(d.sampleSeconds) },
      'stream-threshold': { type: 'string', default: String(d.thresholds.streams) },
      'viewer-threshold': { type: 'string', default: String(d.thresholds.viewers) },
      seed: { type: 'string', default: String(d.seed) },
      policies: { type: 'string', default: POLICY_NAMES.join(',') },
      engine: { type: 'string', default: d.engine },
      'origin-max-relays': { type: 'string' },
      'edge-max-children': { type: 'string' },
      'stream-kbps': { type: 'string' },
      'egress-gbps': { type: 'string', default: String(d.egressGbps) },
      'origin-egress-gbps': { type: 'string', default: String(d.originEgressGbps) },
      kill: { type: 'string', default: String(d.kill) },
      'hash-balance-factors': { type: 'string', default: '' },
      'whep-ms': { type: 'string', default: String(d.haproxyTiming.joinMs) },
      'relay-open-ms': { type: 'string', default: String(d.haproxyTiming.openMs) },
      verify: { type: 'boolean', default: false },
      checks: { type: 'string', default: String(d.checks) },
      out: { type: 'string', default: fileURLToPath(new URL('./results/', import.meta.url)) },
    },
  });

  function number(name: keyof typeof values): number {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < 0) throw new RangeError(`--${name} must be a number >= 0, got ${values[name]}`);
    return n;
  }
  const policies = String(values.policies).split(',').filter(Boolean);
  for (const p of policies) if (!(POLICY_NAMES as readonly string[]).includes(p)) throw new RangeError(`unknown policy "${p}" (${POLICY_NAMES.join(', ')})`);
  if (values.engine !== 'fast' && values.engine !== 'rank') throw new RangeError('--engine is fast or rank');

  if (values.help) return undefined;
  return {
    edges: number('edges'),
    regions: number('regions'),
    viewers: number('viewers'),
    streams: number('streams'),
    zipf: number('zipf'),
    regionZipf: number('region-zipf'),
    edgeSkew: Math.min(1, number('edge-skew')),
    capacity: number('capacity'),
    originsPerRegion: Math.max(1, number('origins-per-region')),
    spreadKm: number('spread-km'),
    arrivalMinutes: number('arrival-minutes'),
    watchMinutes: number('watch-minutes'),
    sampleSeconds: Math.max(1, number('sample-seconds')),
    seed: number('seed'),
    thresholds: { streams: number('stream-threshold'), viewers: number('viewer-threshold') },
    policies: policies as PolicyName[],
    engine: values.engine,
    tiers: {
      originMaxRelays: values['origin-max-relays'] === undefined ? undefined : integerOption('origin-max-relays', values['origin-max-relays']),
      edgeMaxChildren: values['edge-max-children'] === undefined ? undefined : integerOption('edge-max-children', values['edge-max-children']),
    },
    streamKbps: integerOption('stream-kbps', values['stream-kbps'], d.streamKbps),
    egressGbps: number('egress-gbps'),
    originEgressGbps: number('origin-egress-gbps'),
    kill: number('kill'),
    hashBalanceFactors: String(values['hash-balance-factors'])
      .split(',')
      .filter(Boolean)
      .map((f) => integerOption('hash-balance-factors', f, undefined, 0)),
    haproxyTiming: { joinMs: number('whep-ms'), openMs: number('relay-open-ms') },
    verify: Boolean(values.verify),
    checks: number('checks'),
    out: String(values.out),
  };
}

async function main(options: SimOptions & { out: string }): Promise<number> {
  const tty = process.stderr.isTTY;
  const t0 = performance.now();
  process.stderr.write('building the cluster and the viewers… ');
  const model = buildModel(options);
  process.stderr.write(`${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const subtitle = describe(options, model.nodes.length - model.edgeCount);

  const results: PolicyResult[] = [];
  for (const name of options.policies) {
    const started = performance.now();
    let reported = -1;
    let drawn = 0;
    const result = runPolicy(model, name, (done, total) => {
      const share = done / total;
      const elapsed = ((performance.now() - started) / 1000).toFixed(1);
      if (tty) {
        if (done < total && performance.now() - drawn < 100) return;
        drawn = performance.now();
        const filled = Math.round(share * 30);
        process.stderr.write(`\r\x1b[K${name.padEnd(16)} [${'#'.repeat(filled)}${'.'.repeat(30 - filled)}] ${(share * 100).toFixed(0).padStart(3)} %  ${done.toLocaleString('en')} joins  ${elapsed} s`);
      } else if (Math.floor(share * 4) > reported) {
        reported = Math.floor(share * 4);
        process.stderr.write(`${name}: ${(share * 100).toFixed(0)} % of ${total.toLocaleString('en')} joins, ${elapsed} s\n`);
      }
    });
    if (tty) process.stderr.write('\r\x1b[K');
    process.stderr.write(`${name}: ${result.seconds.toFixed(1)} s\n`);
    results.push(result);
  }

  for (const factor of options.hashBalanceFactors) {
    const result = runPolicy(model, 'stream-affinity', undefined, undefined, factor);
    process.stderr.write(`haproxy ${factor}: ${result.seconds.toFixed(1)} s\n`);
    results.push(result);
  }

  const generated = new Date();
  const stem = join(options.out, `simulate-${generated.toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(options.out, { recursive: true });
  writeFileSync(`${stem}.json`, json(options, results, generated));
  writeFileSync(`${stem}.svg`, chart(results, subtitle));

  console.log(`relaycast cluster simulator: ${subtitle}`);
  console.log(table(results));
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${stem}.json and ${stem}.svg`);
  for (const r of results) for (const example of r.mismatchExamples) console.log(`MISMATCH ${example}`);
  return results.some((r) => r.mismatches > 0) ? 1 : 0;
}

await runCommand(parse, USAGE, main);
