import type { Knex } from 'knex';

/**
 * The cluster's state. Times are the database's own clock (`now()`), so nodes with skewed clocks
 * still agree on who is dead.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('nodes', (t) => {
    t.text('id').primary();
    t.specificType('roles', 'text[]').notNullable();
    t.text('region').notNullable();
    t.double('lat').notNullable();
    t.double('lon').notNullable();
    t.text('public_url').notNullable();
    t.text('announced_ip').notNullable();
    t.text('version').notNullable();
    // up: heartbeating; dead: heartbeat older than the TTL; gone: shut down cleanly.
    t.text('state').notNullable().defaultTo('up');
    t.integer('capacity').notNullable();
    t.integer('viewers').notNullable().defaultTo(0);
    t.integer('streams').notNullable().defaultTo(0);
    t.bigInteger('bitrate_out').notNullable().defaultTo(0);
    t.double('cpu').notNullable().defaultTo(0);
    t.boolean('draining').notNullable().defaultTo(false);
    t.timestamp('started_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('heartbeat_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('ended_at', { useTz: true });
    t.index(['state', 'heartbeat_at']);
  });

  await knex.schema.createTable('streams', (t) => {
    t.bigIncrements('id').primary();
    t.text('name').notNullable().unique();
    // idle: known but not publishing; live: a publisher is on origin_node_id.
    t.text('state').notNullable().defaultTo('idle');
    t.text('origin_node_id').references('nodes.id').onDelete('SET NULL');
    t.text('ingest_protocol');
    t.jsonb('codecs');
    t.text('publisher_session');
    t.boolean('private').notNullable().defaultTo(false);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('started_at', { useTz: true });
    t.timestamp('ended_at', { useTz: true });
    t.index(['origin_node_id']);
    t.index(['state']);
  });

  await knex.schema.createTable('relays', (t) => {
    t.bigIncrements('id').primary();
    t.bigInteger('stream_id').notNullable().references('streams.id').onDelete('CASCADE');
    t.text('edge_node_id').notNullable().references('nodes.id').onDelete('CASCADE');
    // The origin, or another edge for relay tiers.
    t.text('upstream_node_id').notNullable().references('nodes.id').onDelete('CASCADE');
    t.text('state').notNullable().defaultTo('connecting');
    t.integer('viewers').notNullable().defaultTo(0);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['stream_id', 'edge_node_id']);
    t.index(['upstream_node_id']);
  });

  await knex.schema.createTable('tokens', (t) => {
    t.bigIncrements('id').primary();
    // admin: API token with scopes; stream_key: RTMP/WHIP publish key of one stream.
    t.text('kind').notNullable();
    // sha256 of the secret; the secret itself is shown once and never stored.
    t.text('hash').notNullable().unique();
    t.bigInteger('stream_id').references('streams.id').onDelete('CASCADE');
    t.specificType('scopes', 'text[]').notNullable().defaultTo('{}');
    t.text('label');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('revoked_at', { useTz: true });
    t.timestamp('last_used_at', { useTz: true });
    t.index(['stream_id']);
  });

  await knex.schema.createTable('audit', (t) => {
    t.bigIncrements('id').primary();
    t.timestamp('at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Who: a node id, "admin:<token id>", or a client address.
    t.text('actor').notNullable();
    t.text('action').notNullable();
    t.text('target');
    t.text('outcome').notNullable().defaultTo('ok');
    t.jsonb('detail');
    t.index(['at']);
    t.index(['action']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['audit', 'tokens', 'relays', 'streams', 'nodes']) {
    await knex.schema.dropTableIfExists(table);
  }
}
