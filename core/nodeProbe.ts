/**
 * Whether a node is there: asked when a peer or a client says it lost its connection to it,
 * before anyone declares it dead ahead of its TTL. The node's /healthz answers from the process
 * itself (no database, no media workers), and every Relaycast response names the node that sent
 * it (`X-Relaycast-Node`), so a proxy answering for a vanished node, or a new process that took
 * the address under another id, does not count as the node answering.
 */

/**
 * How long a probe waits. A live node answers /healthz in a few milliseconds (it does no I/O);
 * 500 ms is many round trips even between regions, while a dead process's port refuses at once
 * and a dead host never answers, so a longer wait would only spend the 3 s a failover may take.
 */
export const PROBE_TIMEOUT_MS = 500;

/** The header every Relaycast response carries: the id of the node that answered. */
export const NODE_HEADER = 'x-relaycast-node';

/**
 * True when the node `nodeId` at `publicUrl` answers (any HTTP status, from that node), false when
 * the connection fails, times out, or someone else answers. Never throws.
 */
export async function probeNode(publicUrl: string, nodeId: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  try {
    const res = await fetch(`${publicUrl.replace(/\/+$/, '')}/healthz`, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual', cache: 'no-store' });
    await res.body?.cancel().catch(() => undefined);
    return res.headers.get(NODE_HEADER) === nodeId;
  } catch {
    return false;
  }
}

/**
 * Heartbeat intervals a node must have been silent before a report or a failed probe may declare
 * it dead early. A live node's heartbeats come one interval apart plus the beat's own time (a
 * load reading of at most 250 ms and a database round trip), so two whole intervals without one
 * means it missed at least one: with the probe failing too, it is gone, not slow. The TTL (several
 * intervals) stays what declares a node dead when nobody reports it.
 */
export const SILENT_BEATS = 2;
