import type { Knex } from 'knex';
import { recordAudit } from './audit.ts';
import { markSilentNodeDead } from './nodes.ts';
import { deleteRelaysOfNodes, deleteRelaysOfStreams } from './relays.ts';
import { releaseStreamsOfOrigins } from './streams.ts';

/**
 * What a node's end leaves behind, cleaned up the same way whoever declares it: the TTL reaper,
 * a shutdown, or an early confirmation of a lost node (the balancer's probe, a peer's report).
 */

/**
 * Releases the live streams placed on these nodes (so that their publishers may publish again on
 * another origin at once) and removes those streams' relays and every relay the nodes took part
 * in. Returns the names of the released streams. Run it in the transaction that ended the nodes.
 */
export async function cleanUpAfterNodes(trx: Knex, nodeIds: string[], reason = 'its origin ended'): Promise<string[]> {
  const streams = await releaseStreamsOfOrigins(trx, nodeIds, reason);
  await deleteRelaysOfStreams(trx, streams);
  await deleteRelaysOfNodes(trx, nodeIds);
  return streams;
}

/**
 * Declares `nodeId` dead before its TTL, in one transaction with the cleanup and an audit entry
 * (`node.dead`, with `reason`), provided it is still up and has not heartbeated for `silentMs`:
 * a node that heartbeats is alive whatever anyone reports. Returns the released streams, or
 * undefined when the node was not declared dead by this call (it heartbeated, or someone else
 * declared it first).
 */
export async function declareSilentNodeDead(
  knex: Knex,
  death: { nodeId: string; silentMs: number; actor: string; reason: string },
): Promise<string[] | undefined> {
  return knex.transaction(async (trx) => {
    if (!(await markSilentNodeDead(trx, death.nodeId, death.silentMs))) return undefined;
    const streams = await cleanUpAfterNodes(trx, [death.nodeId], 'its origin was lost');
    await recordAudit(trx, { actor: death.actor, action: 'node.dead', target: death.nodeId, detail: { streams, reason: death.reason } });
    return streams;
  });
}
