import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../core/logger.ts';
import { GeoMap, GeoMapSkipped } from './GeoMap.ts';
import { edgeSites, mapDefaultRegion, type MapPin } from './HaproxyConfig.ts';
import { MapFile } from './MapFile.ts';
import type { NodeSnapshot } from './policies.ts';

/**
 * HAProxy's geo map from the GeoIP database, for HaproxyController: a build (GeoMap, in a child
 * process) starts when the regions or their edges' positions change, and `onBuilt` is called when
 * its map is in. Until then `map` is the last map built (undefined before the first: the
 * controller renders the pins alone). A build that failed is not tried again until the geography
 * changes (the error is logged).
 *
 * Each build writes a file of its own in `dir` (the balancer's node process never reads it whole:
 * see MapFile); `map` names the last one. The files of earlier maps are removed by prune(), which
 * the controller calls between its refreshes: a refresh under way may still copy or send the map
 * it rendered, though a newer one came meanwhile.
 */

/**
 * How long the map process is kept after a build. It keeps nothing a next build could reuse but
 * pages of the databases (every record is decoded again for a new geography), and starting one
 * costs ~0.1 s: it is let go at once, so that its memory (~150 MB while it builds) is the
 * balancer's only while a build runs.
 */
const GEO_MAP_IDLE_MS = 0;

export interface HaproxyGeoMapOptions {
  /** .mmdb files in GeoLocator's order; unset: the bundled ones. */
  databases?: string[];
  /** Where the maps are built (emptied first: a previous run's maps are of no use). */
  dir: string;
  pins: MapPin[];
  /** The configured default region (the map's default when it has edges). */
  defaultRegion: string;
  logger: Logger;
  onBuilt: () => void;
}

export class HaproxyGeoMap {
  readonly #options: HaproxyGeoMapOptions;
  /** The geography the map was built for, its file, the build under way, the last that failed. */
  #state: { key: string; map?: MapFile; building: string; failed: string } = { key: '', building: '', failed: '' };
  /** Files of maps built before `map`, removed by prune(). */
  readonly #stale: string[] = [];
  #builds = 0;
  #worker: GeoMap | undefined;
  #idle: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: HaproxyGeoMapOptions) {
    if (typeof options?.onBuilt !== 'function') throw new TypeError('onBuilt must be a function');
    if (typeof options.dir !== 'string' || !options.dir) throw new TypeError('dir must be a directory path');
    this.#options = options;
    rmSync(options.dir, { recursive: true, force: true });
    mkdirSync(options.dir, { recursive: true });
  }

  /** The last map built (its file), or undefined before the first. */
  get map(): MapFile | undefined {
    return this.#state.map;
  }

  /** The geography the map in `map` was built for ('' before the first). */
  get key(): string {
    return this.#state.key;
  }

  /** Starts a build for these nodes' geography unless the map is for it, or a build of it runs or failed. */
  update(nodes: readonly NodeSnapshot[]): void {
    if (this.#closed) return;
    const sites = edgeSites(nodes);
    if (sites.size === 0) return;
    const defaultRegion = mapDefaultRegion([...sites.keys()], this.#options.defaultRegion);
    const key = `${defaultRegion}|${[...sites].map(([region, at]) => `${region}:${at.map((p) => `${p.lat},${p.lon}`).sort().join(';')}`).sort().join('|')}`;
    const state = this.#state;
    if (key === state.key || key === state.building || key === state.failed) return;
    state.building = key;
    clearTimeout(this.#idle);
    const worker = (this.#worker ??= new GeoMap({ databases: this.#options.databases }));
    const out = join(this.#options.dir, `geo-${++this.#builds}.map`);
    worker
      // A build queued behind another is skipped if a newer geography came meanwhile: edges join
      // in bursts, and each build takes seconds.
      .build({ sites, pins: this.#options.pins, defaultRegion }, { out, wanted: () => this.#state.building === key })
      .then(
        (result) => {
          if (this.#state.building !== key) {
            rmSync(out, { force: true }); // a newer geography is being built
            return;
          }
          if (this.#state.map) this.#stale.push(this.#state.map.path);
          this.#state = { key, map: new MapFile(out, result.bytes, result.entries), building: '', failed: '' };
          this.#options.logger.info({ entries: result.entries, bytes: result.bytes, ms: Math.round(result.ms), regions: sites.size }, 'geo map built from the GeoIP database');
          if (!this.#closed) this.#options.onBuilt();
        },
        (error: unknown) => {
          if (error instanceof GeoMapSkipped) return;
          if (this.#state.building === key) this.#state = { ...this.#state, building: '', failed: key };
          if (!this.#closed) this.#options.logger.error({ err: error }, 'geo map build failed; HAProxy keeps the map it has');
        },
      )
      .finally(() => this.#letGoWhenIdle());
  }

  /** Removes the files of maps older than `map` (call it when nothing may be copying or sending them). */
  prune(): void {
    for (const path of this.#stale.splice(0)) rmSync(path, { force: true });
  }

  /** Stops any build; the maps' files are removed. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idle);
    await this.#worker?.close();
    rmSync(this.#options.dir, { recursive: true, force: true });
  }

  #letGoWhenIdle(): void {
    if (this.#state.building || this.#closed) return;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      const idle = this.#worker;
      this.#worker = undefined;
      void idle?.close();
    }, GEO_MAP_IDLE_MS);
    this.#idle.unref();
  }
}
