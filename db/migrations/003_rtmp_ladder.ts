import type { Knex } from 'knex';

/**
 * A stream's own RTMP ladder (core/rtmpLadder.ts): the picture heights its RTMP publishes are
 * bridged as, highest first; an empty array is off; null follows the origin's `--rtmp-ladder`.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('streams', (t) => {
    t.specificType('rtmp_ladder', 'integer[]');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('streams', (t) => {
    t.dropColumn('rtmp_ladder');
  });
}
