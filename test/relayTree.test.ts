import assert from 'node:assert/strict';
import fc from 'fast-check';
import { distanceKm } from '../core/geo.ts';
import type { ParentCandidate } from '../db/repositories/relays.ts';
import { MAX_TIER, orderUpstreams, rankUpstreams, UPSTREAMS_PER_ROUND } from '../edge/RelayTree.ts';
import { childKey, chooseDemotion, DEMOTED_MAX_TIER, demotionKey, LOCAL_KM, MAX_STRETCH } from '../media/treePaths.ts';

/**
 * The relay tree's rules (edge/RelayTree.ts) as a model: edges attach, die, re-attach and move in
 * any order, each following only the rules an edge and its upstream check (media/RelayServer.ts
 * without its path check, edge/Relay.ts). Whatever the order, following parents always reaches
 * the origin or a relay between upstreams, never a loop.
 */

interface ModelRelay {
  /** 'origin', another relay's id, or null while it looks for an upstream. */
  parent: string | null;
  key: number;
}

type Op = { kind: 'open' | 'kill' | 'attach' | 'demote'; who: number; to: number };

/** Follows parents from `id`; throws on a loop. */
function depth(relays: Map<string, ModelRelay>, id: string): number {
  const seen = new Set<string>();
  let at: string | null = id;
  while (at !== null && at !== 'origin') {
    if (seen.has(at)) throw new Error(`loop through ${[...seen].join(' → ')}`);
    seen.add(at);
    at = relays.get(at)?.parent ?? null;
  }
  return seen.size;
}

describe('relay tree rules', () => {
  it('never make a loop, whatever attaches, dies, re-attaches and is demoted when', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ kind: fc.constantFrom<Op['kind']>('open', 'kill', 'attach', 'demote'), who: fc.nat(11), to: fc.nat(12) }), { maxLength: 120 }), (ops) => {
        const relays = new Map<string, ModelRelay>();
        let now = 1000;
        const children = (id: string) => [...relays.values()].filter((r) => r.parent === id).length;
        // An upstream takes children only while it has an upstream itself (Relay.upstream()).
        const keyOf = (target: string) => (target === 'origin' ? 0 : relays.get(target)?.parent ? relays.get(target)!.key : undefined);
        for (const op of ops) {
          now += 1;
          const who = `e${op.who}`;
          const target = op.to === 12 ? 'origin' : `e${op.to}`;
          const relay = relays.get(who);
          if (op.kind === 'kill') {
            if (!relay) continue;
            relays.delete(who);
            for (const r of relays.values()) if (r.parent === who) r.parent = null;
            continue;
          }
          if (op.kind === 'demote') {
            // The origin makes room for a newcomer `who`: it takes a key below the demoted relay's
            // (media/RelayServer.ts), and the demoted relay, fed by the origin, moves below it.
            const demoted = relays.get(target);
            if (relay || !demoted || demoted.parent !== 'origin' || demoted.key < 2) continue;
            const newcomer = { parent: 'origin', key: demotionKey(demoted.key) };
            relays.set(who, newcomer);
            if (children(target) > 0) {
              if (newcomer.key >= demoted.key) continue; // relay-order
              demoted.parent = who;
            } else {
              demoted.parent = who;
              demoted.key = childKey(newcomer.key, now);
            }
            continue;
          }
          const parentKey = keyOf(target);
          if (parentKey === undefined || target === who) continue;
          if (op.kind === 'open') {
            if (!relay) relays.set(who, { parent: target, key: childKey(parentKey, now) });
            continue;
          }
          // attach: re-attach (between upstreams) or move (a draining parent) to `target`.
          if (!relay) continue;
          if (children(who) > 0) {
            if (parentKey >= relay.key) continue; // relay-order
            relay.parent = target;
          } else {
            relay.parent = target;
            relay.key = childKey(parentKey, now);
          }
        }
        for (const id of relays.keys()) depth(relays, id);
        for (const [id, r] of relays) if (r.parent && r.parent !== 'origin') assert.ok(relays.get(r.parent)!.key < r.key, `${id} has a larger key than its parent`);
      }),
      { numRuns: 2000 },
    );
  });

  const origin = { nodeId: 'origin-1', url: 'http://o', lat: 50.1, lon: 8.7 }; // Frankfurt
  const room = { bitrateOut: 0, egressCapacity: 1e9 };
  const at = (lat: number, lon: number, region: string) => ({ lat, lon, region });
  const parent = (id: string, where: { lat: number; lon: number; region: string }, tier: number, pathKm: number, extra: Partial<ParentCandidate> = {}): ParentCandidate => ({
    edgeNodeId: id,
    publicUrl: `http://${id}`,
    ...where,
    treeKey: 10 + tier,
    tier,
    children: 0,
    pathKm,
    ...room,
    ...extra,
  });
  const ids = (targets: Array<{ nodeId: string }>) => targets.map((t) => t.nodeId);

  it('asks a parent of its own region first (lowest tier, fewest children), then bounded remote parents by cost, then the origin (the origin first without a relay budget)', () => {
    const self = { id: 'edge-self', region: 'sg', lat: 1.35, lon: 103.8 }; // Singapore
    const sg = at(1.3, 103.9, 'sg');
    const mumbai = at(19.1, 72.9, 'in');
    const tokyo = at(35.7, 139.7, 'jp');
    const direct = distanceKm(origin, self);
    const parents = [
      parent('edge-sg-deep', sg, 2, direct + 300),
      parent('edge-sg-busy', sg, 1, direct + 100, { children: 3 }),
      parent('edge-sg-idle', sg, 1, direct + 200, { children: 1 }),
      parent('edge-in', mumbai, 0, distanceKm(origin, mumbai)),
      parent('edge-jp', tokyo, 0, distanceKm(origin, tokyo)),
      parent('edge-self', sg, 0, direct),
    ];
    const order = orderUpstreams({ origin, parents, self, originMaxRelays: 4 });
    assert.deepEqual(ids(order), ['edge-sg-idle', 'edge-sg-busy', 'edge-sg-deep', 'edge-in', 'origin-1'], 'the origin always in the round, last when it ranks later');
    assert.deepEqual(ids(orderUpstreams({ origin, parents, self })), ['origin-1', 'edge-sg-idle', 'edge-sg-busy', 'edge-sg-deep', 'edge-in'], 'without --origin-max-relays the origin first, as before tiers');
    assert.equal(rankUpstreams({ origin, parents, self, originMaxRelays: 4 }).find((t) => t.nodeId === 'origin-1')!.pathKm, direct, "the origin's path is the great circle");
    const viaIndia = order.find((t) => t.nodeId === 'edge-in')!;
    assert.ok(Math.abs(viaIndia.pathKm - (distanceKm(origin, mumbai) + distanceKm(mumbai, self))) < 1e-6, 'a path is the parent’s path plus the hop');
    assert.equal(viaIndia.tier, 1);
    // Tokyo's path (9,300 km + 5,300 km) is within 2 × 10,300 km as well, but costs more than Mumbai's; the origin after both.
    assert.deepEqual(ids(rankUpstreams({ origin, parents, self, originMaxRelays: 4 }).slice(3)), ['edge-in', 'edge-jp', 'origin-1']);
  });

  it('keeps every bounded choice within MAX_STRETCH × the great circle and MAX_TIER; puts unbounded and full parents last', () => {
    const self = { id: 'edge-self', region: 'sg', lat: 1.35, lon: 103.8 };
    const sao = at(-23.5, -46.6, 'br');
    const sg = at(1.3, 103.9, 'sg');
    const direct = distanceKm(origin, self);
    const parents = [
      parent('edge-br', sao, 0, distanceKm(origin, sao)), // a detour through Brazil: > 2× the great circle
      parent('edge-sg-too-deep', sg, MAX_TIER, direct), // a child of it would be MAX_TIER + 1 deep
      parent('edge-sg-full', sg, 0, direct, { children: 8 }),
      parent('edge-sg-no-egress', sg, 0, direct, { bitrateOut: 999e6 }),
      parent('edge-sg-far-path', sg, 1, 3 * direct),
    ];
    const ranked = rankUpstreams({ origin, parents, self, maxChildren: 8, originMaxRelays: 4 });
    assert.equal(ranked[0]!.nodeId, 'origin-1', 'no bounded parent: the origin first');
    for (const t of ranked.slice(1)) {
      const bounded = t.pathKm <= MAX_STRETCH * direct + LOCAL_KM && t.tier <= MAX_TIER;
      const p = parents.find((x) => x.edgeNodeId === t.nodeId)!;
      assert.ok(!bounded || p.children >= 8 || p.bitrateOut + 2.7e6 > p.egressCapacity, `${t.nodeId} was ranked after the origin though bounded and with room`);
    }
    assert.equal(ranked.length, parents.length + 1, 'unbounded and full parents are still listed, last (an edge never refuses a viewer over its path)');
    // Property: whatever the parents, every parent ranked before the origin has a bounded path, room, and is near.
    fc.assert(
      fc.property(
        fc.array(fc.record({ lat: fc.double({ min: -60, max: 70, noNaN: true }), lon: fc.double({ min: -180, max: 180, noNaN: true }), tier: fc.nat(5), extraKm: fc.double({ min: 0, max: 20000, noNaN: true }), children: fc.nat(10), same: fc.boolean() }), { maxLength: 30 }),
        fc.record({ lat: fc.double({ min: -60, max: 70, noNaN: true }), lon: fc.double({ min: -180, max: 180, noNaN: true }) }),
        (ps, me) => {
          const me2 = { id: 'self', region: 'r', ...me };
          const cands = ps.map((x, i) => parent(`e${i}`, { lat: x.lat, lon: x.lon, region: x.same ? 'r' : `r${i}` }, x.tier, distanceKm(origin, x) + x.extraKm, { children: x.children }));
          const out = rankUpstreams({ origin, parents: cands, self: me2, maxChildren: 8, originMaxRelays: 4 });
          const bound = MAX_STRETCH * distanceKm(origin, me2) + LOCAL_KM;
          const o = out.findIndex((t) => t.nodeId === 'origin-1');
          assert.ok(o >= 0);
          for (const t of out.slice(0, o)) assert.ok(t.pathKm <= bound + 1e-6 && t.tier <= MAX_TIER, `${t.nodeId} before the origin: ${t.pathKm} km, tier ${t.tier}`);
          // Bounded parents with room come before every unbounded one.
          let seenUnbounded = false;
          for (const t of out) {
            if (t.nodeId === 'origin-1') continue;
            const p = cands.find((c) => c.edgeNodeId === t.nodeId)!;
            const good = t.pathKm <= bound + 1e-6 && t.tier <= MAX_TIER && p.children < 8;
            if (!good) seenUnbounded = true;
            else assert.ok(!seenUnbounded, `${t.nodeId} (bounded, with room) after an unbounded parent`);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('leaves out itself, the parent just lost and parents with a key not below its own; asks at most UPSTREAMS_PER_ROUND', () => {
    const self = { id: 'edge-self', region: 'eu', lat: 50, lon: 8 };
    const eu = at(50.05, 8.3, 'eu');
    const parents = [
      parent('edge-a', eu, 0, 50, { treeKey: 5 }),
      parent('edge-b', eu, 0, 50, { treeKey: 9, children: 1 }),
      parent('edge-self', eu, 0, 50, { treeKey: 3 }),
    ];
    const o = { originMaxRelays: 4 };
    assert.deepEqual(ids(orderUpstreams({ origin, parents, self, ...o })), ['edge-a', 'edge-b', 'origin-1']);
    assert.deepEqual(ids(orderUpstreams({ origin, parents, self, lost: 'edge-a', treeKey: 8, ...o })), ['origin-1']);
    assert.deepEqual(ids(orderUpstreams({ origin, parents, self, lost: 'origin-1', ...o })), ['edge-a', 'edge-b']);
    const many = Array.from({ length: 20 }, (_, i) => parent(`edge-${i}`, eu, 0, 50, { treeKey: i, children: i % 3 }));
    const round = orderUpstreams({ origin, parents: many, self, ...o });
    assert.equal(round.length, UPSTREAMS_PER_ROUND);
    assert.equal(round.at(-1)!.nodeId, 'origin-1', 'the origin is asked in every round');
  });

  it('a full origin makes room by moving the relay whose path grows least through the newcomer, if that path stays bounded', () => {
    const o = { lat: 0, lon: 0 };
    const relay = (nodeId: string, lat: number, lon: number, treeKey = 1_000) => ({ nodeId, lat, lon, treeKey });
    const east = relay('edge-east', 0, 40);
    const north = relay('edge-north', 40, 0);
    // A newcomer on the way east: the east relay moves below it, its path as long as before.
    const onTheWay = chooseDemotion(o, { lat: 0, lon: 5 }, [north, east]);
    assert.equal(onTheWay?.relay.nodeId, 'edge-east');
    assert.ok(Math.abs(onTheWay.pathKm - distanceKm(o, east)) < 1, `${onTheWay.pathKm} km`);
    // Far off every relay's way: none would stay within MAX_STRETCH × its great circle + LOCAL_KM.
    const west = { lat: 0, lon: -60 };
    assert.equal(chooseDemotion(o, west, [north, east]), undefined);
    for (const r of [north, east]) assert.ok(distanceKm(o, west) + distanceKm(west, r) > MAX_STRETCH * distanceKm(o, r) + LOCAL_KM);
    // A relay whose key leaves no smaller one for the newcomer is not moved.
    assert.equal(chooseDemotion(o, { lat: 0, lon: 5 }, [relay('edge-east', 0, 40, 1)]), undefined);
    assert.ok(demotionKey(1_000) < 1_000 && demotionKey(2) > 0, 'the newcomer\'s key is below the demoted relay\'s and above the origin\'s');
  });

  it('moves below a newcomer only a relay whose subtree, one tier down, stays within DEMOTED_MAX_TIER (MAX_TIER + 1), the shallowest subtree first, then the least growth', () => {
    assert.equal(DEMOTED_MAX_TIER, MAX_TIER + 1);
    const o = { lat: 50, lon: 8 };
    const newcomer = { lat: 49, lon: 8 };
    // Due south of the origin, past the newcomer: its path through the newcomer is the great circle.
    const south = (nodeId: string, treeKey: number, depthBelow?: number) => ({ nodeId, lat: 40, lon: 8, treeKey, depthBelow });
    const north = { nodeId: 'north', lat: 60, lon: 8, treeKey: 7 };
    assert.equal(chooseDemotion(o, newcomer, [south('a', 6, 0), north])!.relay.nodeId, 'a', 'the one the newcomer lies on the way to');
    assert.equal(chooseDemotion(o, newcomer, [south('a', 6, DEMOTED_MAX_TIER), north])!.relay.nodeId, 'north', 'too deep below it: the next');
    assert.equal(chooseDemotion(o, newcomer, [south('a', 6, DEMOTED_MAX_TIER)]), undefined, 'too deep, and no other');
    assert.equal(chooseDemotion(o, newcomer, [south('a', 6, DEMOTED_MAX_TIER - 1), { ...north, depthBelow: DEMOTED_MAX_TIER - 1 }])!.relay.nodeId, 'a', 'as deep: the least growth');
    assert.equal(chooseDemotion(o, newcomer, [south('a', 6, 2), { ...north, depthBelow: 1 }])!.relay.nodeId, 'north', 'the shallower subtree first');
  });
});
