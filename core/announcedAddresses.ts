import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

/** What a node announces for its media, and why (logged at start). */
export interface AnnouncedAddresses {
  /** Addresses in a WebRTC session's ICE candidates, best first (each a UDP and a TCP candidate). */
  candidates: string[];
  /** The address a relay's pipe announces to the edge at its other end: one, as a pipe has one socket. */
  pipe: string;
  /** configured (--announced-ip), listen (--rtc-listen-ip names one address), or interfaces (neither). */
  source: 'configured' | 'listen' | 'interfaces';
}

const ANY = new Set(['0.0.0.0', '::']);

/**
 * The addresses a node announces. `--announced-ip` wins: a server behind NAT announces its public
 * address alone. Without it, a node listening on one address announces that one. Without either
 * (the quick start), it announces every IPv4 address of the machine's interfaces, then loopback:
 * browsers differ in what they pair — Firefox pairs no loopback candidate at all, Chromium only
 * with --allow-loopback-in-peer-connection — and every browser on the machine or its network
 * reaches an interface address. Pipes between nodes stay on loopback then: a node without an
 * announced address runs beside its peers on one machine. IPv6 is left out, as the default listen
 * address (0.0.0.0) takes IPv4 only.
 */
export function announcedAddresses(
  options: { announcedIp?: string; listenIp: string },
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): AnnouncedAddresses {
  if (options.announcedIp) return { candidates: [options.announcedIp], pipe: options.announcedIp, source: 'configured' };
  if (!ANY.has(options.listenIp)) return { candidates: [options.listenIp], pipe: options.listenIp, source: 'listen' };
  const own = Object.values(interfaces)
    .flatMap((list) => list ?? [])
    .filter((i) => i.family === 'IPv4' && !i.internal)
    .map((i) => i.address);
  return { candidates: [...new Set(own), '127.0.0.1'], pipe: '127.0.0.1', source: 'interfaces' };
}
