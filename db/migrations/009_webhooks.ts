import type { Knex } from 'knex';

/**
 * Webhooks (balancer/WebhookDispatcher.ts): the operator's endpoints and the events each takes,
 * the outbox of events (written in the transaction of the change each reports), and one delivery
 * row per event and endpoint, which is the retry state and the history the admin API shows.
 *
 * A delivery is sent only when it is the oldest pending one of its endpoint and subject (a stream
 * or a node): that is one range scan of the partial index (endpoint_id, subject, id).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('webhook_endpoints', (t) => {
    t.text('id').primary();
    t.text('url').notNullable();
    t.text('secret').notNullable();
    /** Event types it takes (JSON array of names; "*" for every one). */
    t.jsonb('events').notNullable();
    t.text('description').notNullable().defaultTo('');
    t.boolean('enabled').notNullable().defaultTo(true);
    /** While it does not answer at all: calls to it wait until then (one backoff for the endpoint, not one per stream). */
    t.timestamp('retry_at', { useTz: true, precision: 3 });
    t.integer('failures').notNullable().defaultTo(0);
    t.timestamp('created_at', { useTz: true, precision: 3 }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('webhook_events', (t) => {
    /** Outbox order: per subject, the order of the changes (writers lock the subject first). */
    t.bigIncrements('seq');
    t.text('id').notNullable().unique();
    t.text('type').notNullable();
    /** What it is ordered by: stream:<name> or node:<id>. */
    t.text('subject').notNullable();
    t.jsonb('data').notNullable();
    t.timestamp('created_at', { useTz: true, precision: 3 }).notNullable().defaultTo(knex.fn.now());
    t.index(['created_at']);
  });
  await knex.schema.createTable('webhook_deliveries', (t) => {
    t.bigIncrements('id');
    t.bigInteger('event_seq').notNullable().references('webhook_events.seq').onDelete('CASCADE');
    t.text('endpoint_id').notNullable().references('webhook_endpoints.id').onDelete('CASCADE');
    t.text('subject').notNullable();
    /** pending, delivered, or failed (given up). */
    t.text('state').notNullable().defaultTo('pending');
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('next_attempt_at', { useTz: true, precision: 3 }).notNullable().defaultTo(knex.fn.now());
    /** The node sending it now, until when: another takes it over once the lease has passed (the sender died). */
    t.text('lease_owner');
    t.timestamp('lease_until', { useTz: true, precision: 3 });
    t.text('last_node');
    t.integer('last_status');
    t.text('last_error');
    t.timestamp('last_attempt_at', { useTz: true, precision: 3 });
    t.timestamp('delivered_at', { useTz: true, precision: 3 });
    /** The delivery this one replays (admin API), if any. */
    t.bigInteger('replay_of');
    t.timestamp('created_at', { useTz: true, precision: 3 }).notNullable().defaultTo(knex.fn.now());
    t.index(['endpoint_id', 'subject', 'id'], 'webhook_deliveries_chain_idx', { predicate: knex.whereRaw("state = 'pending'") });
    t.index(['next_attempt_at'], 'webhook_deliveries_due_idx', { predicate: knex.whereRaw("state = 'pending'") });
    t.index(['endpoint_id', 'id']);
    t.index(['event_seq']);
  });
  await knex.schema.alterTable('streams', (t) => {
    /** The origin of its last publish, kept after it ends: a publish on another origin soon after is a move. */
    t.text('last_origin_node_id');
    /** How many of --webhook-viewer-thresholds its viewers had passed at the last stream.viewers event. */
    t.integer('viewer_level').notNullable().defaultTo(0);
    t.timestamp('viewers_reported_at', { useTz: true, precision: 3 });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('streams', (t) => {
    t.dropColumn('last_origin_node_id');
    t.dropColumn('viewer_level');
    t.dropColumn('viewers_reported_at');
  });
  await knex.schema.dropTable('webhook_deliveries');
  await knex.schema.dropTable('webhook_events');
  await knex.schema.dropTable('webhook_endpoints');
}
