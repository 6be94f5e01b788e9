import type { Router } from 'express';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import type { Database } from '../db/Database.ts';
import type { WorkerPool } from '../media/WorkerPool.ts';
import type { RtcListen } from '../media/WebRtcSession.ts';

/** What every role of a process shares. */
export interface RoleContext {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  db: Database;
  workers: WorkerPool;
  /** Signs stream tokens and authenticates the internal relay API. */
  clusterSecret: string;
  rtc: RtcListen;
}

/** A role's load, summed into the node's heartbeat. */
export interface RoleLoad {
  viewers: number;
  streams: number;
  bitrateOut: number;
}

/** Origin, edge or balancer, as the process runs it. */
export interface Role {
  readonly router: Router;
  /** Starts what the role listens on besides HTTP (RTMP); throws when it cannot. */
  start?(): Promise<void>;
  /** Called once the database is reachable and migrated, before the node registers. */
  databaseReady?(): Promise<void>;
  load(): Promise<RoleLoad>;
  /** Records again what the role carries, after the node was declared dead and came back. */
  revive?(): Promise<void>;
  /**
   * Shutdown, first step: the node is already draining (no new work comes); move what the role
   * carries elsewhere, by `deadline` (epoch ms) at the latest.
   */
  drain?(deadline: number): Promise<void>;
  /** Ends the role's sessions and frees its media resources. */
  close(): Promise<void>;
}
