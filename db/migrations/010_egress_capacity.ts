import type { Knex } from 'knex';

/**
 * What a node's network can send (bits/s, --egress-capacity), beside what it sends
 * (nodes.bitrate_out): the balancer loads a node by the larger share of viewers, CPU and egress,
 * and an edge choosing a parent for its relay leaves out the ones already sending their most.
 * Rows written before this migration take the default every node now starts with.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.bigInteger('egress_capacity').notNullable().defaultTo(1_000_000_000);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.dropColumn('egress_capacity');
  });
}
