import type { Knex } from 'knex';

/** The HAProxy agent-check port of an edge, for the balancer's rendered config. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.integer('agent_port');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.dropColumn('agent_port');
  });
}
