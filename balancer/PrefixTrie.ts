/**
 * A small binary trie of address prefixes, each holding a value, where the FIRST prefix added wins
 * wherever prefixes overlap (as GeoLocator checks pins: the first pin in the list that holds the
 * address). Nodes are numbered like an .mmdb search tree's, so that GeoMapBuilder walks both
 * alike: `isNode(n)`, then `left(n)`/`right(n)`, or `value(n)` for a leaf (EMPTY where no prefix
 * holds the addresses).
 */

export const EMPTY = -1;
/** Marks an inner node in #values. */
const INNER = -2;

export class PrefixTrie {
  readonly bits: number;
  /** Per node: its children (inner nodes), its value (leaves), INNER for inner nodes. */
  readonly #left: number[] = [0];
  readonly #right: number[] = [0];
  readonly #values: number[] = [EMPTY];

  constructor(bits: 32 | 128) {
    if (bits !== 32 && bits !== 128) throw new TypeError(`a trie is of 32 or 128 bits, not ${String(bits)}`);
    this.bits = bits;
  }

  /** The root's node number. */
  get root(): number {
    return 0;
  }

  /**
   * Adds `words` (the address as 32-bit words, big-endian: one for IPv4, four for IPv6) cut to
   * `length` bits, with `value` (≥ 0). Addresses an earlier prefix already holds keep its value.
   */
  add(words: ArrayLike<number>, length: number, value: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.bits) throw new TypeError(`prefix length ${length} outside 0..${this.bits}`);
    if (words.length * 32 !== this.bits) throw new TypeError(`an address of ${this.bits} bits is ${this.bits / 32} words`);
    if (!Number.isInteger(value) || value < 0) throw new TypeError(`a trie value is an integer ≥ 0, not ${value}`);
    let node = 0;
    for (let depth = 0; depth < length; depth++) {
      if (this.#values[node] !== INNER) {
        if (this.#values[node] !== EMPTY) return; // an earlier, wider prefix holds all of this one
        this.#split(node);
      }
      const bit = (words[depth >> 5]! >>> (31 - (depth & 31))) & 1;
      node = bit ? this.#right[node]! : this.#left[node]!;
    }
    this.#fill(node, value);
  }

  isNode(node: number): boolean {
    return this.#values[node] === INNER;
  }

  left(node: number): number {
    return this.#left[node]!;
  }

  right(node: number): number {
    return this.#right[node]!;
  }

  /** A leaf's value: EMPTY, or what was added. */
  value(node: number): number {
    return this.#values[node]!;
  }

  /** Whether the trie holds nothing at all. */
  get empty(): boolean {
    return this.#values[0] === EMPTY;
  }

  #split(node: number): void {
    for (const side of [this.#left, this.#right]) {
      side[node] = this.#values.length;
      this.#left.push(0);
      this.#right.push(0);
      this.#values.push(EMPTY);
    }
    this.#values[node] = INNER;
  }

  /** Gives `value` to the addresses under `node` that no prefix holds yet. Depth ≤ bits: bounded. */
  #fill(node: number, value: number): void {
    if (this.#values[node] === EMPTY) this.#values[node] = value;
    else if (this.#values[node] === INNER) {
      this.#fill(this.#left[node]!, value);
      this.#fill(this.#right[node]!, value);
    }
  }
}
