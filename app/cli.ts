import { Command, Option } from 'commander';
import { ClusterNode } from './ClusterNode.ts';
import { FIELDS, describeKey, loadConfig, VERSION, type ConfigKey } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { createLogger } from '../core/logger.ts';
import { clusterSecret } from '../core/clusterSecret.ts';
import { signStreamToken, STREAM_ACTIONS, type StreamAction } from '../core/tokens.ts';
import { newWebhookSecret } from '../core/webhookSignature.ts';
import { Database } from '../db/Database.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { setNodeDraining } from '../db/repositories/nodes.ts';

/**
 * `relaycast <roles...> [flags]`: starts one process running the given roles (also `relaycast
 * token`, `drain`, `undrain`, and `webhook-secret`, which prints a new signing secret). Exit codes:
 * 0 after a clean shutdown, 1 when start-up fails, 2 for bad configuration.
 */
export async function main(argv: string[]): Promise<void> {
  if (argv[2] === 'token') return printToken(argv);
  if (argv[2] === 'drain' || argv[2] === 'undrain') return drainNode(argv);
  if (argv[2] === 'webhook-secret') {
    // A signing secret for --admission-secret or a webhook endpoint (Standard Webhooks, whsec_…).
    process.stdout.write(`${newWebhookSecret()}\n`);
    return;
  }
  const program = new Command('relaycast')
    .description('Origin/edge WebRTC live-streaming cluster')
    .version(VERSION)
    .argument('<roles...>', 'origin, edge, balancer, or all (several may be given: "origin edge")')
    .option('--config <file>', 'JSON config file (also RELAYCAST_CONFIG)')
    .showHelpAfterError();
  for (const field of FIELDS) {
    program.addOption(new Option(`${field.flag} <value>`, `${field.description} [${field.env}]`));
  }
  program.parse(argv);
  const options = program.opts<Record<string, string | undefined>>();

  let config;
  try {
    const flags: Partial<Record<ConfigKey, unknown>> = {};
    for (const field of FIELDS) if (options[field.key] !== undefined) flags[field.key] = options[field.key];
    config = loadConfig({ roles: program.args, flags, configFile: options.config });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    exitInvalid(error);
  }

  const logger = createLogger(config.logLevel, { node: config.nodeId }, config.logFormat);
  const node = new ClusterNode(config, logger);

  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal; exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'signal received');
    node.stop().then(
      () => process.exit(0),
      (error) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // Whatever slips through is logged, not fatal: one bad request or a database blip must not take
  // down a node with thousands of viewers.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));

  try {
    await node.start();
  } catch (error) {
    // A setting found bad only when used (a geo database that is not one) is still exit 2.
    if (error instanceof ConfigError) logger.fatal(`invalid configuration: ${describeKey(error.field)}`);
    else logger.fatal({ err: error }, 'start-up failed');
    await node.stop().catch(() => undefined);
    if (error instanceof ConfigError) exitInvalid(error);
    process.exit(1);
  }
}

/** Exit code 2, and one line naming the setting, its flag and its variable. */
function exitInvalid(error: ConfigError): never {
  const message = error.message.slice(error.field.length + 2);
  process.stderr.write(`relaycast: invalid configuration: ${describeKey(error.field)}: ${message}\n`);
  process.exit(2);
}

/**
 * `relaycast token --stream NAME [--action publish|play] [--ttl SECONDS]`: prints a stream token
 * signed with this machine's cluster secret (the same config sources as the server).
 */
async function printToken(argv: string[]): Promise<void> {
  const program = new Command('relaycast token')
    .description('print a publish or play token for one stream')
    .requiredOption('--stream <name>', 'stream name')
    .addOption(new Option('--action <action>', 'what the token allows').choices([...STREAM_ACTIONS]).default('publish'))
    .option('--ttl <seconds>', 'lifetime in seconds', '86400')
    .option('--data-dir <dir>', 'data dir holding a generated cluster secret [RELAYCAST_DATA_DIR]')
    .option('--cluster-secret <secret>', 'cluster secret [RELAYCAST_CLUSTER_SECRET]');
  program.parse(argv.slice(1));
  const options = program.opts<{ stream: string; action: StreamAction; ttl: string; dataDir?: string; clusterSecret?: string }>();
  try {
    const config = loadConfig({ roles: ['origin'], flags: { dataDir: options.dataDir, clusterSecret: options.clusterSecret } });
    const token = await signStreamToken(clusterSecret(config), { stream: options.stream, action: options.action, ttlSeconds: Number(options.ttl) });
    process.stdout.write(`${token}\n`);
  } catch (error) {
    process.stderr.write(`relaycast token: ${(error as Error).message}\n`);
    process.exit(2);
  }
}

/**
 * `relaycast drain|undrain <node id>`: puts a node in draining (no new viewers or streams; the
 * ones it has keep playing) or takes it out, through the same database the cluster uses.
 */
async function drainNode(argv: string[]): Promise<void> {
  const action = argv[2] as 'drain' | 'undrain';
  const program = new Command(`relaycast ${action}`)
    .argument('<node>', 'node id, as in GET /api/v1/nodes or the nodes table')
    .option('--database-url <url>', 'Postgres URL [DATABASE_URL]');
  program.parse(argv.slice(1));
  const options = program.opts<{ databaseUrl?: string }>();
  const config = loadConfig({ roles: ['balancer'], flags: { databaseUrl: options.databaseUrl } });
  if (!config.databaseUrl) {
    // The embedded database belongs to the running node; a second process must not open it.
    process.stderr.write(`relaycast ${action}: needs DATABASE_URL; on the embedded database use POST /api/v1/nodes/{id}/${action}\n`);
    process.exit(2);
  }
  const db = Database.open({ url: config.databaseUrl });
  try {
    await db.migrate();
    const id = program.args[0]!;
    if (!(await setNodeDraining(db.knex, id, action === 'drain'))) {
      process.stderr.write(`relaycast ${action}: no node ${id}\n`);
      process.exitCode = 1;
      return;
    }
    await recordAudit(db.knex, { actor: 'cli', action: `node.${action}`, target: id });
    process.stdout.write(`${id} ${action === 'drain' ? 'draining' : 'no longer draining'}\n`);
  } finally {
    await db.close();
  }
}
