import { Command, Option } from 'commander';
import { ClusterNode } from './ClusterNode.ts';
import { FIELDS, describeKey, loadConfig, VERSION, type ConfigKey } from './config.ts';
import { ConfigError } from './errors.ts';
import { createLogger } from './logger.ts';

/**
 * `relaycast <roles...> [flags]`: starts one process running the given roles. Exit codes:
 * 0 after a clean shutdown, 1 when start-up fails, 2 for bad configuration.
 */
export async function main(argv: string[]): Promise<void> {
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
    const message = error.message.slice(error.field.length + 2);
    process.stderr.write(`relaycast: invalid configuration: ${describeKey(error.field)}: ${message}\n`);
    process.exit(2);
  }

  const logger = createLogger(config.logLevel, { node: config.nodeId });
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
    logger.fatal({ err: error }, 'start-up failed');
    await node.stop().catch(() => undefined);
    process.exit(1);
  }
}
