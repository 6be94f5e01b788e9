import type { Knex } from 'knex';

/**
 * A peer's report that it lost its connection to a node (nodes.ts reportNodeLost): when, by whom,
 * and why. A report alone declares nothing; it lets the registry confirm a death early (the node
 * also misses its heartbeats and does not answer a probe) instead of waiting out the TTL.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.timestamp('lost_reported_at', { useTz: true });
    t.text('lost_reported_by');
    t.text('lost_reason');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.dropColumn('lost_reported_at');
    t.dropColumn('lost_reported_by');
    t.dropColumn('lost_reason');
  });
}
