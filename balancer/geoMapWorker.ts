import { parentPort, workerData } from 'node:worker_threads';
import { bundledDatabases } from './GeoLocator.ts';
import { GeoMapBuilder, type GeoMapPin } from './GeoMapBuilder.ts';
import { BUILD_READS, MmdbTree } from './MmdbTree.ts';
import type { Position } from './policies.ts';

/**
 * GeoMap's worker thread: opens the databases once (GeoMapWorkerData), then answers each build
 * request with the map, so that the seconds a whole database takes never stall the balancer's
 * event loop. The trees and their decoded positions stay for the next build.
 */

export interface GeoMapWorkerData {
  databases?: string[];
}

export interface GeoMapRequest {
  id: number;
  sites: Array<[string, Position[]]>;
  pins: GeoMapPin[];
  defaultRegion: string;
}

const port = parentPort;
if (!port) throw new Error('geoMapWorker runs as a worker thread (see GeoMap)');
const { databases } = workerData as GeoMapWorkerData;
const builder = Promise.all((databases ?? bundledDatabases()).map((path) => MmdbTree.open(path, BUILD_READS))).then((trees) => new GeoMapBuilder(trees));
// Reported to the first request; not an unhandled rejection before it comes.
builder.catch(() => undefined);

port.on('message', (request: GeoMapRequest) => void answer(request));

async function answer(request: GeoMapRequest): Promise<void> {
  try {
    const started = performance.now();
    const result = (await builder).build({ sites: new Map(request.sites), pins: request.pins, defaultRegion: request.defaultRegion });
    // The map's memory moves to the caller's thread rather than being copied.
    port!.postMessage({ id: request.id, result: { ...result, buildMs: performance.now() - started } }, [result.map.buffer as ArrayBuffer]);
  } catch (error) {
    const { name, message, field } = error as Error & { field?: string };
    port!.postMessage({ id: request.id, error: { name, message, field } });
  }
}
