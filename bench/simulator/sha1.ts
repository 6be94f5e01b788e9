import { hash } from 'node:crypto';

/**
 * stream-affinity's score, `SHA-1(stream, NUL, node id)` read as a big-endian uint32 (policies.ts),
 * for one stream and many nodes. node:crypto costs a few microseconds a call, most of it the call;
 * the simulator needs tens of millions, so short ASCII inputs (one 64-byte block) are hashed here
 * in JavaScript, the stream's bytes laid out once. Anything longer or non-ASCII goes to node:crypto.
 * test/simulate.test.ts compares the two.
 */

const prefix = new Int32Array(16);
const w = new Int32Array(80);

export function cryptoScore(stream: string, node: string): number {
  return hash('sha1', `${stream}\0${node}`, 'buffer').readUInt32BE(0);
}

export function affinityScores(stream: string, nodes: readonly string[]): Float64Array {
  const out = new Float64Array(nodes.length);
  const ascii = (s: string) => [...s].every((c) => c.charCodeAt(0) >= 0x01 && c.charCodeAt(0) <= 0x7f);
  if (!ascii(stream) || nodes.some((n) => !ascii(n) || stream.length + 1 + n.length > 55)) {
    nodes.forEach((n, i) => (out[i] = cryptoScore(stream, n)));
    return out;
  }
  prefix.fill(0);
  for (let i = 0; i < stream.length; i++) prefix[i >> 2]! |= stream.charCodeAt(i) << (24 - 8 * (i & 3));
  const start = stream.length + 1; // the NUL is a zero byte: nothing to write
  nodes.forEach((node, k) => {
    w.set(prefix);
    const n = start + node.length;
    for (let j = 0; j < node.length; j++) {
      const i = start + j;
      w[i >> 2]! |= node.charCodeAt(j) << (24 - 8 * (i & 3));
    }
    w[n >> 2]! |= 0x80 << (24 - 8 * (n & 3));
    w[15] = n * 8;
    out[k] = compressFirstWord();
  });
  return out;
}

/** SHA-1 of the one block in `w[0..15]`, first 32 bits of the digest. */
function compressFirstWord(): number {
  for (let t = 16; t < 80; t++) {
    const x = w[t - 3]! ^ w[t - 8]! ^ w[t - 14]! ^ w[t - 16]!;
    w[t] = (x << 1) | (x >>> 31);
  }
  let a = 0x67452301;
  let b = 0xefcdab89 | 0;
  let c = 0x98badcfe | 0;
  let d = 0x10325476;
  let e = 0xc3d2e1f0 | 0;
  let t = 0;
  for (; t < 20; t++) {
    const temp = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + 0x5a827999 + w[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (; t < 40; t++) {
    const temp = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + 0x6ed9eba1 + w[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (; t < 60; t++) {
    const temp = (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e + (0x8f1bbcdc | 0) + w[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  for (; t < 80; t++) {
    const temp = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + (0xca62c1d6 | 0) + w[t]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = temp;
  }
  return (0x67452301 + a) >>> 0;
}
