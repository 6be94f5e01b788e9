import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';

/**
 * The cluster secret: configured (RELAYCAST_CLUSTER_SECRET), or for a one-machine cluster
 * generated once and kept in the data dir. Every node of a multi-node cluster must be given the
 * same one: it signs stream tokens and guards the internal relay API.
 */
export function clusterSecret(config: Pick<Config, 'clusterSecret' | 'dataDir'>, logger?: Logger): string {
  if (config.clusterSecret) return config.clusterSecret;
  const file = join(config.dataDir, 'cluster-secret');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    mkdirSync(config.dataDir, { recursive: true });
    const secret = randomBytes(32).toString('base64url');
    writeFileSync(file, secret, { mode: 0o600 });
    logger?.warn({ file }, 'RELAYCAST_CLUSTER_SECRET is not set; generated one. Nodes of a multi-node cluster need the same secret.');
    return secret;
  }
}
