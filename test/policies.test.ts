import assert from 'node:assert/strict';
import { compact, createPolicy, distanceKm, loadOf, rank, rendezvousScore, streamAffinity, type NodeSnapshot, type RouteRequest, type Thresholds } from '../balancer/policies.ts';

/** Unit tests of edge selection: pure functions over made-up registry snapshots. */

const THRESHOLDS: Thresholds = { streams: 0.8, viewers: 0.95 };

function node(id: string, region: string, viewers: number, extra: Partial<NodeSnapshot> = {}): NodeSnapshot {
  const coords: Record<string, [number, number]> = { paris: [48.86, 2.35], frankfurt: [50.11, 8.68], virginia: [38.9, -77.04], tokyo: [35.68, 139.69] };
  const [lat, lon] = coords[region]!;
  return { id, roles: ['edge'], region, lat, lon, publicUrl: `http://${id}`, capacity: 100, viewers, cpu: 0, draining: false, streams: new Set(), ...extra };
}

const fromParis: RouteRequest = { stream: 'show', role: 'edge', location: { lat: 48.8, lon: 2.3 } };
const ids = (choices: Array<{ node: NodeSnapshot }>) => choices.map((c) => c.node.id);

describe('edge selection policies', () => {
  const paris = [node('p1', 'paris', 50), node('p2', 'paris', 10), node('p3', 'paris', 70)];
  const elsewhere = [node('f1', 'frankfurt', 0), node('v1', 'virginia', 0), node('t1', 'tokyo', 0)];
  const all = [...paris, ...elsewhere];

  it('measures load as the largest of viewer share, CPU and egress share, and distance on the globe', () => {
    assert.equal(loadOf(node('a', 'paris', 30)), 0.3);
    assert.equal(loadOf(node('a', 'paris', 30, { cpu: 0.9 })), 0.9);
    assert.equal(loadOf(node('a', 'paris', 30, { bitrateOut: 600e6, egressCapacity: 1e9 })), 0.6);
    assert.equal(loadOf(node('a', 'paris', 30, { bitrateOut: 100e6, egressCapacity: 1e9 })), 0.3);
    const km = distanceKm({ lat: 48.86, lon: 2.35 }, { lat: 51.51, lon: -0.13 });
    assert.ok(km > 330 && km < 360, `Paris–London ${km} km`);
  });

  it('a node sending its egress capacity takes no viewers, however few it has', () => {
    // p2 has the fewest viewers, but sends 96 % of its network's capacity (a stream fed to many edges).
    const full = [node('p1', 'paris', 50), node('p2', 'paris', 10, { bitrateOut: 960e6, egressCapacity: 1e9 })];
    assert.deepEqual(ids(rank(full, fromParis, createPolicy('least-used'), THRESHOLDS)), ['p1']);
  });

  it('packing fills the busiest node under the threshold first', () => {
    assert.deepEqual(ids(rank(all, fromParis, createPolicy('packing'), THRESHOLDS)).slice(0, 3), ['p3', 'p1', 'p2']);
  });

  it('least-used takes the idlest node first', () => {
    assert.deepEqual(ids(rank(all, fromParis, createPolicy('least-used'), THRESHOLDS)).slice(0, 3), ['p2', 'p1', 'p3']);
  });

  it('round-robin rotates through a region', () => {
    const policy = createPolicy('round-robin');
    const firsts = [0, 1, 2, 3].map(() => ids(rank(all, fromParis, policy, THRESHOLDS))[0]);
    assert.deepEqual(firsts, ['p1', 'p2', 'p3', 'p1']);
  });

  it('round-robin keeps one rotation per role: publishes in between do not skip viewers\' turns', () => {
    const policy = createPolicy('round-robin');
    const both = all.map((n) => ({ ...n, roles: ['edge', 'origin'] }));
    const publish: RouteRequest = { ...fromParis, role: 'origin' };
    const firsts = [0, 1, 2].map(() => {
      const viewer = ids(rank(both, fromParis, policy, THRESHOLDS))[0];
      rank(both, publish, policy, THRESHOLDS);
      return viewer;
    });
    assert.deepEqual(firsts, ['p1', 'p2', 'p3']);
  });

  it('random shuffles within the region and keeps regions in order', () => {
    let seed = 7;
    const policy = createPolicy('random', () => ((seed = (seed * 16807) % 2147483647) / 2147483647));
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const ranked = ids(rank(all, fromParis, policy, THRESHOLDS));
      seen.add(ranked[0]!);
      assert.deepEqual(new Set(ranked.slice(0, 3)), new Set(['p1', 'p2', 'p3']));
      assert.deepEqual(ranked.slice(3), ['f1', 'v1', 't1']);
    }
    assert.equal(seen.size, 3, 'every Paris node comes first sometimes');
  });

  it('stream-affinity sends a stream to the same node, spreads streams, and passes over an overloaded node', () => {
    const even = [node('a', 'paris', 20), node('b', 'paris', 20), node('c', 'paris', 20), node('d', 'paris', 20)];
    const firstFor = (stream: string, nodes: NodeSnapshot[]) => ids(rank(nodes, { ...fromParis, stream }, streamAffinity, THRESHOLDS))[0];
    assert.equal(firstFor('show', even), firstFor('show', even), 'deterministic');
    const spread = new Set(Array.from({ length: 40 }, (_, i) => firstFor(`stream-${i}`, even)));
    assert.ok(spread.size >= 3, `40 streams over ${spread.size} of 4 nodes`);
    const favourite = firstFor('show', even)!;
    const loaded = even.map((n) => (n.id === favourite ? { ...n, viewers: 60 } : n));
    assert.notEqual(firstFor('show', loaded), favourite, 'bounded load moves the stream on');
  });

  it('rendezvous scores spread streams evenly over nodes', () => {
    const wins = new Map<string, number>();
    const nodes = Array.from({ length: 10 }, (_, i) => `edge-${i}`);
    for (let s = 0; s < 1000; s++) {
      const best = nodes.reduce((a, b) => (rendezvousScore(`stream-${s}`, b) > rendezvousScore(`stream-${s}`, a) ? b : a));
      wins.set(best, (wins.get(best) ?? 0) + 1);
    }
    // 100 each on average; a hash that did not mix the node's name in would give one node most.
    assert.equal(wins.size, 10);
    for (const [id, n] of wins) assert.ok(n > 60 && n < 140, `${id} won ${n} of 1000 streams`);
  });

  it('compact keeps new viewers on the first edges of a region and streams together; stream-affinity spreads them', () => {
    // 300 viewers join one by one, each where the policy sends it (snapshot kept current): 12
    // streams starting one after another, 25 viewers each.
    const fill = (policy: typeof compact) => {
      const live = new Map(Array.from({ length: 8 }, (_, i) => node(`p${i}`, 'paris', 0)).map((n) => [n.id, n]));
      for (let v = 0; v < 300; v++) {
        const stream = `stream-${Math.floor(v / 25)}`;
        const [first] = rank([...live.values()], { ...fromParis, stream }, policy, THRESHOLDS, 1);
        const chosen = live.get(first!.node.id)!;
        live.set(chosen.id, { ...chosen, viewers: chosen.viewers + 1, streams: new Set([...chosen.streams, stream]) });
      }
      const used = [...live.values()].filter((n) => n.viewers > 0);
      return { used, relays: used.reduce((sum, n) => sum + n.streams.size, 0), text: used.map((n) => `${n.id}:${n.viewers}/${n.streams.size}`).join(' ') };
    };
    const packed = fill(compact);
    const spread = fill(streamAffinity);
    // 300 viewers at 100 per edge fill 4 edges at the 80 % target.
    assert.ok(packed.used.length <= 4, `compact: ${packed.text}`);
    assert.deepEqual(packed.used.map((n) => n.id), ['p0', 'p1', 'p2', 'p3'].slice(0, packed.used.length), 'the first edges by id');
    assert.equal(spread.used.length, 8, `stream-affinity: ${spread.text}`);
    // A stream moves on to a second edge only when its first is full: once per edge filled.
    assert.ok(packed.relays <= 12 + packed.used.length, `relays: compact ${packed.relays} (${packed.text}), stream-affinity ${spread.relays} (${spread.text})`);
    for (const n of packed.used) assert.ok(loadOf(n) <= THRESHOLDS.viewers, `${n.id} at ${loadOf(n)}`);
  });

  it('keeps a node over the stream threshold for viewers of streams it already carries, until the viewer threshold', () => {
    const busy = node('busy', 'paris', 85, { streams: new Set(['show']) });
    const nodes = [busy, node('v1', 'virginia', 0)];
    assert.equal(ids(rank(nodes, fromParis, createPolicy('least-used'), THRESHOLDS))[0], 'busy', 'carries the stream: open to viewers');
    assert.equal(ids(rank(nodes, { ...fromParis, stream: 'other' }, createPolicy('least-used'), THRESHOLDS))[0], 'v1', 'closed to a new stream');
    const full = { ...busy, viewers: 96 };
    assert.deepEqual(ids(rank([full, node('v1', 'virginia', 0)], fromParis, createPolicy('least-used'), THRESHOLDS)), ['v1'], 'closed to viewers');
  });

  it('spills to the next-nearest region when the nearest is full or draining', () => {
    const full = [node('p1', 'paris', 90), node('p2', 'paris', 0, { draining: true }), ...elsewhere];
    assert.deepEqual(ids(rank(full, fromParis, createPolicy('least-used'), THRESHOLDS)), ['f1', 'v1', 't1']);
  });

  it('puts a pinned region first, then the regions nearest to it', () => {
    const fromTokyoPin: RouteRequest = { stream: 'show', role: 'edge', location: { region: 'tokyo' } };
    assert.deepEqual(ids(rank(all, fromTokyoPin, createPolicy('least-used'), THRESHOLDS)).slice(0, 1), ['t1']);
    const fromVirginiaPin: RouteRequest = { stream: 'show', role: 'edge', location: { region: 'virginia' } };
    const order = ids(rank(all, fromVirginiaPin, createPolicy('least-used'), THRESHOLDS));
    assert.equal(order[0], 'v1');
    assert.ok(order.indexOf('p2') < order.indexOf('t1'), 'Europe is nearer Virginia than Tokyo');
  });

  it('routes publishers to origins only', () => {
    const origin = { ...node('o1', 'frankfurt', 0), roles: ['origin'] };
    const choices = rank([...all, origin], { ...fromParis, role: 'origin' }, createPolicy('least-used'), THRESHOLDS);
    assert.deepEqual(ids(choices), ['o1']);
  });
});
