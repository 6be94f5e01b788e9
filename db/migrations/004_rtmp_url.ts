import type { Knex } from 'knex';

/**
 * Where an origin takes RTMP publishers (rtmp://host:port/live), so that the balancer can hand a
 * publisher the nearest origin's address instead of its own host. Null for nodes without RTMP.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.text('rtmp_url');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.dropColumn('rtmp_url');
  });
}
