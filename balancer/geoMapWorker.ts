import { closeSync, openSync, writeSync } from 'node:fs';
import { bundledDatabases } from './GeoLocator.ts';
import { GeoMapBuilder, type GeoMapBuilt, type GeoMapPin } from './GeoMapBuilder.ts';
import { BUILD_READS, MmdbTree } from './MmdbTree.ts';
import type { Position } from '../core/geo.ts';

/**
 * GeoMap's child process: opens the databases once (GeoMapWorkerData, its one argument, as JSON),
 * then answers each build request on its IPC channel with the map, so that the seconds a whole
 * database takes never stall the balancer's event loop, nor its memory stay the balancer's. It
 * exits when the channel closes (the balancer stopped or died).
 */

export interface GeoMapWorkerData {
  databases?: string[];
}

export interface GeoMapRequest {
  id: number;
  /** Where the map is written (the answer names it rather than carry 40 MB over the channel). */
  out: string;
  sites: Array<[string, Position[]]>;
  pins: GeoMapPin[];
  defaultRegion: string;
}

if (!process.send) throw new Error('geoMapWorker runs as a child process with an IPC channel (see GeoMap)');
const { databases } = JSON.parse(process.argv[2] ?? '{}') as GeoMapWorkerData;
const builder = Promise.all((databases ?? bundledDatabases()).map((path) => MmdbTree.open(path, BUILD_READS))).then((trees) => new GeoMapBuilder(trees));
// Reported to the first request; not an unhandled rejection before it comes.
builder.catch(() => undefined);

process.on('message', (request: GeoMapRequest) => void answer(request));
process.on('disconnect', () => process.exit(0));

async function answer(request: GeoMapRequest): Promise<void> {
  try {
    const started = performance.now();
    const fd = openSync(request.out, 'w');
    let built: GeoMapBuilt;
    try {
      // The map goes to its file as it is written: this process never holds all of it.
      built = (await builder).build({ sites: new Map(request.sites), pins: request.pins, defaultRegion: request.defaultRegion }, (bytes) => writeAll(fd, bytes));
    } finally {
      closeSync(fd);
    }
    const { map: _empty, ...figures } = built;
    process.send!({ id: request.id, result: { ...figures, buildMs: performance.now() - started } });
  } catch (error) {
    const { name, message, field } = error as Error & { field?: string };
    process.send!({ id: request.id, error: { name, message, field } });
  }
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
}
