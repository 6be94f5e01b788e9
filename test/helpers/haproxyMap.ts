import { SocketAddress } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * A map file read the way HAProxy 2.6's map_ip reads it (pattern.c, pat_match_ip), for tests that
 * check many addresses without a running HAProxy: the longest matching prefix of the address's
 * family; an IPv4 address that matches none tries ::ffff:a.b.c.d among the IPv6 entries; an IPv6
 * address that matches none tries its embedded IPv4 address if it is in ::/96, ::ffff:0:0/96 or
 * 2002::/16; else the default.
 */
export class HaproxyMap {
  /** Per family and prefix length: the prefix's bytes (as text) → value. */
  readonly #entries = new Map<string, Map<string, string>>();
  readonly #default: string;

  constructor(text: string, defaultValue: string) {
    this.#default = defaultValue;
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const [cidr, value] = line.split(' ');
      const [address, bits] = ipaddr.parseCIDR(cidr!);
      const key = `${address.kind()}/${bits}`;
      if (!this.#entries.has(key)) this.#entries.set(key, new Map());
      this.#entries.get(key)!.set(masked(address.toByteArray(), bits), value!);
    }
  }

  lookup(ip: string): string {
    const address = parse(ip);
    if (address.kind() === 'ipv4') return this.#longest(address) ?? this.#longest((address as ipaddr.IPv4).toIPv4MappedAddress()) ?? this.#default;
    const embedded = embeddedIPv4(address as ipaddr.IPv6);
    return this.#longest(address) ?? (embedded && this.#longest(embedded)) ?? this.#default;
  }

  #longest(address: ipaddr.IPv4 | ipaddr.IPv6): string | undefined {
    const bytes = address.toByteArray();
    for (let bits = bytes.length * 8; bits >= 0; bits--) {
      const found = this.#entries.get(`${address.kind()}/${bits}`)?.get(masked(bytes, bits));
      if (found !== undefined) return found;
    }
    return undefined;
  }
}

/**
 * An address as inet_pton reads it, as HAProxy does: ipaddr.js takes ::a.b.c.d for ::ffff:a.b.c.d;
 * a dotted tail is the last 32 bits, nothing more.
 */
function parse(ip: string): ipaddr.IPv4 | ipaddr.IPv6 {
  const tail = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!tail) return ipaddr.parse(ip);
  const [a, b, c, d] = tail.slice(2).map(Number) as [number, number, number, number];
  return ipaddr.parse(`${tail[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`);
}

/**
 * The text Node gives a socket's remoteAddress for `ip` (inet_ntop: ::a.b.c.d for most of ::/96),
 * which is what the route API hands GeoLocator.
 */
export function socketText(ip: string): string {
  return ip.includes(':') ? new SocketAddress({ address: ip, family: 'ipv6' }).address : ip;
}

/** The first `bits` bits of `bytes`, the rest zero, as text. */
function masked(bytes: number[], bits: number): string {
  return bytes.map((b, i) => (i * 8 >= bits ? 0 : i * 8 + 8 <= bits ? b : b & (0xff << (8 - (bits - i * 8))) & 0xff)).join('.');
}

/** The IPv4 address HAProxy reads in ::a.b.c.d, ::ffff:a.b.c.d and 2002:aabb:ccdd:: (6to4). */
export function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const bytes = address.toByteArray();
  const zeros = (from: number, to: number) => bytes.slice(from, to).every((b) => b === 0);
  if (zeros(0, 8) && (zeros(8, 12) || (zeros(8, 10) && bytes[10] === 0xff && bytes[11] === 0xff))) return ipaddr.fromByteArray(bytes.slice(12)) as ipaddr.IPv4;
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return ipaddr.fromByteArray(bytes.slice(2, 6)) as ipaddr.IPv4;
  return undefined;
}
