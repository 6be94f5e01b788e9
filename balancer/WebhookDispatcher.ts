import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { WebhookCallError, type WebhookClient } from '../core/webhookHttp.ts';
import { recordViewerEvents } from '../db/repositories/streams.ts';
import { claimDeliveries, markAttemptFailed, markDelivered, outboxBacklog, pruneOutbox, type ClaimedDelivery } from '../db/repositories/webhooks.ts';

/**
 * Sends the event outbox (db/repositories/webhooks.ts) to the operator's endpoints. Every
 * balancer runs one; they share the work through leases in Postgres, so each delivery is made by
 * one at a time, and a balancer that dies mid-call leaves its deliveries to the others once the
 * lease passes. Per endpoint and subject (a stream, a node) one delivery is in flight at a time,
 * oldest first: events of a stream arrive in order. A delivery that fails is tried again with
 * exponential backoff and jitter, and given up after `giveUpMs` (kept as `failed`, for the admin
 * API to show and replay).
 *
 * The dispatcher also writes the stream.viewers events (thresholds, period): the counts are
 * in the database, and one balancer's update of a stream's row wins each.
 */

/**
 * How often an idle dispatcher looks for new deliveries: 100 ms, so an event leaves some 50 ms
 * after its change on average (events are written by other processes: nothing to wake it), for ten
 * queries a second on an empty partial index, which cost Postgres nothing measurable.
 */
const POLL_MS = 100;

/** Deliveries claimed at once, each the head of another stream's queue: as many as the client keeps connections open. */
const BATCH = 32;

/** A lease outlives the call's deadline by this much, so that a slow answer is never sent twice at once. */
const LEASE_MARGIN_MS = 5000;

/**
 * Retries: 1 s after the first failure, doubling to at most 30 s, each drawn at random between half
 * and all of that (jitter: deliveries that failed together do not retry together). 30 s at most:
 * an endpoint back from an outage gets its backlog within half a minute. The endpoint-wide backoff
 * (no answer at all) keeps that from costing a dead endpoint more than one call per interval.
 */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;

/** How often the dispatcher forgets old deliveries and writes viewer events and outbox gauges. */
const HOUSEKEEPING_MS = 2000;
const PRUNE_EVERY_MS = 60_000;

/** Delivered events are kept a week (the admin API's history); given-up ones a month, for inspection and replay. */
const KEEP_DELIVERED_MS = 7 * 86_400_000;
const KEEP_FAILED_MS = 30 * 86_400_000;

export function retryDelayMs(attempts: number, random = Math.random): number {
  const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(ceiling * (0.5 + random() / 2));
}

export interface WebhookDispatcherOptions {
  db: Knex;
  nodeId: string;
  client: WebhookClient;
  timeoutMs: number;
  giveUpMs: number;
  viewerThresholds: number[];
  viewersPeriodS: number;
  logger: Logger;
  metrics: Metrics;
}

export class WebhookDispatcher {
  readonly #options: WebhookDispatcherOptions;
  readonly #logger: Logger;
  /** This process's lease name: the node id and a random part, so that a restarted node under the same id owns none of its predecessor's leases. */
  readonly #owner: string;
  #stopped = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #housekeeping: NodeJS.Timeout | undefined;
  #lastPrune = 0;
  /** Whether the last round failed on the database, so an outage is logged once. */
  #failing = false;

  constructor(options: WebhookDispatcherOptions) {
    if (options.timeoutMs <= 0 || options.giveUpMs <= 0) throw new TypeError('timeoutMs and giveUpMs must be positive');
    this.#options = options;
    this.#logger = options.logger.child({ component: 'webhooks' });
    this.#owner = `${options.nodeId}/${randomBytes(4).toString('hex')}`;
  }

  start(): void {
    if (this.#loop) throw new Error('WebhookDispatcher already started');
    this.#loop = this.#run();
    this.#housekeeping = setInterval(() => void this.#houseKeep(), HOUSEKEEPING_MS);
  }

  /** Stops claiming; resolves when the calls in flight ended (their deliveries are marked). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#housekeeping);
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { db, nodeId, timeoutMs } = this.#options;
    while (!this.#stopped) {
      let claimed: ClaimedDelivery[] = [];
      try {
        claimed = await claimDeliveries(db, { owner: this.#owner, nodeId, limit: BATCH, leaseMs: timeoutMs + LEASE_MARGIN_MS });
        await Promise.all(claimed.map((delivery) => this.#send(delivery)));
        this.#setFailing(false);
      } catch (error) {
        this.#setFailing(true, error);
      }
      // A round that sent something goes on at once: the next event of each stream is due now.
      if (claimed.length === 0 && !this.#stopped) await this.#sleep(POLL_MS);
    }
  }

  async #send(delivery: ClaimedDelivery): Promise<void> {
    const { db, client, timeoutMs, giveUpMs, metrics } = this.#options;
    const started = performance.now();
    let status: number | undefined;
    let error: string;
    try {
      const answer = await client.post(delivery.url, { id: delivery.event.id, secret: delivery.secret, body: JSON.stringify(delivery.event), timeoutMs });
      metrics.webhookCallSeconds.observe((performance.now() - started) / 1000);
      status = answer.status;
      if (status >= 200 && status < 300) {
        await markDelivered(db, { id: delivery.id, endpointId: delivery.endpointId, owner: this.#owner, status });
        metrics.webhookDeliveries.inc({ outcome: 'delivered' });
        if (delivery.attempts === 1) metrics.webhookLagSeconds.observe(Math.max(0, Date.now() - Date.parse(delivery.event.timestamp)) / 1000);
        return;
      }
      error = `answered ${status}`;
    } catch (failure) {
      if (!(failure instanceof WebhookCallError)) throw failure;
      error = failure.message;
    }
    const state = await markAttemptFailed(
      db,
      { id: delivery.id, endpointId: delivery.endpointId, owner: this.#owner, status, error, retryInMs: retryDelayMs(delivery.attempts), giveUpMs, unreachable: status === undefined },
      (failures) => retryDelayMs(failures),
    );
    metrics.webhookDeliveries.inc({ outcome: state === 'failed' ? 'failed' : 'retried' });
    const level = state === 'failed' ? 'warn' : 'debug';
    this.#logger[level]({ endpoint: delivery.endpointId, event: delivery.event.id, type: delivery.event.type, attempts: delivery.attempts, error }, state === 'failed' ? 'webhook delivery given up' : 'webhook delivery failed; will retry');
  }

  async #houseKeep(): Promise<void> {
    const { db, metrics, viewerThresholds, viewersPeriodS } = this.#options;
    try {
      if (viewerThresholds.length > 0 || viewersPeriodS > 0) {
        if ((await recordViewerEvents(db, { thresholds: viewerThresholds, periodS: viewersPeriodS })) > 0) this.#wake?.();
      }
      const backlog = await outboxBacklog(db);
      metrics.webhookOutboxPending.set(backlog.pending);
      metrics.webhookOutboxOldestSeconds.set(backlog.oldestAgeS);
      if (Date.now() - this.#lastPrune >= PRUNE_EVERY_MS) {
        this.#lastPrune = Date.now();
        const pruned = await pruneOutbox(db, { deliveredMs: KEEP_DELIVERED_MS, failedMs: KEEP_FAILED_MS });
        if (pruned > 0) this.#logger.debug({ pruned }, 'old webhook deliveries forgotten');
      }
    } catch (error) {
      this.#logger.debug({ err: error }, 'webhook housekeeping failed; the next round tries again');
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  #setFailing(failing: boolean, error?: unknown): void {
    if (failing && !this.#failing) this.#logger.error({ err: error }, 'webhook dispatch failed (database?); retrying');
    if (!failing && this.#failing) this.#logger.info('webhook dispatch going again');
    this.#failing = failing;
  }
}
