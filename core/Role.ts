import type { Router } from 'express';
import type { Admission } from './Admission.ts';
import type { CertificateWatcher } from './CertificateWatcher.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import type { WebhookClient } from './webhookHttp.ts';

/**
 * The contract between a process (app/ClusterNode.ts) and the roles it runs. What a role gets
 * beyond this (the database, the media workers) its own context type adds: the kernel knows
 * nothing of either.
 */
export interface RoleContext {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** Signs stream tokens and authenticates the internal API. */
  clusterSecret: string;
  /** The node's TLS certificate (--tls-cert/--tls-key), one watcher for the process: its HTTPS port and the balancer's HAProxy. */
  certificates?: CertificateWatcher;
  /** Asks the operator's admission endpoint before a publish or play (--admission-url); unset: nobody is asked. */
  admission?: Admission;
  /** The process's one client for calls to operators' endpoints (the balancer's event webhooks use it). */
  webhookClient: WebhookClient;
}

/** A role's load, summed into the node's heartbeat. */
export interface RoleLoad {
  viewers: number;
  streams: number;
  bitrateOut: number;
}

/**
 * A node's load, 0..1+: the largest of its viewer share of capacity, its CPU and its egress share
 * of what its network sends at most (bitrateOut of egressCapacity; left out when not given).
 */
export function nodeLoad(viewers: number, capacity: number, cpu: number, bitrateOut = 0, egressCapacity = Infinity): number {
  return Math.max(viewers / Math.max(capacity, 1), cpu, bitrateOut / egressCapacity);
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
