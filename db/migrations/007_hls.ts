import type { Knex } from 'knex';

/**
 * HLS (media/hls/): a stream's own packaging setting (`hls`: on-demand, always or off; null for
 * the origins' --hls), and each edge's HLS viewers of each stream (`hls_viewers`, written by the
 * edge when the count changes, shown by the admin API beside the WebRTC viewers of `relays`).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('streams', (t) => {
    t.text('hls');
  });
  await knex.schema.createTable('hls_viewers', (t) => {
    t.bigInteger('stream_id').notNullable().references('streams.id').onDelete('CASCADE');
    t.text('edge_node_id').notNullable().references('nodes.id').onDelete('CASCADE');
    t.integer('viewers').notNullable();
    t.primary(['stream_id', 'edge_node_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('hls_viewers');
  await knex.schema.alterTable('streams', (t) => {
    t.dropColumn('hls');
  });
}
