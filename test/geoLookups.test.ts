import assert from 'node:assert/strict';
import maxmind, { type Reader, type Response } from 'maxmind';
import { bundledDatabases, GeoLocator, recordPosition } from '../balancer/GeoLocator.ts';
import { MmdbTree } from '../balancer/MmdbTree.ts';

/**
 * GeoLocator reads the databases through MmdbTree (pages on demand, its own record decoder) rather
 * than the maxmind package's reader (the whole file in memory): the same addresses must give the
 * same places. Random addresses all over IPv4 and over the IPv6 space the bundled database covers,
 * and the first and last address of networks met on the way, against maxmind's answer.
 */

/** Addresses compared per family: enough to cross most of the tree's pages many times. */
const ADDRESSES = 20_000;

/** A repeatable pseudo-random sequence, so that a failure can be run again. */
function rng(seed: number): () => number {
  return () => (seed = (seed * 16807) % 2147483647) / 2147483647;
}

interface Expected {
  lat: number;
  lon: number;
  country: string | undefined;
}

/** What GeoLocator answered before: maxmind's record, read as locate() reads it. */
function expected(readers: Array<Reader<Response>>, ip: string, v6: boolean): Expected | undefined {
  for (const reader of readers) {
    if (v6 && reader.metadata.ipVersion === 4) continue;
    const record = reader.get(ip) as { country_code?: string; country?: { iso_code?: string } } | null;
    const position = recordPosition(record);
    if (position) return { ...position, country: record!.country_code ?? record!.country?.iso_code };
  }
  return undefined;
}

describe('geo lookups read in pages', () => {
  let geo: GeoLocator;
  let readers: Array<Reader<Response>>;
  before(async () => {
    geo = await GeoLocator.open({ defaultRegion: 'fallback' });
    readers = await Promise.all(bundledDatabases().map((path) => maxmind.open<Response>(path)));
  });
  after(() => geo.close());

  const same = (ip: string, v6: boolean) => {
    const want = expected(readers, ip, v6);
    const got = geo.locate(ip);
    if (!want) assert.equal(got.source, 'default', ip);
    else assert.deepEqual({ lat: got.lat, lon: got.lon, country: got.country }, want, ip);
    return want !== undefined;
  };

  it('places random IPv4 addresses as the maxmind reader does', () => {
    const random = rng(7);
    let found = 0;
    for (let i = 0; i < ADDRESSES; i++) {
      const word = Math.floor(random() * 2 ** 32);
      if (same([24, 16, 8, 0].map((s) => (word >>> s) & 255).join('.'), false)) found++;
    }
    assert.ok(found > ADDRESSES / 2, `most addresses are in the database (${found})`);
  });

  it('places random IPv6 addresses as the maxmind reader does', () => {
    const random = rng(11);
    let found = 0;
    for (let i = 0; i < ADDRESSES; i++) {
      // 2000::/4, where the database's IPv6 networks are, at random below it.
      const groups = [0x2000 + Math.floor(random() * 0x1000), ...Array.from({ length: 7 }, () => Math.floor(random() * 0x10000))];
      if (same(groups.map((g) => g.toString(16)).join(':'), true)) found++;
    }
    assert.ok(found > ADDRESSES / 10, `many addresses are in the database (${found})`);
  });

  it('decodes every kind of record the same (the first records of each database)', async () => {
    for (const [i, path] of bundledDatabases().entries()) {
      const tree = await MmdbTree.open(path);
      try {
        // The records of the first networks, walking left from the root as far as it goes.
        let node = tree.ipVersion === 6 ? 0 : tree.ipv4Root;
        const seen = new Set<number>();
        for (let depth = 0; depth < 200 && tree.isNode(node); depth++) {
          const right = tree.right(node);
          if (right > tree.nodeCount) seen.add(right);
          node = tree.left(node);
        }
        for (const record of seen) {
          const reference = (readers[i] as unknown as { resolveDataPointer(p: number): unknown }).resolveDataPointer(record);
          assert.deepEqual(tree.record(record), reference, `${path}: record ${record}`);
        }
      } finally {
        tree.close();
      }
    }
  });
});
