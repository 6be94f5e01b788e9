import type { Knex } from 'knex';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { probeNode, SILENT_BEATS } from '../core/nodeProbe.ts';
import { declareSilentNodeDead } from '../db/repositories/nodeDeath.ts';
import { nodeSilenceMs } from '../db/repositories/nodes.ts';

/**
 * The balancer's side of a fast failover: a client that just lost its node (a player whose edge
 * went silent, a publisher whose origin did) names it when it asks for a new one (`lost=` on the
 * route API and on the balancer's WHEP/WHIP). The balancer then probes that node itself. If it
 * does not answer, the node is left out of every client's choices at once, and declared dead —
 * with the TTL reaper's cleanup, so a dead origin's streams are free to be published elsewhere —
 * as soon as it has also been silent in the registry for SILENT_BEATS heartbeat intervals.
 *
 * A hint is only a reason to look: a node that answers is never left out or declared dead, so a
 * forged hint costs a live node one /healthz request per ANSWER_HOLD_MS, and a node that still
 * heartbeats (alive, but not reachable from this balancer) is only left out for a while, never
 * declared dead by a hint.
 */

/**
 * How long the outcome of one probe stands for a node. The viewers of a dead edge all lose it at
 * once and all hint at it: they share one probe. It also bounds what a flood of forged hints
 * costs a live node: one /healthz request a second from each balancer.
 */
const ANSWER_HOLD_MS = 1000;

/**
 * How long a node that did not answer stays out of the choices (unless declared dead, which takes
 * it out for good). A dead node is declared within SILENT_BEATS heartbeat intervals; a live node
 * that was only slow to answer (its event loop stalled) gets its viewers back a few seconds later,
 * about a default TTL's share, instead of being kept away on one missed probe.
 */
const UNREACHABLE_HOLD_MS = 3000;

export interface NodeLossCheckerOptions {
  knex: Knex;
  /** The cluster's heartbeat interval (every node's --heartbeat-ms). */
  heartbeatMs: number;
  /** Who declares (this balancer's node id), for the audit log. */
  actor: string;
  logger: Logger;
  metrics: Metrics;
  /** Called when this checker declared a node dead (the balancer then reads the registry afresh). */
  onDead: (nodeId: string) => void;
}

export class NodeLossChecker {
  readonly #options: NodeLossCheckerOptions;
  readonly #logger: Logger;
  /** The check of each node hinted at lately, shared by the hints that arrive while it stands. */
  readonly #checks = new Map<string, { until: number; done: Promise<void> }>();
  /** Nodes that did not answer, until when they stay out of the choices. */
  readonly #unreachable = new Map<string, number>();

  constructor(options: NodeLossCheckerOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'node-loss' });
  }

  /**
   * A client says it lost `node`: probe it (or join the probe under way) and, when it does not
   * answer, leave it out and declare it dead once it is silent. Resolves when that is settled:
   * at most SILENT_BEATS heartbeat intervals plus two probe timeouts; at once for a node that
   * answers. Never throws.
   */
  check(node: { id: string; publicUrl: string }): Promise<void> {
    const now = Date.now();
    this.#forgetOld(now);
    const held = this.#checks.get(node.id);
    if (held && held.until > now) return held.done;
    const done = this.#check(node).catch((error: unknown) => this.#logger.warn({ err: error, node: node.id }, 'could not check a node said to be lost'));
    this.#checks.set(node.id, { until: now + ANSWER_HOLD_MS, done });
    return done;
  }

  /** The nodes to leave out of the choices now: probed lately, and they did not answer. */
  unreachable(): ReadonlySet<string> {
    this.#forgetOld(Date.now());
    return new Set(this.#unreachable.keys());
  }

  async #check(node: { id: string; publicUrl: string }): Promise<void> {
    const { knex, heartbeatMs, metrics, actor } = this.#options;
    if (await probeNode(node.publicUrl, node.id)) {
      this.#unreachable.delete(node.id);
      metrics.nodeLossChecks.inc({ by: 'hint', outcome: 'alive' });
      return;
    }
    this.#unreachable.set(node.id, Date.now() + UNREACHABLE_HOLD_MS);
    this.#logger.info({ lostNode: node.id }, 'a node said to be lost does not answer; left out of the choices');
    const silentMs = SILENT_BEATS * heartbeatMs;
    const silence = await nodeSilenceMs(knex, node.id);
    if (silence === undefined) return; // already dead or gone
    if (silence < silentMs) {
      // Not silent long enough yet: wait until it would be, then look again. A node that
      // heartbeats meanwhile is alive to the registry and stays up; one that answers is alive.
      await new Promise((resolve) => setTimeout(resolve, silentMs - silence));
      if (await probeNode(node.publicUrl, node.id)) {
        this.#unreachable.delete(node.id);
        metrics.nodeLossChecks.inc({ by: 'hint', outcome: 'alive' });
        return;
      }
    }
    const streams = await declareSilentNodeDead(knex, { nodeId: node.id, silentMs, actor, reason: 'a client lost it; silent and not answering the balancer' });
    if (!streams) {
      metrics.nodeLossChecks.inc({ by: 'hint', outcome: 'unreachable' });
      return;
    }
    metrics.nodeLossChecks.inc({ by: 'hint', outcome: 'dead' });
    this.#logger.warn({ deadNode: node.id, streams }, 'node a client lost is silent and does not answer; declared dead early and cleaned up');
    this.#options.onDead(node.id);
  }

  #forgetOld(now: number): void {
    for (const [id, until] of this.#unreachable) if (until <= now) this.#unreachable.delete(id);
    for (const [id, check] of this.#checks) if (check.until <= now) this.#checks.delete(id);
  }
}
