import type { Page } from 'playwright-core';
import { signStreamToken } from '../../core/tokens.ts';
import { TestBrowser, framesSentByRid, publishSimulcast, stopPublishing } from '../../kit/browser.ts';
import { createNetns, netnsUnavailable, type NetNs } from '../../kit/netns.ts';
import { createTestDatabase } from '../../kit/postgres.ts';
import { waitFor } from '../../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../../kit/relaycast.ts';
import { onInterrupt } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';

/**
 * What bench/layers.ts measures on: an origin and an edge (one mediasoup worker each, a fresh
 * Postgres database), a Chromium publishing three simulcast layers to the origin, and — where
 * network namespaces and shaping work — a namespace joined by a veth pair with a second Chromium
 * inside it for the viewer, whose link `shape()` narrows (kit/netns.ts). The nodes listen on and
 * announce the veth's host address then (a loopback-announced origin relaying to a
 * veth-announced edge does not carry media), else 127.0.0.1.
 *
 * Everything started is stopped by stop(), in the reverse order, also after a failure; the
 * database is dropped on Ctrl-C too (bench/lib/options.ts onInterrupt).
 */

export const SIMULCAST_STREAM = 'layers';
const SECRET = 'bench-layers-secret-0123456789abc';

/**
 * How long Chromium may take to turn on all three layers: it adds a layer once its bandwidth
 * estimate has room for it. A wait, not a figure.
 */
const LAYERS_ON_MS = 60_000;

/**
 * A relay closes this long after its last viewer (the default is longer): each CPU measurement
 * starts once the previous stream's relay has gone.
 */
const RELAY_LINGER_MS = 1000;

export class LayersRig {
  readonly origin: RelaycastProcess;
  readonly edge: RelaycastProcess;
  readonly publisherBrowser: TestBrowser;
  /** The page publishing the three-layer stream (its `window.publisher` is the RTCPeerConnection). */
  readonly simulcastPublisher: Page;
  /** The namespace and the Chromium inside it, when shaping is available. */
  readonly netns: NetNs | undefined;
  readonly viewerBrowser: TestBrowser | undefined;
  readonly #teardown: Array<() => Promise<unknown>>;

  private constructor(parts: Pick<LayersRig, 'origin' | 'edge' | 'publisherBrowser' | 'simulcastPublisher' | 'netns' | 'viewerBrowser'>, teardown: Array<() => Promise<unknown>>) {
    this.origin = parts.origin;
    this.edge = parts.edge;
    this.publisherBrowser = parts.publisherBrowser;
    this.simulcastPublisher = parts.simulcastPublisher;
    this.netns = parts.netns;
    this.viewerBrowser = parts.viewerBrowser;
    this.#teardown = teardown;
  }

  /**
   * `shaping`: set up the namespace and the viewer Chromium (parts 1 and 2 need them). When that
   * is impossible here, `skipped` says why and the rest runs on loopback.
   */
  static async start(progress: Progress, shaping: boolean): Promise<{ rig: LayersRig; skipped?: string }> {
    const teardown: Array<() => Promise<unknown>> = [];
    const later = (step: () => Promise<unknown>) => teardown.unshift(step);
    try {
      const skipped = shaping ? netnsUnavailable({ shaping: true }) : undefined;
      let netns: NetNs | undefined;
      if (shaping && !skipped) {
        progress.note('layers: network namespace');
        netns = await createNetns();
        const created = netns;
        later(() => created.remove());
      }
      const host = netns?.hostIp ?? '127.0.0.1';

      progress.note('layers: database, origin, edge');
      const db = await createTestDatabase();
      const dropOnInterrupt = onInterrupt(() => db.drop());
      later(async () => {
        await db.drop();
        dropOnInterrupt();
      });
      const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
      // No rate limit on WHEP POSTs: the CPU part joins its viewers eight at a time.
      const common = ['--relay-linger-ms', String(RELAY_LINGER_MS), '--post-rate-limit', '0', '--log-level', 'warn'];
      const started = await Promise.allSettled([
        startRelaycast({ roles: ['origin'], host, databaseUrl: db.url, env, args: ['--node-id', 'bench-layers-origin', ...common] }),
        startRelaycast({ roles: ['edge'], host, databaseUrl: db.url, env, args: ['--node-id', 'bench-layers-edge', ...common] }),
      ]);
      for (const s of started) if (s.status === 'fulfilled') later(() => s.value.stop());
      for (const s of started) if (s.status === 'rejected') throw s.reason;
      const [origin, edge] = started.map((s) => (s as PromiseFulfilledResult<RelaycastProcess>).value) as [RelaycastProcess, RelaycastProcess];

      progress.note('layers: Chromium');
      const publisherBrowser = await TestBrowser.launch({ secureOrigins: [origin.url] });
      later(() => publisherBrowser.close());
      const viewerBrowser = netns ? await TestBrowser.launch({ netns: netns.name }) : undefined;
      if (viewerBrowser) later(() => viewerBrowser.close());

      progress.note('layers: Chromium publishing three simulcast layers');
      const page = await publisherBrowser.page(origin.url);
      const rig = new LayersRig({ origin, edge, publisherBrowser, simulcastPublisher: page, netns, viewerBrowser }, teardown);
      const token = await rig.publishToken(SIMULCAST_STREAM);
      const published = await publishSimulcast(page, `${origin.url}/whip/${SIMULCAST_STREAM}`, token);
      if (published.status !== 201) throw new Error(`WHIP publish answered ${published.status}: ${published.body.slice(0, 300)}`);
      later(() => stopPublishing(page, token));
      let sent: Record<string, number> = {};
      await waitFor('Chromium sending all three layers', async () => {
        sent = await framesSentByRid(page);
        return Object.values(sent).filter((n) => n > 0).length === 3;
      }, LAYERS_ON_MS, 500).catch((error: Error) => {
        throw new Error(`${error.message}; frames sent by layer: ${JSON.stringify(sent)}`, { cause: error });
      });
      return { rig, skipped };
    } catch (error) {
      await runAll(teardown);
      throw error;
    }
  }

  whep(stream: string): string {
    return `${this.edge.url}/whep/${stream}`;
  }

  publishToken(stream: string): Promise<string> {
    return signStreamToken(SECRET, { stream, action: 'publish', ttlSeconds: 24 * 3600 });
  }

  /** Registers a step for stop() (run before those registered earlier). */
  later(step: () => Promise<unknown>): void {
    this.#teardown.unshift(step);
  }

  /** Stops everything started, newest first; a step that fails does not keep the others from running. */
  async stop(): Promise<void> {
    await runAll(this.#teardown);
  }
}

async function runAll(steps: Array<() => Promise<unknown>>): Promise<void> {
  for (const step of steps.splice(0)) await step().catch(() => undefined);
}
