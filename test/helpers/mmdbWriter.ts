import ipaddr from 'ipaddr.js';

/**
 * Writes small MaxMind DB files (format 2.0, https://maxmind.github.io/MaxMind-DB/) for tests: any
 * record size, IPv4 or IPv6 trees, IPv4 networks at ::/96 of an IPv6 tree and MaxMind's aliases of
 * that subtree (::ffff:0:0/96, 2001::/32, 2002::/16), records in either shape (DB-IP's top-level
 * latitude/longitude, MaxMind's location.*) or without a position. Only what the tests need:
 * strings, doubles, unsigned integers, maps and arrays.
 */

export type MmdbValue = string | number | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbSpec {
  ipVersion: 4 | 6;
  recordSize: 24 | 28 | 32;
  /** CIDR → record; IPv4 CIDRs of an IPv6 tree go to ::/96. Networks must not overlap. */
  networks: Array<[string, { [key: string]: MmdbValue }]>;
  /** IPv6 trees: point ::ffff:0:0/96, 2001::/32 and 2002::/16 at the IPv4 subtree, as MaxMind does. */
  aliases?: boolean;
  /**
   * Bytes of unreferenced data before the records, so that data pointers pass 2^24 and use the
   * bits that only 28- and 32-bit records have (a small tree's node numbers never do).
   */
  dataPadding?: number;
}

interface TreeNode {
  children: [TreeNode | number | undefined, TreeNode | number | undefined];
}

const METADATA_MARKER = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');
/** The format's data types (control byte's top three bits; > 7: extended). */
const TYPE = { string: 2, double: 3, uint16: 5, uint32: 6, map: 7, array: 11 } as const;

function bitsOf(cidr: string, ipVersion: 4 | 6): { bits: number[]; length: number } {
  const [address, length] = ipaddr.parseCIDR(cidr);
  const bytes = address.toByteArray();
  const all = bytes.flatMap((b) => Array.from({ length: 8 }, (_, i) => (b >> (7 - i)) & 1));
  if (address.kind() === 'ipv4' && ipVersion === 6) return { bits: [...new Array<number>(96).fill(0), ...all], length: length + 96 };
  return { bits: all, length };
}

/** The node at `bits[0..depth)`, made on the way. */
function nodeAt(root: TreeNode, bits: number[], depth: number): TreeNode {
  let node = root;
  for (let d = 0; d < depth; d++) {
    const next = node.children[bits[d]!];
    if (typeof next === 'number') throw new Error('networks overlap');
    node = next ?? (node.children[bits[d]!] = { children: [undefined, undefined] });
  }
  return node;
}

function control(type: number, size: number): Buffer {
  const head = type <= 7 ? type << 5 : 0;
  const extended = type <= 7 ? [] : [type - 7];
  if (size < 29) return Buffer.from([head | size, ...extended]);
  if (size < 285) return Buffer.from([head | 29, ...extended, size - 29]);
  if (size < 65_821) return Buffer.from([head | 30, ...extended, (size - 285) >> 8, (size - 285) & 255]);
  return Buffer.from([head | 31, ...extended, (size - 65_821) >> 16, ((size - 65_821) >> 8) & 255, (size - 65_821) & 255]);
}

function encode(value: MmdbValue, integerType?: 'uint16' | 'uint32'): Buffer {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([control(TYPE.string, bytes.length), bytes]);
  }
  if (typeof value === 'number' && integerType) {
    const bytes = Buffer.alloc(integerType === 'uint16' ? 2 : 4);
    if (integerType === 'uint16') bytes.writeUInt16BE(value);
    else bytes.writeUInt32BE(value);
    return Buffer.concat([control(TYPE[integerType], bytes.length), bytes]);
  }
  if (typeof value === 'number') {
    const bytes = Buffer.alloc(8);
    bytes.writeDoubleBE(value);
    return Buffer.concat([control(TYPE.double, 8), bytes]);
  }
  if (Array.isArray(value)) return Buffer.concat([control(TYPE.array, value.length), ...value.map((v) => encode(v))]);
  const pairs = Object.entries(value);
  return Buffer.concat([control(TYPE.map, pairs.length), ...pairs.flatMap(([k, v]) => [encode(k), encode(v)])]);
}

export function writeMmdb(spec: MmdbSpec): Buffer {
  const { ipVersion, recordSize } = spec;
  const root: TreeNode = { children: [undefined, undefined] };
  const records: Array<{ [key: string]: MmdbValue }> = [];
  for (const [cidr, record] of spec.networks) {
    const { bits, length } = bitsOf(cidr, ipVersion);
    if (length === 0) throw new Error('a /0 network is no tree');
    const parent = nodeAt(root, bits, length - 1);
    if (parent.children[bits[length - 1]!] !== undefined) throw new Error(`${cidr} overlaps another network`);
    parent.children[bits[length - 1]!] = records.push(record) - 1;
  }
  if (spec.aliases) {
    if (ipVersion !== 6) throw new Error('aliases belong to IPv6 trees');
    const ipv4 = nodeAt(root, new Array<number>(96).fill(0), 96);
    for (const cidr of ['::ffff:0:0/96', '2001::/32', '2002::/16']) {
      const { bits, length } = bitsOf(cidr, 6);
      nodeAt(root, bits, length - 1).children[bits[length - 1]!] = ipv4;
    }
  }
  // Number the nodes breadth-first (a shared node once), then write the records.
  const numbers = new Map<TreeNode, number>([[root, 0]]);
  const order: TreeNode[] = [root];
  for (let i = 0; i < order.length; i++) {
    for (const child of order[i]!.children) {
      if (typeof child === 'object' && !numbers.has(child)) {
        numbers.set(child, order.length);
        order.push(child);
      }
    }
  }
  const nodeCount = order.length;
  const padding = spec.dataPadding ? [encode('x'.repeat(spec.dataPadding))] : [];
  const encoded = [...padding, ...records.map((r) => encode(r))];
  const offsets: number[] = [];
  encoded.reduce((at, bytes) => (offsets.push(at), at + bytes.length), 0);
  const valueOf = (child: TreeNode | number | undefined) =>
    child === undefined ? nodeCount : typeof child === 'number' ? nodeCount + 16 + offsets[child + padding.length]! : numbers.get(child)!;
  const tree = Buffer.alloc((nodeCount * recordSize * 2) / 8);
  order.forEach((node, n) => {
    const [left, right] = node.children.map(valueOf) as [number, number];
    const at = (n * recordSize * 2) / 8;
    if (recordSize === 24) {
      tree.writeUIntBE(left, at, 3);
      tree.writeUIntBE(right, at + 3, 3);
    } else if (recordSize === 28) {
      tree.writeUIntBE(left & 0xffffff, at, 3);
      tree[at + 3] = ((left >>> 24) << 4) | (right >>> 24);
      tree.writeUIntBE(right & 0xffffff, at + 4, 3);
    } else {
      tree.writeUInt32BE(left, at);
      tree.writeUInt32BE(right, at + 4);
    }
  });
  const metadata = Buffer.concat([
    control(TYPE.map, 9),
    ...[
      ['node_count', encode(nodeCount, 'uint32')],
      ['record_size', encode(recordSize, 'uint16')],
      ['ip_version', encode(ipVersion, 'uint16')],
      ['database_type', encode('Relaycast-Test-City')],
      ['languages', encode([])],
      ['binary_format_major_version', encode(2, 'uint16')],
      ['binary_format_minor_version', encode(0, 'uint16')],
      ['build_epoch', encode(1_700_000_000, 'uint32')],
      ['description', encode({})],
    ].flatMap(([key, value]) => [encode(key as string), value as Buffer]),
  ]);
  return Buffer.concat([tree, Buffer.alloc(16), ...encoded, METADATA_MARKER, metadata]);
}
