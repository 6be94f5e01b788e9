/**
 * The fewest longest-prefix-match entries (HAProxy's map_ip) that give every address its value:
 * ORTC, the Optimal Routing Table Constructor (Draves, King, Venkatachary, Zill, INFOCOM 1999).
 * GeoMapBuilder hands the result of its walk over as a binary trie, bottom-up (join two sibling
 * results), and each node gets, as it is joined, the set of values its subtree could inherit at
 * no cost (the children's common values, else all of theirs); entries() then writes, top-down, an
 * entry only where the value inherited from above is not in that set. A region with a few holes becomes one
 * entry and the holes', instead of the many CIDRs around the holes.
 *
 * A leaf's value is a region code (≥ 0: an entry of that region must match), NO_ENTRY (no entry,
 * or one of the default region: both answer the default) or MUST_MISS (no entry may match: HAProxy
 * must fall back to its IPv4 lookup there). No entry may cover a MUST_MISS leaf, so none is
 * written on the path to one.
 */

export const NO_ENTRY = -1;
export const MUST_MISS = -2;
/** In a set of values: "no entry matches" (bit 0 of a set; region r is bit r + 1). */
const MISS = -1;
/** The set id of MUST_MISS subtrees (and of every subtree holding one). */
const FORCED = 0;
/** Room for set ids in a combine() memo key (distinct sets stay far below 2^21). */
const SET_KEY = 2 ** 21;
/**
 * The table's nodes are kept in chunks of 2^CHUNK_BITS, added as the walk needs them: an array
 * doubled when full held up to twice the nodes (4M places for 2.9M nodes at 100 regions) and,
 * while it grew, both copies.
 */
const CHUNK_BITS = 16;
const CHUNK_NODES = 1 << CHUNK_BITS;
/** Int32s per node: its left and right results, and its set id (computed when it is joined). */
const NODE_INTS = 3;

export class PrefixTable {
  readonly #default: number;
  /** 32-bit words per set: one bit per region, and one for MISS. */
  readonly #words: number;
  /** Per node, NODE_INTS at (node mod CHUNK_NODES) × NODE_INTS of chunk node ÷ CHUNK_NODES; kept for the next trie. */
  readonly #chunks: Int32Array[] = [];
  #nodes = 0;
  /** Interned sets of values as bit sets, by id; id FORCED is MUST_MISS's ({MISS}). */
  readonly #sets: Uint32Array[];
  readonly #setIds = new Map<string, number>();
  readonly #combined = new Map<number, number>();
  readonly #leafSets = new Map<number, number>();
  readonly #path = new Uint32Array(4);

  /** `regions`: how many region codes there are (0 … regions − 1); `defaultCode`: the default region's (what NO_ENTRY leaves may get as an entry). */
  constructor(regions: number, defaultCode: number) {
    if (!Number.isInteger(regions) || regions < 1) throw new TypeError(`a table needs at least one region, not ${regions}`);
    if (!Number.isInteger(defaultCode) || defaultCode < 0 || defaultCode >= regions) throw new TypeError(`region code ${defaultCode} outside 0..${regions - 1}`);
    this.#default = defaultCode;
    this.#words = Math.ceil((regions + 1) / 32);
    this.#sets = [this.#bitsOf([MISS])];
  }

  /** Whether a walk result is a leaf (a value) rather than a node. */
  static isLeaf(result: number): boolean {
    return result >= MUST_MISS;
  }

  /** The result for two sibling results: their value when both are the same leaf, else a node. */
  join(left: number, right: number): number {
    if (left === right && left >= MUST_MISS) return left;
    const node = this.#nodes++;
    if (node >>> CHUNK_BITS === this.#chunks.length) this.#chunks.push(new Int32Array(CHUNK_NODES * NODE_INTS));
    const chunk = this.#chunks[node >>> CHUNK_BITS]!;
    const at = (node & (CHUNK_NODES - 1)) * NODE_INTS;
    chunk[at] = left;
    chunk[at + 1] = right;
    // Children are always joined before their parent: their sets are known.
    chunk[at + 2] = this.#combine(this.#setOf(left), this.#setOf(right));
    return MUST_MISS - 1 - node;
  }

  /**
   * Calls `emit(words, length, code)` for each entry (in address order, a prefix before those
   * inside it) of the fewest that give the trie under `root` its values; then forgets the trie.
   */
  entries(root: number, emit: (words: Uint32Array, length: number, code: number) => void): void {
    this.#path.fill(0);
    this.#assign(root, 0, MISS, emit);
    this.#nodes = 0;
  }

  /** A result's set id: a node's, stored when it was joined, or a leaf value's. */
  #setOf(result: number): number {
    if (result < MUST_MISS) {
      const node = MUST_MISS - 1 - result;
      return this.#chunks[node >>> CHUNK_BITS]![(node & (CHUNK_NODES - 1)) * NODE_INTS + 2]!;
    }
    let id = this.#leafSets.get(result);
    if (id === undefined) {
      id = result === MUST_MISS ? FORCED : this.#intern(this.#bitsOf(result === NO_ENTRY ? [MISS, this.#default] : [result]));
      this.#leafSets.set(result, id);
    }
    return id;
  }

  /** ORTC's rule: the values both children share, else every value of either. */
  #combine(a: number, b: number): number {
    if (a === FORCED || b === FORCED) return FORCED;
    const key = a * SET_KEY + b;
    let id = this.#combined.get(key);
    if (id === undefined) {
      const [sa, sb] = [this.#sets[a]!, this.#sets[b]!];
      const shared = sa.map((word, i) => word & sb[i]!);
      id = this.#intern(shared.some((word) => word !== 0) ? shared : sa.map((word, i) => word | sb[i]!));
      this.#combined.set(key, id);
    }
    return id;
  }

  #bitsOf(values: number[]): Uint32Array {
    const bits = new Uint32Array(this.#words);
    for (const v of values) bits[(v + 1) >> 5]! |= 1 << ((v + 1) & 31);
    return bits;
  }

  #intern(bits: Uint32Array): number {
    const key = bits.join(',');
    let id = this.#setIds.get(key);
    if (id === undefined) {
      id = this.#sets.length;
      this.#sets.push(bits);
      this.#setIds.set(key, id);
    }
    return id;
  }

  /** Top-down: an entry where the inherited value will not do. Depth ≤ 128: bounded. */
  #assign(result: number, depth: number, inherited: number, emit: (words: Uint32Array, length: number, code: number) => void): void {
    const set = this.#sets[this.#setOf(result)]!;
    let value = inherited;
    if (((set[(inherited + 1) >> 5]! >>> ((inherited + 1) & 31)) & 1) === 0) {
      // The inherited value is a region here (a miss is inherited only along FORCED paths, where
      // it is always in the set), so the set holds another region: any one gives the fewest
      // entries (ORTC); the lowest code is taken.
      value = lowestRegion(set);
      emit(this.#path, depth, value);
    }
    if (result >= MUST_MISS) return;
    const node = MUST_MISS - 1 - result;
    const chunk = this.#chunks[node >>> CHUNK_BITS]!;
    const at = (node & (CHUNK_NODES - 1)) * NODE_INTS;
    this.#assign(chunk[at]!, depth + 1, value, emit);
    this.#path[depth >> 5]! |= 1 << (31 - (depth & 31));
    this.#assign(chunk[at + 1]!, depth + 1, value, emit);
    this.#path[depth >> 5]! &= ~(1 << (31 - (depth & 31)));
  }
}

/** The lowest region code in a set (bit r + 1; bit 0 is MISS). */
function lowestRegion(set: Uint32Array): number {
  for (let i = 0; i < set.length; i++) {
    const word = i === 0 ? set[0]! & ~1 : set[i]!;
    if (word !== 0) return i * 32 + (31 - Math.clz32(word & -word)) - 1;
  }
  throw new Error('a region set without a region');
}
