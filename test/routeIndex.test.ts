import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RouteIndex } from '../balancer/RouteIndex.ts';
import { createPolicy, POLICY_NAMES, rank, type NodeSnapshot, type RouteRequest, type Thresholds } from '../balancer/policies.ts';

/**
 * The route index answers what rank() answers: for every policy, random registry snapshots
 * (edges, origins, both; draining, full, serving streams; regions over the globe) and random
 * requests (by position, pinned region, both, neither; limits 1, 3 and all), the same nodes in
 * the same order with the same distances and loads. Stateful policies (round-robin, random) get
 * one instance on each side, fed the same requests in the same order, so they must also be asked
 * for the same regions.
 */

const THRESHOLDS: Thresholds = { streams: 0.8, viewers: 0.95 };
const STREAMS = ['s0', 's1', 's2', 's3', 's4'];

const region = fc.record({ name: fc.constantFrom('r0', 'r1', 'r2', 'r3', 'r4', 'r5'), lat: fc.double({ min: -60, max: 60, noNaN: true }), lon: fc.double({ min: -179, max: 179, noNaN: true }) });

const snapshot = fc
  .tuple(
    fc.uniqueArray(region, { minLength: 1, maxLength: 6, selector: (r) => r.name }),
    fc.array(
      fc.record({
        region: fc.nat(5),
        roles: fc.constantFrom(['edge'], ['origin'], ['edge', 'origin'], ['balancer']),
        jitter: fc.tuple(fc.double({ min: -2, max: 2, noNaN: true }), fc.double({ min: -2, max: 2, noNaN: true })),
        viewers: fc.nat(110),
        capacity: fc.constantFrom(50, 100),
        cpu: fc.constantFrom(0, 0.1, 0.85, 0.97),
        draining: fc.boolean(),
        streams: fc.subarray(STREAMS),
      }),
      { maxLength: 40 },
    ),
  )
  .map(([regions, specs]) =>
    specs.map((s, i): NodeSnapshot => {
      const r = regions[s.region % regions.length]!;
      return {
        id: `n${(i * 7) % 41}-${i}`,
        roles: [...s.roles],
        region: r.name,
        lat: r.lat + s.jitter[0],
        lon: r.lon + s.jitter[1],
        publicUrl: `http://127.0.0.1:${10_000 + i}`,
        capacity: s.capacity,
        viewers: s.viewers,
        cpu: s.cpu,
        draining: s.draining,
        streams: new Set(s.streams),
      };
    }),
  );

const request = fc.record({
  stream: fc.constantFrom(...STREAMS, 'new'),
  role: fc.constantFrom<RouteRequest['role']>('edge', 'origin'),
  where: fc.constantFrom('position', 'region', 'both', 'nowhere'),
  region: fc.constantFrom('r0', 'r1', 'r2', 'r9'),
  lat: fc.double({ min: -70, max: 70, noNaN: true }),
  lon: fc.double({ min: -180, max: 180, noNaN: true }),
  limit: fc.constantFrom(1, 3, Infinity),
});

function toRequest(r: { stream: string; role: RouteRequest['role']; where: string; region: string; lat: number; lon: number }): RouteRequest {
  const position = { lat: r.lat, lon: r.lon };
  const location = r.where === 'position' ? position : r.where === 'region' ? { region: r.region } : r.where === 'both' ? { region: r.region, ...position } : {};
  return { stream: r.stream, role: r.role, location };
}

const seeded = (seed: number) => () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
const view = (choices: ReturnType<typeof rank>) => choices.map((c) => ({ id: c.node.id, km: c.distanceKm, load: c.load }));

describe('route index', () => {
  for (const name of POLICY_NAMES) {
    it(`picks exactly what rank() picks (${name})`, () => {
      fc.assert(
        fc.property(snapshot, fc.array(request, { minLength: 1, maxLength: 8 }), (nodes, requests) => {
          const byRank = createPolicy(name, seeded(11));
          const byIndex = createPolicy(name, seeded(11));
          const index = new RouteIndex(nodes, byIndex, THRESHOLDS);
          for (const r of requests) {
            const req = toRequest(r);
            assert.deepEqual(view(index.rank(req, r.limit)), view(rank(nodes, req, byRank, THRESHOLDS, r.limit)));
          }
        }),
        { seed: 20261128, numRuns: 300 },
      );
    });
  }

  it('keeps region orders across snapshots only while no node has moved', () => {
    fc.assert(
      fc.property(snapshot, snapshot, fc.array(request, { minLength: 1, maxLength: 8 }), fc.boolean(), (first, other, requests, sameGeography) => {
        // The next snapshot: the same nodes with other loads (same geography), or another cluster.
        const second = sameGeography ? first.map((n, i) => ({ ...n, viewers: (n.viewers * 7 + i) % 110, draining: !n.draining })) : other;
        const policy = createPolicy('compact');
        const before = new RouteIndex(first, policy, THRESHOLDS);
        for (const r of requests) before.rank(toRequest(r), r.limit);
        const after = new RouteIndex(second, policy, THRESHOLDS, before);
        for (const r of requests) assert.deepEqual(view(after.rank(toRequest(r), r.limit)), view(rank(second, toRequest(r), policy, THRESHOLDS, r.limit)));
      }),
      { seed: 20261129, numRuns: 300 },
    );
  });

  it('skips full and draining nodes, and a region with none left, for the next-nearest', () => {
    const at = (id: string, region: string, lat: number, lon: number, extra: Partial<NodeSnapshot> = {}): NodeSnapshot => ({
      id, roles: ['edge'], region, lat, lon, publicUrl: `http://${id}`, capacity: 100, viewers: 0, cpu: 0, draining: false, streams: new Set(), ...extra,
    });
    const nodes = [at('paris-1', 'eu', 48.9, 2.3, { viewers: 96 }), at('paris-2', 'eu', 48.9, 2.4, { draining: true }), at('nyc-1', 'us', 40.7, -74, {}), at('tokyo-1', 'ap', 35.7, 139.7)];
    const index = new RouteIndex(nodes, createPolicy('compact'), THRESHOLDS);
    const fromLondon: RouteRequest = { stream: 'show', role: 'edge', location: { lat: 51.5, lon: -0.1 } };
    assert.deepEqual(index.rank(fromLondon).map((c) => c.node.id), ['nyc-1', 'tokyo-1']);
    assert.deepEqual(index.rank({ ...fromLondon, role: 'origin' }), []);
  });
});
