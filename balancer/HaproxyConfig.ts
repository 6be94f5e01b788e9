import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { PACKAGE_ROOT } from '../core/paths.ts';
import type { GeoPin } from '../core/geoPins.ts';
import type { MapFile } from './MapFile.ts';
import { distanceKm, regionsByDistance, type NodeSnapshot, type Position } from './policies.ts';

/** What the geo map needs of a pin (the setting's GeoPin has it). */
export type MapPin = Omit<GeoPin, 'range'>;

/**
 * Renders haproxy.cfg and the geo map from the templates in haproxy/: a backend per region with
 * its edges as servers (agent-check for weights and drain) and the next-nearest region's edges as
 * backups; the frontend picks the backend from the client address through the map. With an RTMP
 * bind, a TCP frontend sends RTMP publishers to the origins that take RTMP. Pure: the same
 * snapshot (and the same server ids held) always renders the same text.
 *
 * Besides the full config it renders its shape: the same template with no servers. Two configs of
 * one shape differ only in servers, which HAProxy's runtime API can add and delete without a
 * reload (see HaproxyController); a different shape (a region, a bind, the default region) needs one.
 * So a region whose last edge left keeps its backend while HAProxy runs (`kept`): the nearest
 * region's edges serve it as backups, and the reload that would cut every RTMP publisher waits
 * until one happens for another reason.
 */

const template = (name: string) =>
  Handlebars.compile(readFileSync(join(PACKAGE_ROOT, 'haproxy', name), 'utf8'), { noEscape: true, strict: false });
const CFG = template('haproxy.cfg.hbs');
const MAP = template('geo.map.hbs');

/**
 * Connections HAProxy accepts at once. Each takes two file descriptors (client and server side),
 * and HAProxy refuses to start if it cannot raise its limit that far: 4,000 fits the common
 * default of 20,000 with room to spare. Signalling connections are short; raise it with the limit.
 */
const DEFAULT_MAXCONN = 4000;

/**
 * Health and agent checks every second, a server out after 2 failed checks and back after 2 good
 * ones: a dead edge is out of rotation within about 2 s. Weight 100: agent-check percentages scale
 * it (HAProxy rounds 99 % of weight 1 down to 0). Written on every server line, not in a
 * `default-server` line, because servers added through the runtime API ignore default-server: the
 * same text serves the config file and `add server`, so both give the same server.
 */
const SERVER_CHECKS = 'check inter 1s fall 2 rise 2 weight 100';
const AGENT_INTER = '1s';

/**
 * An origin's RTMP port: a TCP connect every 500 ms, out after 2 failures, so a dead origin is out
 * within about 1 s (a publisher's reconnect that comes sooner is refused there and redispatched).
 * When its checks take it out, the publishers still connected to it are cut (`shutdown-sessions`):
 * an origin whose host vanished sends no reset, and the publisher's encoder would wait for its
 * TCP timeouts before it reconnects. A draining origin keeps its publishers and gets no new ones
 * (weight 0). Origins run no agent-check: the registry's drain flag sets the weight.
 */
const RTMP_CHECKS = 'check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions';
const RTMP_WEIGHT = 100;

/** HAProxy's name for the system's CA bundle. */
const SYSTEM_CA = '@system-ca';

/** The RTMP backend: not be_<region>, so no region name can collide with it. */
export const RTMP_BACKEND = 'rtmp_origins';

export interface HaproxyLayout {
  nodeId: string;
  /** Where HAProxy listens, e.g. 0.0.0.0:80. */
  bind: string;
  mapPath: string;
  runtimeSocket: string;
  /** Where server states are saved before a reload. */
  serverStateFile: string;
  /** host:port of the balancer itself, for the API and the route API. */
  balancer: string;
  defaultRegion: string;
  maxconn?: number;
  /** Where HAProxy takes RTMP publishers (address:port, TCP); unset: no RTMP frontend. */
  rtmpBind?: string;
  /** The node map: node id → how to reach it, for /n/{node}/ paths (unset: no such paths). */
  nodeMapPath?: string;
  /** CA bundle for nodes with an https:// public URL; default @system-ca, the system's. */
  caFile?: string;
  /** Certificate and key (one PEM file) HAProxy terminates TLS with; unset: plain HTTP. */
  tlsCrt?: string;
  /** The balancer itself speaks HTTPS (it has --tls-cert). */
  balancerTls?: boolean;
  /** --node-urls balancer: sessions made through a region backend are named under /n/{edge}. */
  pinSessions?: boolean;
}

/** One server of a region's backend: an edge of the region, or of the nearest one as a backup. */
export interface HaproxyServer {
  /** The backend's name in HAProxy: be_<region>. */
  backend: string;
  name: string;
  /** host:port as the config names it. */
  address: string;
  agentPort?: number;
  backup: boolean;
  /**
   * HAProxy's numeric server id (`id` keyword), unique in its backend. Consistent hashing places a
   * server on the ring by this id, so it is kept for as long as the server stays: the config on
   * disk, a server added at run time and the same server after a reload hash streams alike.
   */
  id: number;
  /** An origin's RTMP port in RTMP_BACKEND (TCP checks), not an edge. */
  rtmp?: boolean;
  /** A draining origin: weight 0, no new publishers (RTMP servers only). */
  drain?: boolean;
  /** An edge with an https:// public URL: TLS to it, checked against caFile, `sni` its name (none for an address). */
  tls?: { caFile: string; sni?: string };
}

export interface RenderedHaproxy<M extends string | MapFile = string> {
  cfg: string;
  /** The config without its servers: equal shapes differ only in servers. */
  shape: string;
  /** The geo map: the pins' text, or the map built from the GeoIP database (tens of MB: its file, never read into memory) when renderHaproxy was given one. */
  map: M;
  /** The node map (nodeMapLine per origin and edge), for /n/{node}/ paths. */
  nodeMap: string;
  regions: string[];
  /** Where each region's backend sits (its edges' centre, or a kept region's last one): the `kept` of the next render. */
  sites: Map<string, Position>;
  /** Every region server, then the RTMP servers, in config order. */
  servers: HaproxyServer[];
}

/**
 * Whether two rendered maps are the same: texts by their text, built maps by their file (a build's
 * file never changes: the same MapFile is the same map, another one a new build, replaced whole).
 */
export function sameMap(a: string | MapFile, b: string | MapFile): boolean {
  return a === b;
}

/** A server's key in id maps: backend/name, as HAProxy's CLI names it. */
export const serverKey = (backend: string, name: string): string => `${backend}/${name}`;

/** The `server` line's arguments after the address, for the config file and `add server` alike. */
export function serverArguments(server: HaproxyServer): string {
  if (!Number.isInteger(server.id) || server.id < 1) throw new TypeError(`server ${server.name}: id must be a positive integer, got ${server.id}`);
  if (server.rtmp) return `id ${server.id} ${RTMP_CHECKS} weight ${rtmpWeight(server)}`;
  const agent = server.agentPort ? ` agent-check agent-port ${server.agentPort} agent-inter ${AGENT_INTER}` : '';
  const tls = server.tls ? ` ssl verify required ca-file ${server.tls.caFile}${server.tls.sni ? ` sni str(${server.tls.sni}) check-sni ${server.tls.sni}` : ''}` : '';
  return `id ${server.id} ${SERVER_CHECKS}${agent}${tls}${server.backup ? ' backup' : ''}`;
}

/**
 * The server ids a rendered config holds (backend/name → id), e.g. the haproxy.cfg a previous run
 * left on disk: a restarted balancer keeps each server's place on the hash ring.
 */
export function parseServerIds(cfg: string): Map<string, number> {
  const ids = new Map<string, number>();
  let backend: string | undefined;
  for (const line of cfg.split('\n')) {
    const section = /^(\w+)(?:\s+(\S+))?/.exec(line);
    if (section) backend = section[1] === 'backend' ? section[2] : undefined;
    const server = backend && /^\s+server\s+(\S+)\s+\S+\s+id\s+(\d+)\b/.exec(line);
    if (server) ids.set(serverKey(backend!, server[1]!), Number(server[2]));
  }
  return ids;
}

/** An RTMP server's weight in HAProxy: 0 while its origin drains. */
export const rtmpWeight = (server: Pick<HaproxyServer, 'drain'>): number => (server.drain ? 0 : RTMP_WEIGHT);

/**
 * A node's line in the node map: `<id> <scheme>|<address>|<port>|<name>`. HAProxy connects to an
 * address (set-dst takes no names): the public URL's host when it is one, else the node's
 * announced address (its media address, on the same machine). <name> is the host to check the
 * certificate against and send as SNI, empty for an address.
 */
export function nodeMapLine(node: Pick<NodeSnapshot, 'id' | 'publicUrl' | 'announcedIp'>): string | undefined {
  const url = new URL(node.publicUrl);
  const scheme = url.protocol.slice(0, -1);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const isAddress = isIP(host) !== 0;
  const addr = isAddress ? host : host === 'localhost' ? '127.0.0.1' : node.announcedIp;
  if (!addr) return undefined;
  const port = url.port || (scheme === 'https' ? '443' : '80');
  return `${node.id} ${scheme}|${addr}|${port}|${isAddress ? '' : host}`;
}

/** host:port of a node's HTTP (public URL) or RTMP (rtmp://host:port/live) address. */
function address(nodeUrl: string): string {
  const url = new URL(nodeUrl);
  const port = url.port || (url.protocol === 'https:' ? 443 : url.protocol === 'rtmp:' ? 1935 : 80);
  return `${url.hostname}:${port}`;
}

const centroid = (nodes: NodeSnapshot[]) => ({
  lat: nodes.reduce((s, n) => s + n.lat, 0) / nodes.length,
  lon: nodes.reduce((s, n) => s + n.lon, 0) / nodes.length,
});

/**
 * Gives each server its id: the one in `held` when it has one (it is in HAProxy with it), else the
 * lowest id its backend leaves free, in name order. `held` may list servers that are no longer
 * wanted but still in HAProxy (waiting for their connections to end): their ids stay taken.
 */
function assignIds(backend: string, names: string[], held: ReadonlyMap<string, number>): number[] {
  const taken = new Set<number>();
  const prefix = `${backend}/`;
  for (const [key, id] of held) if (key.startsWith(prefix)) taken.add(id);
  let next = 1;
  return names.map((name) => {
    const id = held.get(serverKey(backend, name));
    if (id !== undefined) return id;
    while (taken.has(next)) next++;
    taken.add(next);
    return next;
  });
}

/** Where each region's edges are (regionDistanceKm's sites), by region name. */
export function edgeSites(nodes: readonly NodeSnapshot[]): Map<string, Position[]> {
  const sites = new Map<string, Position[]>();
  for (const n of nodes) if (n.roles.includes('edge')) sites.set(n.region, [...(sites.get(n.region) ?? []), { lat: n.lat, lon: n.lon }]);
  return sites;
}

/** The map's default region: the configured one when it has edges, else the first region by name. */
export function mapDefaultRegion(regions: readonly string[], configured: string): string {
  return regions.includes(configured) ? configured : [...regions].sort()[0] ?? configured;
}

/**
 * `geoMap`: the map's file when it comes from the GeoIP database (balancer/GeoMap.ts, pins
 * included); without it the map holds the pins alone. `kept`: regions HAProxy runs (with where
 * their edges were) whose backends stay though their edges are gone, served by the nearest
 * region's edges; the map sends no one there, but the default region may be one.
 */
export function renderHaproxy(nodes: readonly NodeSnapshot[], pins: readonly MapPin[], layout: HaproxyLayout, held?: ReadonlyMap<string, number>, geoMap?: undefined, kept?: ReadonlyMap<string, Position>): RenderedHaproxy<string>;
export function renderHaproxy(nodes: readonly NodeSnapshot[], pins: readonly MapPin[], layout: HaproxyLayout, held?: ReadonlyMap<string, number>, geoMap?: MapFile, kept?: ReadonlyMap<string, Position>): RenderedHaproxy<string | MapFile>;
export function renderHaproxy(
  nodes: readonly NodeSnapshot[],
  pins: readonly MapPin[],
  layout: HaproxyLayout,
  held: ReadonlyMap<string, number> = new Map(),
  geoMap?: MapFile,
  kept: ReadonlyMap<string, Position> = new Map(),
): RenderedHaproxy<string | MapFile> {
  const byRegion = new Map<string, NodeSnapshot[]>();
  for (const n of [...nodes].filter((n) => n.roles.includes('edge')).sort((a, b) => a.id.localeCompare(b.id))) {
    byRegion.set(n.region, [...(byRegion.get(n.region) ?? []), n]);
  }
  const live = [...byRegion.keys()].sort();
  const names = [...new Set([...live, ...kept.keys()])].sort();
  const centres = new Map(names.map((r) => [r, byRegion.has(r) ? centroid(byRegion.get(r)!) : kept.get(r)!]));
  const nearestTo = (point: { lat: number; lon: number }, except?: string) =>
    live.filter((r) => r !== except).sort((a, b) => distanceKm(point, centres.get(a)!) - distanceKm(point, centres.get(b)!) || a.localeCompare(b))[0];

  const regions = names.map((name) => {
    const backend = `be_${name}`;
    const backupRegion = nearestTo(centres.get(name)!, name);
    const members = [...(byRegion.get(name) ?? []).map((n) => ({ n, backup: false })), ...(backupRegion ? byRegion.get(backupRegion)!.map((n) => ({ n, backup: true })) : [])];
    const serverNames = members.map(({ n, backup }) => (backup ? `${n.id}.backup` : n.id));
    const ids = assignIds(backend, serverNames, held);
    const servers: HaproxyServer[] = members.map(({ n, backup }, i) => ({
      backend,
      name: serverNames[i]!,
      address: address(n.publicUrl),
      ...(n.agentPort ? { agentPort: n.agentPort } : {}),
      ...(n.publicUrl.startsWith('https:') ? { tls: { caFile: layout.caFile ?? SYSTEM_CA, ...(isIP(new URL(n.publicUrl).hostname.replace(/^\[|\]$/g, '')) ? {} : { sni: new URL(n.publicUrl).hostname }) } } : {}),
      backup,
      id: ids[i]!,
    }));
    return { name, servers };
  });

  // RTMP publishers go to any live origin that takes RTMP (the registry lists only live nodes).
  const origins = layout.rtmpBind ? [...nodes].filter((n) => n.roles.includes('origin') && n.rtmpUrl).sort((a, b) => a.id.localeCompare(b.id)) : [];
  const rtmpIds = assignIds(RTMP_BACKEND, origins.map((n) => n.id), held);
  const rtmpServers: HaproxyServer[] = origins.map((n, i) => ({
    backend: RTMP_BACKEND,
    name: n.id,
    address: address(n.rtmpUrl!),
    backup: false,
    id: rtmpIds[i]!,
    rtmp: true,
    drain: n.draining,
  }));

  const sites = edgeSites(nodes);
  const entries = pins
    .map((pin) => ({
      cidr: pin.cidr,
      // A position pin goes where the route API would send it: the region of the nearest edge.
      region: pin.region && byRegion.has(pin.region) ? pin.region : pin.lat !== undefined && pin.lon !== undefined ? regionsByDistance({ lat: pin.lat, lon: pin.lon }, sites)[0] : undefined,
    }))
    .filter((e): e is { cidr: string; region: string } => e.region !== undefined);
  const defaultRegion = mapDefaultRegion(names, layout.defaultRegion);
  const context = { ...layout, maxconn: layout.maxconn ?? DEFAULT_MAXCONN, defaultRegion, caFile: layout.caFile ?? SYSTEM_CA };
  return {
    cfg: CFG({
      ...context,
      regions: regions.map((r) => ({ name: r.name, servers: r.servers.map((s) => ({ ...s, args: serverArguments(s) })) })),
      rtmpServers: rtmpServers.map((s) => ({ ...s, args: serverArguments(s) })),
    }),
    shape: CFG({ ...context, regions: regions.map((r) => ({ name: r.name, servers: [] })), rtmpServers: [] }),
    map: geoMap ?? MAP({ entries }),
    nodeMap: nodes
      .filter((n) => n.roles.includes('edge') || n.roles.includes('origin'))
      .map(nodeMapLine)
      .filter((line): line is string => line !== undefined)
      .sort()
      .map((line) => `${line}\n`)
      .join(''),
    regions: names,
    sites: centres,
    servers: [...regions.flatMap((r) => r.servers), ...rtmpServers],
  };
}
