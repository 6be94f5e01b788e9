import type { Knex } from 'knex';

/**
 * The length of each relay's media path from the origin (`path_km`: great-circle hops summed, a
 * latency estimate), written by the edge with its relay: its parent's path_km + the distance
 * between them, or the origin's distance when the origin feeds it. Other edges read it to choose a
 * parent whose path stays bounded (edge/RelayTree.ts).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('relays', (t) => {
    t.double('path_km');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('relays', (t) => {
    t.dropColumn('path_km');
  });
}
