import ipaddr from 'ipaddr.js';

/**
 * Who the client of a request is. Behind HAProxy (or any proxy) the peer is the proxy, and the
 * client's address is in X-Forwarded-For — which anyone can send, so it counts only when the
 * peer is one of the operator's trusted proxies. The geo balancer, the rate limiter and the audit
 * log all ask this one place.
 */

export type Address = ipaddr.IPv4 | ipaddr.IPv6;
export type AddressRange = [Address, number];

export function parseAddress(text: string): Address | undefined {
  try {
    const address = ipaddr.parse(text.trim());
    // ::ffff:1.2.3.4 is an IPv4 client on a dual-stack socket.
    return address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() ? (address as ipaddr.IPv6).toIPv4Address() : address;
  } catch {
    return undefined;
  }
}

/** `10.0.0.0/8`, or one address meaning just itself (/32, /128); throws TypeError. */
export function parseRange(text: string): AddressRange {
  const trimmed = text.trim();
  try {
    if (trimmed.includes('/')) return ipaddr.parseCIDR(trimmed);
    const address = ipaddr.parse(trimmed);
    return [address, address.kind() === 'ipv6' ? 128 : 32];
  } catch {
    throw new TypeError(`${trimmed} is not an address or CIDR`);
  }
}

export function inRange(address: Address, range: AddressRange): boolean {
  return address.kind() === range[0].kind() && address.match(range as [ipaddr.IPv4, number]);
}

export class TrustedProxies {
  readonly #ranges: AddressRange[];

  constructor(ranges: AddressRange[]) {
    this.#ranges = ranges;
  }

  /** Addresses or CIDRs, comma-separated (the `trustedProxies` setting); throws TypeError. */
  static parse(text: string | undefined): TrustedProxies {
    return new TrustedProxies(
      (text ?? '')
        .split(',')
        .filter((s) => s.trim())
        .map(parseRange),
    );
  }

  /** These ranges and `more`. */
  with(more: AddressRange[]): TrustedProxies {
    return new TrustedProxies([...this.#ranges, ...more]);
  }

  /** The ranges as CIDR text. */
  toString(): string {
    return this.#ranges.map(([address, bits]) => `${address.toString()}/${bits}`).join(',');
  }

  /**
   * The client's address: the peer's, or — when the peer is a trusted proxy — the right-most
   * address in X-Forwarded-For that is not itself a trusted proxy.
   */
  clientAddress(peer: string, forwardedFor?: string): string {
    const chain = [...(forwardedFor ?? '').split(',').map((s) => s.trim()).filter(Boolean), peer];
    for (let i = chain.length - 1; i >= 0; i--) {
      const address = parseAddress(chain[i]!);
      if (!address) return peer;
      if (i === 0 || !this.#ranges.some((range) => inRange(address, range))) return address.toString();
    }
    return peer;
  }
}
