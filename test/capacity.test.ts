import assert from 'node:assert/strict';
import { planCapacity, SCALE_DOWN_BAND, type CapacitySettings, type EdgeSample } from '../balancer/capacity.ts';

/** The autoscaling signal: edges wanted per region as load rises, falls, and one region runs hot. */

const settings: CapacitySettings = { targetUtilisation: 0.7, slackViewers: 100, minEdges: 1, defaultCapacity: 1000 };

/** `n` edges of 1,000 viewers in `region`, sharing `viewers` evenly. */
function region(name: string, n: number, viewers: number, extra: Partial<EdgeSample> = {}): EdgeSample[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${name}-${i}`, region: name, capacity: 1000, viewers: Math.round(viewers / n), cpu: 0, draining: false, ...extra }));
}

const plan = (edges: EdgeSample[], regions: string[] = []) => Object.fromEntries(planCapacity(edges, settings, regions).map((r) => [r.region, r]));

describe('capacity planning (autoscaling signal)', () => {
  it('keeps the floor in an idle region, and lists regions that have no edge up', () => {
    const p = plan(region('eu', 1, 0), ['eu', 'us']);
    assert.equal(p.eu!.desiredEdges, 1);
    assert.equal(p.us!.edges, 0);
    assert.equal(p.us!.desiredEdges, 1, 'a region whose edges are all gone wants one back');
    assert.equal(planCapacity([], { ...settings, minEdges: 0 }, ['us'])[0]!.desiredEdges, 1, 'the slack floor alone asks for one edge');
    assert.equal(planCapacity([], { ...settings, minEdges: 0, slackViewers: 0 }, ['us'])[0]!.desiredEdges, 0, 'scale to zero when allowed');
  });

  it('grows as load rises: demand over the target utilisation, in whole edges', () => {
    const wanted: number[] = [];
    for (const viewers of [0, 500, 700, 701, 1400, 2500, 7000]) wanted.push(plan(region('eu', 2, viewers)).eu!.wantedEdges);
    // Two idle edges want one (the slack floor); 700 viewers at 70 % fill exactly one edge but are
    // inside the scale-down band of two (700 / 0.56 = 1,250 slots), so two stay; 701 need two
    // anyway; 2,500 → 3,571 slots → 4 edges; 7,000 → 10.
    assert.deepEqual(wanted, [1, 1, 2, 2, 2, 4, 10]);
    const cold = plan(region('eu', 1, 0)).eu!;
    assert.equal(plan(region('eu', 1, 701)).eu!.wantedEdges, 2);
    assert.deepEqual(cold.drainCandidates, []);
  });

  it('counts CPU as load: an edge at 90 % CPU with few viewers is nearly full', () => {
    const p = plan(region('eu', 2, 100, { cpu: 0.9 })).eu!;
    assert.equal(p.demand, 1800);
    assert.equal(p.wantedEdges, 3);
  });

  it('shrinks only below the scale-down band, naming the least-loaded edges to drain', () => {
    const edges = [...region('eu', 4, 0)];
    edges[0]!.viewers = 300;
    edges[1]!.viewers = 50;
    edges[2]!.viewers = 200;
    edges[3]!.viewers = 100;
    // 650 viewers: up needs 1 edge (929 slots), down needs 2 (650 / 0.56 = 1,161): keep 2.
    const p = plan(edges).eu!;
    assert.equal(p.wantedEdges, 2);
    assert.deepEqual(p.drainCandidates, ['eu-1', 'eu-3']);
    // Just under the band on 3 edges (3 × 1,000 × 0.56 = 1,680): stay at 3 until demand is lower.
    assert.equal(plan(region('eu', 3, 1650)).eu!.wantedEdges, 3);
    assert.equal(plan(region('eu', 3, 1200)).eu!.wantedEdges, 3, 'inside the band: no flapping');
    assert.equal(plan(region('eu', 3, 1100)).eu!.wantedEdges, 2);
    assert.ok(SCALE_DOWN_BAND < 1);
  });

  it('falls back only once drained edges are empty: busy drained edges stay counted', () => {
    const edges = [...region('eu', 2, 200), { id: 'eu-old', region: 'eu', capacity: 1000, viewers: 150, cpu: 0, draining: true }];
    const busy = plan(edges).eu!;
    assert.equal(busy.edges, 2);
    assert.equal(busy.drainingBusy, 1);
    assert.equal(busy.desiredEdges, busy.wantedEdges + 1);
    assert.equal(busy.demand, 350, "the drained edge's viewers count as demand on the others");
    edges[2]!.viewers = 0;
    assert.equal(plan(edges).eu!.desiredEdges, plan(edges).eu!.wantedEdges);
  });

  it('one hot region grows while the others stay put', () => {
    const before = plan([...region('eu', 2, 800), ...region('us', 2, 800), ...region('ap', 2, 800)]);
    const after = plan([...region('eu', 2, 800), ...region('us', 2, 3000), ...region('ap', 2, 800)]);
    assert.deepEqual([before.eu!.wantedEdges, before.us!.wantedEdges, before.ap!.wantedEdges], [2, 2, 2]);
    assert.deepEqual([after.eu!.wantedEdges, after.us!.wantedEdges, after.ap!.wantedEdges], [2, 5, 2]);
    assert.equal(after.us!.utilisation, 1.5);
  });

  it('refuses nonsense settings', () => {
    assert.throws(() => planCapacity([], { ...settings, targetUtilisation: 0 }), TypeError);
    assert.throws(() => planCapacity([], { ...settings, targetUtilisation: 1.2 }), TypeError);
    assert.throws(() => planCapacity([], { ...settings, slackViewers: -1 }), TypeError);
  });
});
