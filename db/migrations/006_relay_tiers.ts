import type { Knex } from 'knex';

/**
 * Relay tiers: an edge may pull a stream from another edge (its parent, `upstream_node_id`).
 * `tree_key` orders a stream's relay tree: a parent's key is always smaller than its children's,
 * so following parents can never come back to where it started (edge/RelayTree.ts). `tier` is
 * the number of edges between the relay and the origin (0: fed by the origin). The edge writes
 * both; other edges read them to choose a parent.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('relays', (t) => {
    t.bigInteger('tree_key');
    t.integer('tier');
    t.index(['stream_id', 'upstream_node_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('relays', (t) => {
    t.dropIndex(['stream_id', 'upstream_node_id']);
    t.dropColumn('tree_key');
    t.dropColumn('tier');
  });
}
