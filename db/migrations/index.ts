import type { Knex } from 'knex';
import * as initial from './001_initial.ts';
import * as agentPort from './002_agent_port.ts';
import * as rtmpLadder from './003_rtmp_ladder.ts';
import * as rtmpUrl from './004_rtmp_url.ts';
import * as nodeLossReports from './005_node_loss_reports.ts';
import * as relayTiers from './006_relay_tiers.ts';
import * as hls from './007_hls.ts';
import * as recordings from './008_recordings.ts';
import * as webhooks from './009_webhooks.ts';
import * as egressCapacity from './010_egress_capacity.ts';
import * as relayPathKm from './011_relay_path_km.ts';

/**
 * Migrations are listed here rather than found on disk, so they load the same way under tsx, in a
 * bundle or in the container image. Append new ones; never edit one that has shipped.
 */
const MIGRATIONS: Record<string, Knex.Migration> = {
  '001_initial': initial,
  '002_agent_port': agentPort,
  '003_rtmp_ladder': rtmpLadder,
  '004_rtmp_url': rtmpUrl,
  '005_node_loss_reports': nodeLossReports,
  '006_relay_tiers': relayTiers,
  '007_hls': hls,
  '008_recordings': recordings,
  '009_webhooks': webhooks,
  '010_egress_capacity': egressCapacity,
  '011_relay_path_km': relayPathKm,
};

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(MIGRATIONS),
  getMigrationName: (name) => name,
  getMigration: async (name) => MIGRATIONS[name]!,
};
