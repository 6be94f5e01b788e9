import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Express, Request } from 'express';
import { clusterSecret } from '../core/clusterSecret.ts';
import type { Config } from '../core/config.ts';
import { CpuMeter } from '../core/CpuMeter.ts';
import { Problem } from '../core/errors.ts';
import { createApp, errorHandler, notFound, refuseUnparsable } from '../core/http.ts';
import { TlsListener } from '../core/TlsListener.ts';
import { Admission } from '../core/Admission.ts';
import { WebhookClient } from '../core/webhookHttp.ts';
import { CertificateWatcher } from '../core/CertificateWatcher.ts';
import type { Logger } from '../core/logger.ts';
import { Metrics } from '../core/metrics.ts';
import { NodeRegistry } from './NodeRegistry.ts';
import { postRateLimit } from '../core/rateLimit.ts';
import { authorizeInternal, DRAIN_PATH } from '../core/internalApi.ts';
import type { TrustedProxies } from '../core/TrustedProxies.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { Database } from '../db/Database.ts';
import { setNodeDraining, type NodeLoad } from '../db/repositories/nodes.ts';
import { nodeLoad, type Role, type RoleLoad } from '../core/Role.ts';
import { announcedAddresses, type AnnouncedAddresses } from '../core/announcedAddresses.ts';
// Types only: each role's module (and mediasoup, node-media-server, HAProxy's templates with it)
// is loaded in start() when this process runs that role; a balancer never loads mediasoup.
import type { WorkerPool } from '../media/WorkerPool.ts';
import type { Edge } from '../edge/Edge.ts';
import type { AgentCheck } from '../edge/AgentCheck.ts';

/**
 * How long start-up waits between attempts to reach and migrate the database. The process stays
 * up and answers /healthz meanwhile; a cluster whose Postgres starts after its nodes just works.
 */
const DATABASE_RETRY_MS = 2000;

/**
 * How long shutdown lets open HTTP requests finish before closing their connections. Kubernetes
 * gives 30 s between SIGTERM and SIGKILL; signalling requests take milliseconds.
 */
const HTTP_DRAIN_MS = 5000;

/**
 * How long a heartbeat (or /metrics scrape) waits for the roles' load before it goes with the last
 * one measured. Measuring asks the media workers (egress bitrates); during a join storm their
 * request queues are seconds deep, and a heartbeat that waited arrived after the node TTL: the
 * cluster took a busy edge for a dead one (test/load.test.ts). 250 ms is a small part of any
 * sensible heartbeat interval.
 */
const LOAD_WAIT_MS = 250;

/**
 * One Relaycast process: the roles it runs (origin, edge, balancer) over the parts they share —
 * the database, the node registry, the mediasoup workers and one HTTP server.
 */
export class ClusterNode {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly db: Database;
  readonly app: Express;
  readonly #cpu: CpuMeter;
  readonly #proxies: TrustedProxies;
  /** The media addresses this node announces: to WebRTC clients, and to other nodes' relays (recorded in the registry). */
  readonly #announced: AnnouncedAddresses;
  #registry: NodeRegistry | undefined;
  #workers: WorkerPool | undefined;
  #edge: Edge | undefined;
  #roles: Role[] = [];
  #agent: AgentCheck | undefined;
  /** The roles' load and the CPU as of the last heartbeat or scrape, for the agent-check. */
  #lastLoad: RoleLoad = { viewers: 0, streams: 0, bitrateOut: 0 };
  #lastCpu = 0;
  /** The roles' load being measured, if it is (see #currentLoad). */
  #measuring: Promise<RoleLoad> | undefined;
  /** The HTTP servers: the main port's (HTTPS with --tls-cert), and --http-plain-port's. */
  #servers: Array<Server | HttpsServer> = [];
  /** The main port when it speaks HTTPS. */
  #tls: TlsListener | undefined;
  #port = 0;
  #stopping = false;
  /** Set when shutdown drained the node (and so undoes it once gone). */
  #drainedForShutdown = false;
  #clusterSecret = '';
  /** Draining ahead of a shutdown (preStop or SIGTERM): the agent-check says drain. */
  #shutdownDraining = false;
  #databaseReady = false;
  /** The process's one client for calls to operators' endpoints (admission; event webhooks). */
  readonly #webhooks: WebhookClient;

  constructor(config: Config, logger: Logger) {
    this.config = config;
    this.#cpu = new CpuMeter(async () => (this.#workers ? this.#workers.cpuMs() : 0), config.workers);
    this.logger = logger;
    this.metrics = new Metrics({ node: config.nodeId });
    this.metrics.egressCapacity.set(config.egressCapacity / 8);
    this.db = Database.open({ url: config.databaseUrl, pgliteDir: Database.pgliteDirIn(config.dataDir), logger });
    this.app = createApp();
    this.#proxies = config.trustedProxies;
    this.#announced = announcedAddresses({ announcedIp: config.announcedIp, listenIp: config.rtcListenIp });
    this.#webhooks = new WebhookClient({ caFile: config.webhookCaFile });
  }

  get httpPort(): number {
    return this.#port || this.config.httpPort;
  }

  /** Starts every part; resolves once the node is registered (or stop() was called meanwhile). */
  async start(): Promise<void> {
    const { config } = this;
    this.logger.info(
      { roles: config.roles, region: config.region, database: this.db.kind, version: config.version },
      'starting relaycast',
    );
    this.#clusterSecret = clusterSecret(config, this.logger);
    // Read (and a bad pair refused) before anything starts; the HTTPS port and the balancer's
    // HAProxy share this one watcher.
    const certificates = config.tlsCert && config.tlsKey ? new CertificateWatcher(config.tlsCert, config.tlsKey) : undefined;
    const base = { config, logger: this.logger, metrics: this.metrics, db: this.db, clusterSecret: this.#clusterSecret, certificates, admission: this.#admission(), webhookClient: this.#webhooks };
    // The balancer first: its WHIP/WHEP redirects see a request before this process's own roles.
    if (config.roles.includes('balancer')) {
      const { Balancer } = await import('../balancer/Balancer.ts');
      this.#roles.push(new Balancer(base));
    }
    if (config.roles.includes('origin') || config.roles.includes('edge')) {
      const { WorkerPool } = await import('../media/WorkerPool.ts');
      this.#workers = await WorkerPool.create({
        count: config.workers,
        workerBin: WorkerPool.resolveWorkerBin(config.workerBin),
        logger: this.logger,
        metrics: this.metrics,
      });
      const { candidates, pipe, source } = this.#announced;
      this.logger.info({ candidates, relays: pipe, source, listen: config.rtcListenIp, ports: `${config.rtcMinPort}-${config.rtcMaxPort}` }, 'media addresses announced');
      const ctx = {
        ...base,
        workers: this.#workers,
        rtc: { listenIp: config.rtcListenIp, announcedIp: pipe, candidateIps: candidates, minPort: config.rtcMinPort, maxPort: config.rtcMaxPort },
        egressSent: async () => (await this.#currentLoad()).bitrateOut,
      };
      if (config.roles.includes('origin')) {
        const { Origin } = await import('../origin/Origin.ts');
        this.#roles.push(new Origin(ctx));
      }
      if (config.roles.includes('edge')) {
        const { Edge } = await import('../edge/Edge.ts');
        this.#roles.push((this.#edge = new Edge(ctx)));
      }
    }
    for (const role of this.#roles) await role.start?.();
    if (config.agentPort > 0 && this.#edge) {
      const { AgentCheck } = await import('../edge/AgentCheck.ts');
      this.#agent = await AgentCheck.start(config.agentPort, config.httpHost, () => ({
        load: nodeLoad(this.#lastLoad.viewers, config.capacity, this.#lastCpu, this.#lastLoad.bitrateOut, config.egressCapacity),
        viewerThreshold: config.viewerThreshold,
        draining: this.#shutdownDraining || this.#stopping || (this.#registry?.draining ?? false),
      }));
    }
    this.#mountRoutes();
    await this.#listen(certificates);

    if (!(await this.#migrateWhenReachable())) return;
    for (const role of this.#roles) {
      await role.databaseReady?.().catch((error) => this.logger.error({ err: error }, 'role set-up after migration failed'));
    }
    this.#registry = new NodeRegistry({
      knex: this.db.knex,
      info: {
        id: config.nodeId,
        roles: config.roles,
        region: config.region,
        lat: config.lat,
        lon: config.lon,
        publicUrl: config.publicUrl,
        announcedIp: this.#announced.pipe,
        version: config.version,
        capacity: config.capacity,
        egressCapacity: config.egressCapacity,
        agentPort: this.#agent?.port ?? null,
        rtmpUrl: config.roles.includes('origin') && config.rtmpPort > 0 ? `rtmp://${new URL(config.publicUrl).hostname}:${config.rtmpPort}/live` : null,
      },
      load: () => this.#load(),
      heartbeatMs: config.heartbeatMs,
      ttlMs: config.nodeTtlMs,
      onRevived: async () => {
        for (const role of this.#roles) await role.revive?.();
      },
      logger: this.logger,
      metrics: this.metrics,
    });
    await this.#registry.start();
    this.logger.info('relaycast ready');
  }

  /** Leaves the cluster cleanly: node marked gone, connections closed, workers and database closed. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.logger.info('shutting down');
    await this.#drain();
    this.#tls?.close();
    const closed = Promise.all(this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const server of this.#servers) server.closeIdleConnections();
    // Ending the sessions ends the relay requests that hold connections open.
    for (const role of this.#roles) await role.close().catch((error) => this.logger.error({ err: error }, 'role close failed'));
    await this.#registry?.stop();
    if (this.#drainedForShutdown) await setNodeDraining(this.db.knex, this.config.nodeId, false).catch(() => undefined);
    const timer = setTimeout(() => this.#servers.forEach((server) => server.closeAllConnections()), HTTP_DRAIN_MS);
    await closed;
    clearTimeout(timer);
    await this.#agent?.close();
    await this.#workers?.close();
    this.#webhooks.close();
    await this.db.close();
    this.logger.info('stopped');
  }

  /** The admission webhook's client, one for the roles of the process, when --admission-url is set. */
  #admission(): Admission | undefined {
    const { config } = this;
    if (!config.admissionUrl || !config.admissionSecret) return undefined;
    return new Admission({
      url: config.admissionUrl,
      secret: config.admissionSecret,
      timeoutMs: config.admissionTimeoutMs,
      onFailure: config.admissionOnFailure,
      cacheMs: config.admissionCacheMs,
      node: { id: config.nodeId, region: config.region },
      client: this.#webhooks,
      metrics: this.metrics,
      logger: this.logger.child({ component: 'admission' }),
      proxies: config.trustedProxies,
    });
  }

  /**
   * The HTTP port: plain, or HTTPS only with --tls-cert (its certificate read again when the files
   * change), and then --http-plain-port besides, with the same routes, when asked.
   */
  async #listen(certificates: CertificateWatcher | undefined): Promise<void> {
    const { config } = this;
    if (certificates) {
      const tls = (this.#tls = new TlsListener({ certificates, handler: this.app }));
      const served = (why: string) => {
        const { leaf } = tls.certificates.current;
        this.metrics.tlsCertificateExpiry.set(Math.floor(Date.parse(leaf.validTo) / 1000));
        this.logger.info({ subject: leaf.subject, validTo: leaf.validTo, serial: leaf.serialNumber }, why);
      };
      tls.certificates.on('reloaded', () => {
        this.metrics.tlsReloads.inc({ result: 'loaded' });
        served('tls certificate reloaded: new connections get it');
      });
      tls.certificates.on('rejected', (error) => {
        this.metrics.tlsReloads.inc({ result: 'rejected' });
        this.logger.error({ err: error }, 'tls certificate files changed but hold no valid pair: kept the last one');
      });
      this.#servers.push(tls.https);
      await tls.listen(config.httpPort, config.httpHost);
      this.#port = tls.address?.port ?? config.httpPort;
      served('tls certificate loaded');
    } else {
      const server = createServer(this.app);
      this.#servers.push(server);
      server.listen(config.httpPort, config.httpHost);
      await once(server, 'listening');
      this.#port = (server.address() as { port: number }).port;
    }
    if (config.httpPlainPort > 0) {
      const plain = createServer(this.app);
      this.#servers.push(plain);
      plain.listen(config.httpPlainPort, config.httpHost);
      await once(plain, 'listening');
    }
    for (const server of this.#servers) server.on('clientError', refuseUnparsable);
    this.logger.info({ url: config.publicUrl, port: this.httpPort, tls: Boolean(this.#tls), plainPort: config.httpPlainPort || undefined }, 'http listening');
  }

  /**
   * Shutdown, first step: the node drains (its row says so, for the balancers; its agent-check
   * says so, for HAProxy; /readyz says 503, for Kubernetes; new requests get 503), then each role
   * moves what it carries within --drain-timeout-ms. The drain is undone once the node is gone,
   * so that the next start of this node id is not drained (an operator's drain stays).
   */
  async #drain(): Promise<void> {
    if (!this.#registry?.registered) return;
    // Without the database the balancers cannot be told; the agent-check and /readyz still are.
    await this.#markDrainingForShutdown().catch((error) => this.logger.warn({ err: error }, 'could not mark the node draining'));
    const deadline = Date.now() + this.config.drainTimeoutMs;
    for (const role of this.#roles) await role.drain?.(deadline).catch((error) => this.logger.error({ err: error }, 'drain failed'));
  }

  /** Drains the node in the registry (unless an operator has), and tells the agent-check. */
  async #markDrainingForShutdown(): Promise<void> {
    this.#shutdownDraining = true;
    if (this.#registry?.draining || this.#drainedForShutdown) return;
    this.#drainedForShutdown = await setNodeDraining(this.db.knex, this.config.nodeId, true);
  }

  async #load(): Promise<NodeLoad> {
    this.#lastCpu = await this.#cpu.read();
    return { ...(await this.#currentLoad()), cpu: this.#lastCpu };
  }

  /**
   * The roles' load: measured now if that takes less than LOAD_WAIT_MS, else the last measured.
   * Heartbeats and scrapes share one measurement in flight rather than queue more requests on
   * the media workers.
   */
  async #currentLoad(): Promise<RoleLoad> {
    if (!this.#measuring) {
      this.#measuring = this.#roleLoad().finally(() => (this.#measuring = undefined));
      this.#measuring.catch(() => undefined); // a late failure is the next heartbeat's to report
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<RoleLoad>((resolve) => (timer = setTimeout(() => resolve(this.#lastLoad), LOAD_WAIT_MS)));
    try {
      return await Promise.race([this.#measuring, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The roles' load summed; the metrics gauges are set from it, so heartbeat and /metrics agree. */
  async #roleLoad(): Promise<RoleLoad> {
    const total: RoleLoad = { viewers: 0, streams: 0, bitrateOut: 0 };
    for (const role of this.#roles) {
      const load = await role.load();
      total.viewers += load.viewers;
      total.streams += load.streams;
      total.bitrateOut += load.bitrateOut;
    }
    this.metrics.viewers.set(total.viewers);
    this.metrics.streams.set(total.streams);
    this.metrics.egress.set(total.bitrateOut / 8);
    this.#lastLoad = total;
    return total;
  }

  async #migrateWhenReachable(): Promise<boolean> {
    for (let attempt = 1; !this.#stopping; attempt++) {
      try {
        const applied = await this.db.migrate();
        if (applied.length > 0) this.logger.info({ migrations: applied }, 'database migrated');
        this.#databaseReady = true;
        return true;
      } catch (error) {
        this.logger.error({ err: error, attempt }, 'database not ready; retrying');
        await new Promise((resolve) => setTimeout(resolve, DATABASE_RETRY_MS));
      }
    }
    return false;
  }

  #mountRoutes(): void {
    const { app, config } = this;
    // Which node answered: for operators behind HAProxy, and for the tests that check routing.
    app.use((_req, res, next) => {
      res.set('X-Relaycast-Node', config.nodeId);
      next();
    });
    const health = () => ({
      node: config.nodeId,
      roles: config.roles,
      region: config.region,
      version: config.version,
      database: this.#databaseReady && (this.#registry?.databaseUp ?? false) ? 'up' : 'down',
      mediaWorkers: this.#workers ? this.#workers.workers.length : undefined,
    });
    // Liveness: the process serves HTTP. It stays 200 through a database outage, so that an
    // orchestrator does not restart every node of the cluster when Postgres blips.
    app.get('/healthz', (_req, res) => {
      res.json({ status: 'ok', ...health() });
    });
    // Readiness: registered, database reachable, media workers running.
    app.get('/readyz', (_req, res) => {
      const h = health();
      const ready = h.database === 'up' && h.mediaWorkers !== 0 && !this.#stopping;
      res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', ...h });
    });
    app.get('/metrics', async (_req, res) => {
      await this.#currentLoad();
      res.type(this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
    });
    // The first step of a shutdown, ahead of SIGTERM (a Kubernetes preStop hook): drain, so no new
    // viewers or streams come, while what the node carries goes on. Undone when the node is gone.
    app.post(DRAIN_PATH, async (req, res) => {
      authorizeInternal(req, this.#clusterSecret);
      await this.#markDrainingForShutdown();
      res.json({ node: config.nodeId, draining: true });
    });
    // Until the node is registered, its streams could not be placed: refuse rather than fail later.
    app.use((_req, _res, next) => {
      if (this.#registry?.registered && !this.#stopping) return next();
      next(new Problem('service-unavailable', this.#stopping ? 'this node is shutting down' : 'this node is starting', { headers: { 'Retry-After': '2' } }));
    });
    app.use(postRateLimit(config.postRateLimit, (req) => this.#clientAddress(req)));
    for (const role of this.#roles) app.use(role.router);
    app.use(notFound);
    app.use(errorHandler(this.logger, { onRefused: (req, problem) => this.#auditRefusal(req, problem) }));
  }

  #clientAddress(req: Request): string {
    return this.#proxies.clientAddress(req.socket.remoteAddress ?? '', req.get('x-forwarded-for'));
  }

  /** Every 401/403 leaves an audit row: who (client address), what they asked, and why not. */
  #auditRefusal(req: Request, problem: Problem): void {
    if (!this.#databaseReady) return;
    recordAudit(this.db.knex, {
      actor: `client:${this.#clientAddress(req)}`,
      action: 'auth.refused',
      target: `${req.method} ${req.path}`,
      outcome: 'denied',
      detail: { status: problem.status, reason: problem.message, node: this.config.nodeId },
    }).catch((error) => this.logger.warn({ err: error }, 'could not audit a refused request'));
  }
}
