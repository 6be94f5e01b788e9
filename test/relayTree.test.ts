import assert from 'node:assert/strict';
import fc from 'fast-check';
import { childKey, orderUpstreams, UPSTREAMS_PER_ROUND } from '../edge/RelayTree.ts';

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

type Op = { kind: 'open' | 'kill' | 'attach'; who: number; to: number };

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
  it('never make a loop, whatever attaches, dies and re-attaches when', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ kind: fc.constantFrom<Op['kind']>('open', 'kill', 'attach'), who: fc.nat(11), to: fc.nat(12) }), { maxLength: 120 }), (ops) => {
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

  it('orders the origin first, then its own region\'s relays nearest the origin, feeding the fewest, then other regions by distance', () => {
    const origin = { nodeId: 'origin-1', url: 'http://o' };
    const self = { id: 'edge-self', region: 'eu', lat: 50, lon: 8 };
    const eu = { region: 'eu', lat: 48.9, lon: 2.3 };
    const near = { region: 'eu-west', lat: 50.1, lon: 8.1 };
    const far = { region: 'us', lat: 40, lon: -74 };
    const room = { bitrateOut: 200e6, egressCapacity: 1e9 };
    const parents = [
      { edgeNodeId: 'edge-far', publicUrl: 'http://far', ...room, ...far, treeKey: 5, tier: 0, children: 0 },
      { edgeNodeId: 'edge-near', publicUrl: 'http://near', ...room, ...near, treeKey: 6, tier: 0, children: 0 },
      { edgeNodeId: 'edge-deep', publicUrl: 'http://deep', ...room, ...eu, treeKey: 7, tier: 2, children: 0 },
      { edgeNodeId: 'edge-busy', publicUrl: 'http://busy', ...room, ...eu, treeKey: 8, tier: 1, children: 3 },
      { edgeNodeId: 'edge-idle', publicUrl: 'http://idle', ...room, ...eu, treeKey: 9, tier: 1, children: 1 },
      { edgeNodeId: 'edge-self', publicUrl: 'http://self', ...room, ...eu, treeKey: 10, tier: 0, children: 0 },
    ];
    assert.deepEqual(
      orderUpstreams({ origin, parents, self }).map((t) => t.nodeId),
      ['origin-1', 'edge-idle', 'edge-busy', 'edge-deep', 'edge-near'],
      'its own region first (lowest tier, then fewest children), the nearest other region next; never itself',
    );
    assert.deepEqual(
      orderUpstreams({ origin, parents, self, lost: 'edge-idle', treeKey: 8 }).map((t) => t.nodeId),
      ['origin-1', 'edge-deep', 'edge-near', 'edge-far'],
      'the parent just lost and parents with a key not below its own are left out',
    );
    assert.deepEqual(
      orderUpstreams({ origin, parents, self, maxChildren: 3 }).map((t) => t.nodeId),
      ['origin-1', 'edge-idle', 'edge-deep', 'edge-near', 'edge-far'],
      'parents feeding --edge-max-children are left out',
    );
    const sendingTheirMost = parents.map((p) => (p.edgeNodeId === 'edge-idle' || p.edgeNodeId === 'edge-near' ? { ...p, bitrateOut: p.egressCapacity } : p));
    assert.deepEqual(
      orderUpstreams({ origin, parents: sendingTheirMost, self }).map((t) => t.nodeId),
      ['origin-1', 'edge-busy', 'edge-deep', 'edge-far'],
      'parents whose last heartbeat showed them sending their --egress-capacity are left out',
    );
    const many = Array.from({ length: 20 }, (_, i) => ({ edgeNodeId: `edge-${i}`, publicUrl: `http://${i}`, ...eu, ...room, treeKey: i, tier: 0, children: i }));
    assert.equal(orderUpstreams({ origin, parents: many, self }).length, UPSTREAMS_PER_ROUND);
  });
});
