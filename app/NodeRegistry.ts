import type { Knex } from 'knex';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { probeNode, SILENT_BEATS } from '../core/nodeProbe.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { cleanUpAfterNodes, declareSilentNodeDead } from '../db/repositories/nodeDeath.ts';
import {
  heartbeatNode,
  listReportedSilentNodes,
  markExpiredNodesDead,
  markNodeGone,
  upsertNode,
  type NodeInfo,
  type NodeLoad,
} from '../db/repositories/nodes.ts';

export interface NodeRegistryOptions {
  knex: Knex;
  info: NodeInfo;
  /** Called at every heartbeat for the node's current load. */
  load: () => NodeLoad | Promise<NodeLoad>;
  heartbeatMs: number;
  ttlMs: number;
  logger: Logger;
  metrics?: Metrics;
  /**
   * Called after the node registered again because another node had declared it dead (it was cut
   * off from the database too long): its streams and relays were cleaned up meanwhile, and what
   * it still carries must be recorded again.
   */
  onRevived?: () => Promise<void>;
}

/**
 * This node's membership of the cluster: registers it, heartbeats its load, and declares other
 * nodes dead when their heartbeat is older than the TTL, cleaning up their streams and relays.
 * A node a peer reported lost (nodes.ts reportNodeLost) is declared dead sooner, at the first tick
 * after it has been silent for SILENT_BEATS heartbeat intervals since the report, if it does not
 * answer a probe either (confirmReports).
 *
 * A database error never escapes: it is logged, counted, and the next tick tries again. If the
 * node was declared dead while cut off, it registers anew when the database is back.
 */
export class NodeRegistry {
  readonly #knex: Knex;
  readonly #info: NodeInfo;
  readonly #load: () => NodeLoad | Promise<NodeLoad>;
  readonly #heartbeatMs: number;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #metrics?: Metrics;
  readonly #onRevived?: () => Promise<void>;
  #registered = false;
  #draining = false;
  #databaseUp: boolean | undefined;
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> | undefined;
  /** The confirmation of peers' reports under way, if one is (see confirmReports). */
  #confirming: Promise<string[]> | undefined;
  #stopped = false;

  constructor(options: NodeRegistryOptions) {
    if (options.heartbeatMs * 2 > options.ttlMs) {
      throw new TypeError('ttlMs must be at least twice heartbeatMs');
    }
    this.#knex = options.knex;
    this.#info = options.info;
    this.#load = options.load;
    this.#heartbeatMs = options.heartbeatMs;
    this.#ttlMs = options.ttlMs;
    this.#logger = options.logger.child({ component: 'registry' });
    this.#metrics = options.metrics;
    this.#onRevived = options.onRevived;
  }

  get id(): string {
    return this.#info.id;
  }

  /** Whether this node has a row in the registry (its first heartbeat went through). */
  get registered(): boolean {
    return this.#registered;
  }

  /** Whether an operator has this node draining, as of the last heartbeat. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Whether the last round trip to the database succeeded. */
  get databaseUp(): boolean {
    return this.#databaseUp === true;
  }

  /** Runs the first tick (register, reap) and schedules the next ones; never throws. */
  async start(): Promise<void> {
    if (this.#stopped) throw new Error('NodeRegistry was stopped');
    await this.#runTick();
  }

  /** Stops heartbeating and marks the node gone, ending its streams and relays. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#tick;
    await this.#confirming?.catch(() => undefined);
    if (!this.#registered) return;
    try {
      await this.#knex.transaction(async (trx) => {
        if (await markNodeGone(trx, this.#info.id)) {
          const streams = await cleanUpAfterNodes(trx, [this.#info.id], 'its origin shut down');
          await recordAudit(trx, { actor: this.#info.id, action: 'node.gone', target: this.#info.id, detail: { streams } });
        }
      });
      this.#logger.info('node marked gone');
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not mark node gone; its TTL will expire instead');
    }
  }

  /**
   * Declares dead every up node whose heartbeat is older than the TTL and ends its streams and
   * relays, in one transaction. Returns the ids this call declared dead.
   */
  async reap(): Promise<string[]> {
    return this.#knex.transaction(async (trx) => {
      const dead = await markExpiredNodesDead(trx, this.#ttlMs);
      if (dead.length === 0) return dead;
      const entries = [];
      for (const id of dead) {
        const streams = await cleanUpAfterNodes(trx, [id], 'its origin died (missed heartbeats)');
        entries.push({ actor: this.#info.id, action: 'node.dead', target: id, detail: { streams } });
      }
      await recordAudit(trx, entries);
      return dead;
    });
  }

  /**
   * Declares dead, ahead of the TTL, each node a peer reported lost that has not heartbeated since
   * the report for SILENT_BEATS intervals and does not answer a probe (core/nodeProbe.ts): the
   * same cleanup as reap(), audited with the report. A node that answers, or heartbeats, stays up
   * whatever was reported. Returns the ids this call declared dead; runs beside the heartbeat
   * (a probe may take PROBE_TIMEOUT_MS), one at a time.
   */
  confirmReports(): Promise<string[]> {
    this.#confirming ??= this.#confirm().finally(() => (this.#confirming = undefined));
    return this.#confirming;
  }

  async #confirm(): Promise<string[]> {
    const silentMs = SILENT_BEATS * this.#heartbeatMs;
    const suspects = (await listReportedSilentNodes(this.#knex, silentMs)).filter((s) => s.id !== this.#info.id);
    const dead: string[] = [];
    await Promise.all(
      suspects.map(async (suspect) => {
        if (await probeNode(suspect.publicUrl, suspect.id)) {
          this.#logger.info({ lostNode: suspect.id, reportedBy: suspect.reportedBy }, 'a node reported lost answers its probe; left up');
          this.#metrics?.nodeLossChecks.inc({ by: 'report', outcome: 'alive' });
          return;
        }
        const reason = `reported lost by ${suspect.reportedBy} (${suspect.reason}), silent and not answering`;
        const streams = await declareSilentNodeDead(this.#knex, { nodeId: suspect.id, silentMs, actor: this.#info.id, reason });
        if (!streams) {
          this.#metrics?.nodeLossChecks.inc({ by: 'report', outcome: 'unreachable' });
          return;
        }
        dead.push(suspect.id);
        this.#metrics?.nodeLossChecks.inc({ by: 'report', outcome: 'dead' });
        this.#logger.warn({ deadNode: suspect.id, reportedBy: suspect.reportedBy, streams }, 'node reported lost confirmed dead early; cleaned up');
      }),
    );
    return dead;
  }

  #runTick(): Promise<void> {
    this.#tick = this.#beat().finally(() => {
      if (!this.#stopped) this.#timer = setTimeout(() => void this.#runTick(), this.#heartbeatMs);
    });
    return this.#tick;
  }

  async #beat(): Promise<void> {
    try {
      const load = await this.#load();
      const beat = this.#registered ? await heartbeatNode(this.#knex, this.#info.id, load) : undefined;
      if (beat) this.#draining = beat.draining;
      if (!beat) {
        const revived = this.#registered;
        if (revived) this.#logger.warn('this node had been declared dead; registering again');
        await upsertNode(this.#knex, this.#info, load);
        // A process starting under an id that crashed before holds none of the old one's streams.
        if (!this.#registered) await cleanUpAfterNodes(this.#knex, [this.#info.id], 'its origin restarted');
        await recordAudit(this.#knex, { actor: this.#info.id, action: 'node.up', target: this.#info.id });
        this.#registered = true;
        this.#logger.info({ registered: this.#info }, 'node registered');
        if (revived) await this.#onRevived?.();
      }
      const dead = await this.reap();
      for (const id of dead) this.#logger.warn({ deadNode: id }, 'node missed its heartbeats; declared dead and cleaned up');
      this.#metrics?.nodesReaped.inc(dead.length);
      if (!this.#stopped) {
        this.confirmReports().catch((error) => this.#logger.debug({ err: error }, 'confirming lost-node reports failed; the next tick tries again'));
      }
      this.#metrics?.heartbeats.inc({ outcome: 'ok' });
      this.#setDatabaseUp(true);
    } catch (error) {
      this.#metrics?.heartbeats.inc({ outcome: 'failed' });
      this.#setDatabaseUp(false, error);
    }
  }

  #setDatabaseUp(up: boolean, error?: unknown): void {
    this.#metrics?.databaseUp.set(up ? 1 : 0);
    if (up && this.#databaseUp === false) this.#logger.info('database reachable again');
    if (!up) {
      // Log the first failure loudly and the rest quietly, so an outage is one line, not thousands.
      const level = this.#databaseUp === false ? 'debug' : 'error';
      this.#logger[level]({ err: error }, 'registry heartbeat failed; retrying');
    }
    this.#databaseUp = up;
  }
}
