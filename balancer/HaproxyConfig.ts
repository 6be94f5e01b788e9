import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { PACKAGE_ROOT } from '../core/paths.ts';
import type { GeoPin } from '../core/geoPins.ts';

/** What the geo map needs of a pin (the setting's GeoPin has it). */
export type MapPin = Omit<GeoPin, 'range'>;
import { distanceKm, type NodeSnapshot } from './policies.ts';

/**
 * Renders haproxy.cfg and the geo map from the templates in haproxy/: a backend per region with
 * its edges as servers (agent-check for weights and drain) and the next-nearest region's edges as
 * backups; the frontend picks the backend from the client address through the map. Pure: the same
 * snapshot always renders the same text.
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
}

export interface RenderedHaproxy {
  cfg: string;
  map: string;
  regions: string[];
}

function address(publicUrl: string): string {
  const url = new URL(publicUrl);
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`;
}

const centroid = (nodes: NodeSnapshot[]) => ({
  lat: nodes.reduce((s, n) => s + n.lat, 0) / nodes.length,
  lon: nodes.reduce((s, n) => s + n.lon, 0) / nodes.length,
});

export function renderHaproxy(nodes: readonly NodeSnapshot[], pins: readonly MapPin[], layout: HaproxyLayout): RenderedHaproxy {
  const byRegion = new Map<string, NodeSnapshot[]>();
  for (const n of [...nodes].filter((n) => n.roles.includes('edge')).sort((a, b) => a.id.localeCompare(b.id))) {
    byRegion.set(n.region, [...(byRegion.get(n.region) ?? []), n]);
  }
  const names = [...byRegion.keys()].sort();
  const centres = new Map(names.map((r) => [r, centroid(byRegion.get(r)!)]));
  const nearestTo = (point: { lat: number; lon: number }, except?: string) =>
    names.filter((r) => r !== except).sort((a, b) => distanceKm(point, centres.get(a)!) - distanceKm(point, centres.get(b)!) || a.localeCompare(b))[0];

  const regions = names.map((name) => {
    const backupRegion = nearestTo(centres.get(name)!, name);
    const server = (n: NodeSnapshot, backup: boolean) => ({
      name: backup ? `${n.id}.backup` : n.id,
      address: address(n.publicUrl),
      agentPort: n.agentPort ?? undefined,
      backup,
    });
    return {
      name,
      servers: [...byRegion.get(name)!.map((n) => server(n, false)), ...(backupRegion ? byRegion.get(backupRegion)!.map((n) => server(n, true)) : [])],
    };
  });

  const entries = pins
    .map((pin) => ({
      cidr: pin.cidr,
      region: pin.region && byRegion.has(pin.region) ? pin.region : pin.lat !== undefined && pin.lon !== undefined ? nearestTo({ lat: pin.lat, lon: pin.lon }) : undefined,
    }))
    .filter((e): e is { cidr: string; region: string } => e.region !== undefined);
  const defaultRegion = byRegion.has(layout.defaultRegion) ? layout.defaultRegion : names[0] ?? layout.defaultRegion;
  return {
    cfg: CFG({ ...layout, maxconn: layout.maxconn ?? DEFAULT_MAXCONN, defaultRegion, regions }),
    map: MAP({ entries }),
    regions: names,
  };
}
