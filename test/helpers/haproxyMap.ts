import ipaddr from 'ipaddr.js';

/**
 * A map file read the way HAProxy 2.6's map_ip reads it (pattern.c, pat_match_ip), for tests that
 * check many addresses without a running HAProxy: the longest matching prefix of the address's
 * family; an IPv4 address that matches none tries ::ffff:a.b.c.d among the IPv6 entries; an IPv6
 * address that matches none tries its embedded IPv4 address if it is in ::/96, ::ffff:0:0/96 or
 * 2002::/16; else the default.
 */
export class HaproxyMap {
  readonly #entries: Array<[ipaddr.IPv4 | ipaddr.IPv6, number, string]>;
  readonly #default: string;

  constructor(text: string, defaultValue: string) {
    this.#default = defaultValue;
    this.#entries = text
      .split('\n')
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => {
        const [cidr, value] = line.split(' ');
        const [address, bits] = ipaddr.parseCIDR(cidr!);
        return [address, bits, value!];
      });
  }

  lookup(ip: string): string {
    const address = ipaddr.parse(ip);
    if (address.kind() === 'ipv4') return this.#longest(address) ?? this.#longest((address as ipaddr.IPv4).toIPv4MappedAddress()) ?? this.#default;
    const embedded = embeddedIPv4(address as ipaddr.IPv6);
    return this.#longest(address) ?? (embedded && this.#longest(embedded)) ?? this.#default;
  }

  #longest(address: ipaddr.IPv4 | ipaddr.IPv6): string | undefined {
    let best: [ipaddr.IPv4 | ipaddr.IPv6, number, string] | undefined;
    for (const entry of this.#entries) {
      if (entry[0].kind() === address.kind() && address.match(entry[0] as never, entry[1]) && (!best || entry[1] > best[1])) best = entry;
    }
    return best?.[2];
  }
}

/** The IPv4 address HAProxy reads in ::a.b.c.d, ::ffff:a.b.c.d and 2002:aabb:ccdd:: (6to4). */
export function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const bytes = address.toByteArray();
  const zeros = (from: number, to: number) => bytes.slice(from, to).every((b) => b === 0);
  if (zeros(0, 8) && (zeros(8, 12) || (zeros(8, 10) && bytes[10] === 0xff && bytes[11] === 0xff))) return ipaddr.fromByteArray(bytes.slice(12)) as ipaddr.IPv4;
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return ipaddr.fromByteArray(bytes.slice(2, 6)) as ipaddr.IPv4;
  return undefined;
}
