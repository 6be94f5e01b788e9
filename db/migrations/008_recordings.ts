import type { Knex } from 'knex';

/**
 * Recording (media/record/): a stream's own settings (`record`: on, off or null for the origins'
 * --record; `recording_retention_days`: null for --recording-retention-days), the recordings
 * (one per stretch of a stream's media: a publisher that reconnects, or a failover to another
 * origin, continues the same one), their segments (where the bytes are, when they start, how long
 * they last), and the bytes waiting to be deleted (`recording_garbage`, emptied by the node that
 * holds them).
 *
 * Listing a stream's recordings over a time range is one range scan of (stream, started_at);
 * a recording's segments over a range, one of (recording_id, started_at).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('streams', (t) => {
    t.boolean('record');
    t.integer('recording_retention_days');
  });
  await knex.schema.createTable('recordings', (t) => {
    t.text('id').primary();
    t.text('stream').notNullable();
    t.timestamp('started_at', { useTz: true, precision: 3 }).notNullable();
    /** The end of its last media, moved on as segments are written. */
    t.timestamp('ended_at', { useTz: true, precision: 3 }).notNullable();
    /** Set when its recorder stopped in order (the stream ended); null while recording or after a crash. */
    t.timestamp('closed_at', { useTz: true, precision: 3 });
    /** When a recorder last wrote to it: a recording not closed and not written to for a while is over (its origin died). */
    t.timestamp('updated_at', { useTz: true, precision: 3 }).notNullable();
    t.double('duration').notNullable().defaultTo(0);
    t.bigInteger('bytes').notNullable().defaultTo(0);
    t.index(['stream', 'started_at']);
  });
  await knex.schema.createTable('recording_segments', (t) => {
    t.bigIncrements('id');
    t.text('recording_id').notNullable().references('recordings.id').onDelete('CASCADE');
    /** The packager run that made it: a new run (a new init segment) is a discontinuity. */
    t.text('run').notNullable();
    t.bigInteger('msn').notNullable();
    t.timestamp('started_at', { useTz: true, precision: 3 }).notNullable();
    /** Seconds of media; while a segment is being written, as far as its bytes were flushed. */
    t.double('duration').notNullable();
    t.bigInteger('bytes').notNullable();
    t.boolean('complete').notNullable();
    t.text('store').notNullable();
    /** The node that wrote it (its local store holds it). */
    t.text('node_id').notNullable();
    t.text('key').notNullable();
    t.text('init_key').notNullable();
    t.text('codecs').notNullable();
    t.unique(['recording_id', 'run', 'msn']);
    t.index(['recording_id', 'started_at']);
    t.index(['started_at']);
    // The upload backlog of each node (origin/RecordingUploads.ts): its segments still on local disk.
    t.index(['node_id', 'started_at'], 'recording_segments_local_idx', { predicate: knex.whereRaw("store = 'local'") });
  });
  await knex.schema.createTable('recording_garbage', (t) => {
    t.bigIncrements('id');
    t.text('store').notNullable();
    t.text('node_id').notNullable();
    t.text('key').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['node_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('recording_garbage');
  await knex.schema.dropTable('recording_segments');
  await knex.schema.dropTable('recordings');
  await knex.schema.alterTable('streams', (t) => {
    t.dropColumn('record');
    t.dropColumn('recording_retention_days');
  });
}
