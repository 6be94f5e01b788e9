import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { POLICY_NAMES } from '../balancer/policies.ts';
import { Cluster } from '../bench/simulator/cluster.ts';
import { buildModel, DEFAULT_OPTIONS, type SimOptions } from '../bench/simulator/model.ts';
import { METRICS } from '../bench/simulator/report.ts';
import { runPolicy, type PolicyResult } from '../bench/simulator/run.ts';
import { ORIGIN, type RelayTrees } from '../bench/simulator/tiers.ts';
import { distanceKm } from '../core/geo.ts';
import { LOCAL_KM, MAX_STRETCH } from '../media/treePaths.ts';

/**
 * Smoke test of the cluster simulator (bench/simulate.ts) at a tiny size, so that it keeps working.
 * No timing assertions. The simulator does not pass all nodes to rank() at every join (too slow at
 * a million viewers); here every join is also routed by rank() over all nodes, and must land on
 * the same edge, in both of the simulator's engines, in a roomy cluster and in one so small that
 * regions fill up, spill to their neighbours and turn viewers away.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TINY: SimOptions = { ...DEFAULT_OPTIONS, edges: 200, regions: 10, viewers: 5000, streams: 300, policies: [...POLICY_NAMES] };

const withoutTimes = (results: PolicyResult[]) => results.map(({ seconds: _s, cpuSeconds: _c, ...figures }) => figures);

describe('cluster simulator', () => {
  for (const capacity of [500, 8]) {
    it(`chooses, at every join, the edge rank() over all nodes chooses (capacity ${capacity}), in both engines`, () => {
      const byEngine = (['fast', 'rank'] as const).map((engine) => {
        const model = buildModel({ ...TINY, capacity, engine, verify: true });
        return POLICY_NAMES.map((name) => {
          const r = runPolicy(model, name);
          assert.equal(r.checked, TINY.viewers, `${engine} ${name}: every join checked`);
          assert.equal(r.mismatches, 0, `${engine} ${name}:\n${r.mismatchExamples.join('\n')}`);
          if (capacity === 8) assert.ok(r.rejected > 0 && r.ownRegionShare < 0.9, `${engine} ${name}: the small cluster overflows`);
          return r;
        });
      });
      assert.deepEqual(withoutTimes(byEngine[0]!), withoutTimes(byEngine[1]!), 'both engines give the same figures');
    });
  }

  describe('relay tiers', () => {
    const LIMITS = { originMaxRelays: 2, edgeMaxChildren: 3 };

    /** The trees' invariants, from the live relays alone: limits, parents, tiers, no loop. */
    function checkTrees(trees: RelayTrees, streams: number): void {
      const relays = new Map<string, ReturnType<RelayTrees['get']> & object>();
      for (const r of trees.relays()) relays.set(`${r.edge}:${r.stream}`, r);
      const fromOrigin = new Int32Array(streams);
      const children = new Map<string, number>();
      for (const r of relays.values()) {
        if (r.parent === ORIGIN) {
          fromOrigin[r.stream]!++;
          assert.equal(r.tier, 0);
          continue;
        }
        const parent = relays.get(`${r.parent}:${r.stream}`);
        assert.ok(parent, `relay ${r.edge}:${r.stream}: its parent ${r.parent} relays the stream`);
        assert.ok(parent.treeKey < r.treeKey, 'a parent opened before its child');
        assert.equal(r.tier, parent.tier + 1);
        assert.ok(Math.abs(r.pathKm - (parent.pathKm + distanceKm(parent, r))) < 1e-6, 'a path is its parent’s and the hop');
        children.set(`${r.parent}:${r.stream}`, (children.get(`${r.parent}:${r.stream}`) ?? 0) + 1);
        // Up the chain: the origin within as many steps as there are relays, never the same relay twice.
        const seen = new Set<string>();
        for (let at: typeof r | undefined = r; at && at.parent !== ORIGIN; at = relays.get(`${at.parent}:${at.stream}`)) {
          assert.ok(!seen.has(`${at.edge}`), `loop through edge ${at.edge}, stream ${r.stream}`);
          seen.add(`${at.edge}`);
        }
      }
      for (const count of fromOrigin) assert.ok(count <= LIMITS.originMaxRelays, `origin feeds ${count} edges one stream`);
      for (const r of relays.values()) if (r.parent === ORIGIN) assert.ok(Math.abs(r.pathKm - r.directKm) < 1e-6, 'fed by the origin: the great circle');
      for (const r of relays.values()) {
        assert.equal(r.children, children.get(`${r.edge}:${r.stream}`) ?? 0, 'children counted');
        assert.ok(r.children <= LIMITS.edgeMaxChildren, `relay feeds ${r.children} edges`);
      }
    }

    it('keeps every relay tree within the limits, loop-free and rooted at the origin, and still routes as rank() does', () => {
      for (const name of POLICY_NAMES) {
        const model = buildModel({ ...TINY, tiers: LIMITS, verify: true });
        let checks = 0;
        const r = runPolicy(model, name, undefined, (cluster) => {
          if (++checks % 97 === 0) checkTrees(cluster.trees, TINY.streams);
          // Viewers stop at the viewer threshold and parents refuse past their egress: no edge above its capacity.
          if (checks % 97 === 0) for (let e = 0; e < model.edgeCount; e++) assert.ok(cluster.egressOf(e) <= cluster.edgeEgressBps, `edge ${e} sends ${cluster.egressOf(e)} bit/s`);
        });
        assert.equal(r.overflows, 0, `${name}: every relay found an upstream that takes it`);
        assert.ok(r.demotions > 0, `${name}: the trees above were checked with relays moved below newcomers`);
        assert.ok(r.egressPeakShare > 0 && r.egressPeakShare <= 1, `${name}: busiest edge at ${r.egressPeakShare} of its egress`);
        assert.ok(r.p95Tier <= r.viewersByTier.length - 1);
        assert.ok(checks > 0);
        assert.equal(r.mismatches, 0, `${name}:\n${r.mismatchExamples.join('\n')}`);
        assert.ok(r.streamOriginRelaysPeak <= LIMITS.originMaxRelays && r.childrenPeak <= LIMITS.edgeMaxChildren, `${name}: peaks ${r.streamOriginRelaysPeak}, ${r.childrenPeak}`);
        assert.ok(r.relaysByTier.length >= 3, `${name}: relays in tiers ${r.relaysByTier.join(' / ')}`);
        assert.ok(r.originRelaysPeak < r.relaysPeak, `${name}: the origins feed fewer edges than relay`);
      }
    });

    it('leaves a relay whose edge lost its last viewer while it feeds a child, and closes it with the child', () => {
      const model = buildModel({ ...TINY, tiers: { originMaxRelays: 1, edgeMaxChildren: 1 } });
      const cluster = new Cluster(model);
      const [a, b, c] = [0, 1, 2];
      for (const edge of [a, b, c]) cluster.join(edge, 0);
      assert.deepEqual([a, b, c].map((e) => cluster.trees.get(e, 0)!.tier), [0, 1, 2], 'a chain: a ← origin, b ← a, c ← b');
      cluster.leave(b, 0);
      assert.ok(cluster.trees.get(b, 0) && model.streamSets[b]!.has(model.streams[0]!.name), 'b still feeds c');
      assert.equal(cluster.relays, 3);
      cluster.leave(c, 0);
      assert.equal(cluster.trees.get(b, 0), undefined, 'b went with c');
      assert.equal(cluster.relays, 1);
      assert.equal(cluster.originRelays, 1);
      cluster.leave(a, 0);
      assert.equal(cluster.relays + cluster.originRelays + cluster.trees.originFeeds[0]!, 0);
    });

    it('counts egress as load: with a small egress capacity an edge takes fewer viewers, and parents with no room feed no one', () => {
      // 100 Mbit/s at 2.7 Mbit/s a stream: 37 receivers at most (viewers and child relays together).
      // (The balancer admits a viewer below the viewer threshold, 95 %: one viewer must be under 5 %.)
      const model = buildModel({ ...TINY, egressGbps: 0.1, tiers: LIMITS });
      const r = runPolicy(model, 'compact', undefined, (cluster) => {
        for (let e = 0; e < model.edgeCount; e++) assert.ok(cluster.viewers[e]! + cluster.trees.edgeChildren[e]! <= 37, `edge ${e}: ${cluster.viewers[e]} viewers, ${cluster.trees.edgeChildren[e]} child relays`);
      });
      assert.ok(r.egressPeakShare <= 1 && r.egressPeakShare > 0.9, `busiest edge at ${r.egressPeakShare}`);
      assert.ok(r.egressByEdges.length === 11 && r.egressByEdges[10] === 0, 'none above 100 % at the peak');
    });

    it('re-attaches the relays of killed parents with the product’s order, and accounts for every one', () => {
      const model = buildModel({ ...TINY, tiers: LIMITS });
      const cluster = new Cluster(model);
      for (let e = 0; e < 12; e++) cluster.join(e * 7, 0);
      const parents = [...cluster.trees.relays()].filter((x) => x.children > 0).map((x) => x.edge);
      assert.ok(parents.length > 0);
      const dead = parents.slice(0, 1);
      const orphans = [...cluster.trees.relays()].filter((x) => dead.includes(x.parent)).length;
      const result = cluster.trees.reattach(dead, (e, s) => cluster.relayViewers[e]!.get(s) ?? 0);
      assert.equal(result.orphans, orphans);
      assert.equal(result.firstRound + result.laterRound + result.none, orphans);
      assert.equal(result.byTier.reduce((a, b) => a + b, 0), result.firstRound + result.laterRound);
      assert.equal(result.viewersLost, 1, 'the killed edge’s own viewer');
      assert.ok(result.viewersBelow >= orphans, 'each orphan has its viewer');
      // Aside: nothing changed in the run.
      assert.equal([...cluster.trees.relays()].filter((x) => dead.includes(x.parent)).length, orphans);
    });

    it('makes room at a full origin: an edge near it, coming after the origin’s relays went far away, takes the place of the one it lies on the way to, which moves below it with its subtree, every path bounded', () => {
      const model = buildModel({ ...TINY, tiers: LIMITS });
      const cluster = new Cluster(model);
      const { trees } = cluster;
      const origin = model.nodes[model.streams[0]!.origin]!;
      const edges = model.nodes.slice(0, model.edgeCount);
      const km = (e: number) => distanceKm(origin, edges[e]!);
      const byDistance = edges.map((_, e) => e).sort((a, b) => km(a) - km(b));
      const near = byDistance[0]!;
      // Far edges: no path through them bounded for `near`, while `near` lies on the way to some.
      const far = byDistance.filter((e) => km(e) > 4 * km(near) + 2 * LOCAL_KM);
      const growth = (e: number) => km(near) + distanceKm(edges[near]!, edges[e]!) - km(e);
      far.sort((a, b) => growth(a) - growth(b));
      const onTheWay = far[0]!;
      const nextTo = (x: number) => far.find((e) => e !== x && distanceKm(edges[e]!, edges[x]!) <= LOCAL_KM);
      const below = nextTo(onTheWay);
      // Another far relay with a child: both subtrees as deep, so the least growth decides (chooseDemotion).
      const away = [...far].reverse().find((e) => e !== below && nextTo(e) !== undefined && distanceKm(edges[e]!, edges[onTheWay]!) > 2 * LOCAL_KM)!;
      const belowAway = away === undefined ? undefined : nextTo(away);
      assert.ok(below !== undefined && belowAway !== undefined && growth(onTheWay) < growth(away), 'the world has the edges this needs');
      // A relay of another stream first: tree key 1 cannot be demoted (its newcomer would need key 0, the origin's).
      cluster.join(near, 1);
      for (const e of [onTheWay, away, below, belowAway]) cluster.join(e, 0);
      assert.deepEqual([onTheWay, away, below, belowAway].map((e) => trees.get(e, 0)!.parent), [ORIGIN, ORIGIN, onTheWay, away], 'the origin full, its relays far away');
      const keyBefore = trees.get(onTheWay, 0)!.treeKey;
      const originRelays = cluster.originRelays;

      cluster.join(near, 0);
      const [n, r, c] = [near, onTheWay, below].map((e) => trees.get(e, 0)!);
      assert.equal(trees.demotions, 1);
      assert.deepEqual([n.parent, n.tier, r.parent, r.tier, c.parent, c.tier], [ORIGIN, 0, near, 1, onTheWay, 2], 'near ← origin, on-the-way ← near, its child still below it');
      assert.ok(n.treeKey < r.treeKey, 'the newcomer’s key is below the demoted relay’s');
      assert.equal(r.treeKey, keyBefore);
      assert.equal(trees.get(away, 0)!.parent, ORIGIN);
      assert.equal(trees.originFeeds[0], LIMITS.originMaxRelays, 'the origin back at its limit');
      assert.equal(cluster.originRelays, originRelays, 'origin egress unchanged');
      assert.deepEqual([n.children, trees.edgeChildren[near]], [1, 1]);
      assert.deepEqual(trees.atTier, [3, 2, 1], 'per tier: the origin’s two and the other stream’s; the demoted and the other child; the demoted’s child');
      for (const x of trees.relays()) assert.ok(x.pathKm <= MAX_STRETCH * x.directKm + LOCAL_KM, `edge ${x.edge}: path ${x.pathKm} km for ${x.directKm} km`);
      checkTrees(trees, TINY.streams);
    });

    it('changes nothing without limits: every relay is fed by the origin', () => {
      const model = buildModel({ ...TINY, tiers: {} });
      const r = runPolicy(model, 'compact');
      assert.equal(r.originRelaysPeak, r.relaysPeak);
      assert.equal(r.relaysByTier.length, 1);
      assert.equal(r.childrenPeak, 0);
    });
  });

  it('HAProxy’s bounded-load hashing: no join passed over without a bound; passed-over joins open second relays, more when requests stay longer in flight', () => {
    const model = buildModel({ ...TINY, viewers: 3000 });
    const run = (factor: number, openMs: number) => runPolicy({ ...model, options: { ...model.options, haproxyTiming: { joinMs: openMs / 5, openMs } } }, 'stream-affinity', undefined, undefined, factor);
    const unbounded = run(0, 250);
    assert.equal(unbounded.haproxy!.passedOver, 0);
    assert.equal(unbounded.haproxy!.secondRelays, 0);
    assert.equal(unbounded.label, 'haproxy 0');
    const short = run(125, 50);
    const long = run(125, 20_000);
    for (const r of [short, long]) assert.ok(r.haproxy!.secondRelays <= r.haproxy!.passedOver && r.rejected === 0);
    assert.ok(long.haproxy!.passedOver > short.haproxy!.passedOver && long.haproxy!.secondRelays > 0, `passed over: ${short.haproxy!.passedOver} → ${long.haproxy!.passedOver}`);
    assert.ok(long.relaysPeak > unbounded.relaysPeak, 'second relays show in the relays');
  });

  it('npm run simulate prints every policy and metric, and writes the JSON and the chart', async () => {
    const out = mkdtempSync(join(tmpdir(), 'relaycast-simulate-'));
    try {
      const args = ['--import', 'tsx', 'bench/simulate.ts', '--edges', '200', '--regions', '10', '--viewers', '5000', '--out', out];
      const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, maxBuffer: 1 << 24 });
      for (const name of POLICY_NAMES) assert.match(stdout, new RegExp(`\\b${name}\\b`), `table column ${name}`);
      for (const metric of METRICS) assert.ok(stdout.includes(metric.label), `table row "${metric.label}"`);

      const files = readdirSync(out);
      const json = files.find((f) => f.endsWith('.json'));
      assert.ok(json && files.some((f) => f.endsWith('.svg')), `JSON and SVG written: ${files.join(', ')}`);
      const svg = readFileSync(join(out, json.replace(/\.json$/, '.svg')), 'utf8');
      assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      for (const name of POLICY_NAMES) assert.ok(svg.includes(`>${name}</text>`), `chart legend ${name}`);

      const { results } = JSON.parse(readFileSync(join(out, json), 'utf8')) as { results: PolicyResult[] };
      assert.deepEqual(results.map((r) => r.policy), [...POLICY_NAMES]);
      for (const r of results) {
        for (const [key, value] of Object.entries(r)) {
          if (typeof value === 'number') assert.ok(Number.isFinite(value) && value >= 0, `${r.policy}.${key} = ${value}`);
        }
        for (const share of [r.rejectedShare, r.ownRegionShare, r.packingEfficiency]) assert.ok(share >= 0 && share <= 1, `${r.policy}: share ${share}`);
        assert.equal(r.joins, 5000);
        assert.ok(r.rejected + Math.round((1 - r.rejectedShare) * r.joins) === r.joins);
        assert.ok(r.p95Km >= r.meanKm * 0.5 && r.meanKm > 0, `${r.policy}: distances ${r.meanKm} / ${r.p95Km}`);
        assert.ok(r.relaysPeak >= r.relaysMean && r.relaysPeak >= r.edgesPeak && r.edgesPeak <= 200 && r.edgesWanted > 0);
        assert.ok(r.peakViewers > 0 && r.peakViewers <= 5000);
        assert.ok(r.checked > 0 && r.mismatches === 0, `${r.policy}: sampled checks against rank()`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
