/**
 * Balancer benchmark (reports, does not pass or fail), in one process, no network:
 *
 *   route decisions per second, per policy — rank() over a registry snapshot of 1,000 edges in
 *                                            50 regions (first three choices), for clients spread
 *                                            over the globe; and, as a baseline, the full ranking
 *   HAProxy config                           — render haproxy.cfg and a geo map of 100,000 networks
 *                                            for those edges, and check it with `haproxy -c`
 *
 *   npm run bench:balancer [-- --edges 1000 --regions 50 --networks 100000 --seconds 2]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderHaproxy, type GeoPin } from '../balancer/HaproxyConfig.ts';
import { createPolicy, POLICY_NAMES, rank, type NodeSnapshot } from '../balancer/policies.ts';

const { values } = parseArgs({
  options: {
    edges: { type: 'string', default: '1000' },
    regions: { type: 'string', default: '50' },
    networks: { type: 'string', default: '100000' },
    seconds: { type: 'string', default: '2' },
  },
});
const EDGES = Number(values.edges);
const REGIONS = Number(values.regions);
const NETWORKS = Number(values.networks);
const SECONDS = Number(values.seconds);

/** A repeatable pseudo-random sequence, so runs compare. */
let seed = 42;
const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);

const regionCentres = Array.from({ length: REGIONS }, (_, i) => ({ name: `region-${i}`, lat: rnd() * 140 - 70, lon: rnd() * 360 - 180 }));
const nodes: NodeSnapshot[] = Array.from({ length: EDGES }, (_, i) => {
  const r = regionCentres[i % REGIONS]!;
  return {
    id: `edge-${i}`,
    roles: ['edge'],
    region: r.name,
    lat: r.lat + rnd() - 0.5,
    lon: r.lon + rnd() - 0.5,
    publicUrl: `http://10.${(i >> 8) & 255}.${i & 255}.1:8080`,
    capacity: 1000,
    viewers: Math.floor(rnd() * 900),
    cpu: rnd() * 0.5,
    draining: rnd() < 0.02,
    streams: new Set(Array.from({ length: 5 }, () => `stream-${Math.floor(rnd() * 200)}`)),
    agentPort: 9090,
  };
});
const clients = Array.from({ length: 1000 }, () => ({ lat: rnd() * 140 - 70, lon: rnd() * 360 - 180 }));

console.log(`relaycast balancer benchmark: ${EDGES} edges in ${REGIONS} regions`);
console.log('route decisions per second (rank over the whole snapshot, one core):');
for (const name of POLICY_NAMES) {
  const policy = createPolicy(name, rnd);
  const thresholds = { streams: 0.8, viewers: 0.95 };
  let decisions = 0;
  const deadline = performance.now() + SECONDS * 1000;
  while (performance.now() < deadline) {
    for (let i = 0; i < 50; i++, decisions++) {
      // A decision: the pick and two to spill to, as the route API and the 307 need.
      rank(nodes, { stream: `stream-${decisions % 200}`, role: 'edge', location: clients[decisions % clients.length]! }, policy, thresholds, 3);
    }
  }
  let full = 0;
  const fullDeadline = performance.now() + (SECONDS * 1000) / 2;
  while (performance.now() < fullDeadline) {
    for (let i = 0; i < 10; i++, full++) rank(nodes, { stream: `stream-${full % 200}`, role: 'edge', location: clients[full % clients.length]! }, policy, thresholds);
  }
  console.log(
    `  ${name.padEnd(16)} ${Math.round(decisions / SECONDS).toLocaleString('en').padStart(9)} /s   (full ranking of all edges: ${Math.round((full * 2) / SECONDS).toLocaleString('en')} /s)`,
  );
}

const pins: GeoPin[] = Array.from({ length: NETWORKS }, (_, i) => ({
  cidr: `${11 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`,
  region: regionCentres[i % REGIONS]!.name,
}));
const dir = mkdtempSync(join(tmpdir(), 'relaycast-bench-haproxy-'));
const layout = {
  nodeId: 'bench',
  bind: '127.0.0.1:18081',
  mapPath: join(dir, 'geo.map'),
  runtimeSocket: join(dir, 'runtime.sock'),
  serverStateFile: join(dir, 'state'),
  balancer: '127.0.0.1:8080',
  defaultRegion: 'region-0',
};
const runs = 5;
const renderMs: number[] = [];
const checkMs: number[] = [];
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  const { cfg, map } = renderHaproxy(nodes, pins, layout);
  renderMs.push(performance.now() - t0);
  writeFileSync(layout.mapPath, map);
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  const t1 = performance.now();
  execFileSync('haproxy', ['-c', '-q', '-f', join(dir, 'haproxy.cfg')]);
  checkMs.push(performance.now() - t1);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`HAProxy config for ${EDGES} edges, ${REGIONS} regions, a geo map of ${NETWORKS.toLocaleString('en')} networks (median of ${runs}):`);
console.log(`  render ${median(renderMs).toFixed(0)} ms, haproxy -c ${median(checkMs).toFixed(0)} ms`);
