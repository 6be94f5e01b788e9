import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { parseServerIds, renderHaproxy, rtmpWeight, sameMap, serverKey, type HaproxyLayout, type HaproxyServer, type MapPin, type RenderedHaproxy } from './HaproxyConfig.ts';
import { HaproxyGeoMap } from './HaproxyGeoMap.ts';
import { HaproxyRuntime, parseMap, resolveAddress, splitAddress } from './HaproxyRuntime.ts';
import { MapFile } from './MapFile.ts';
import type { NodeSnapshot, Position } from './policies.ts';

/**
 * Runs HAProxy in master-worker mode for the balancer and keeps it in step with the registry.
 * Every RENDER_INTERVAL_MS it renders the config from the registry (when an edge's place in it may
 * have changed) and compares it with what HAProxy runs:
 * - same shape (regions, binds, default region), other servers or map entries: the changes go
 *   through HAProxy's runtime API (HaproxyRuntime): `add server` for an edge that joined, `del
 *   server` for one that left (after its connections end), `set server … addr` for one that moved,
 *   map entries edited or the map replaced atomically. No reload; the new config and map are
 *   written to disk all the same, so that a restart or a later reload loads the same state;
 * - another shape, a runtime change that failed, or an operator's refresh(true): `haproxy -c` on
 *   the new config, then a hitless reload through the master CLI (old workers finish their
 *   connections; server states carried over in the server-state file). A config that fails the
 *   check is kept aside as haproxy.cfg.rejected and logged; the running HAProxy is left untouched.
 * Weights and drain need neither: HAProxy polls each edge's agent-check. A region whose last edge
 * left is no new shape: its backend stays, served by the nearest region's edges, until a reload
 * happens for another reason (which drops it), so that edges dying never cut RTMP publishers.
 *
 * With an RTMP bind (--haproxy-rtmp-port), the origins that take RTMP are the servers of a TCP
 * backend, kept the same way: an origin that joins or leaves is added or deleted (its publishers'
 * connections to it ended with it), and one that drains gets weight 0 (`set server … weight`). The
 * backend itself is part of the shape. A reload cuts RTMP publishers after the old worker's
 * hard-stop-after, so origins coming and going never cause one.
 *
 * With `geoMap`, the map covers every network of the GeoIP database (balancer/GeoMap.ts, built in
 * a child process when the regions or their edges' positions change); until the first build is in,
 * and without it, the map holds the pins alone.
 */

export interface HaproxyControllerOptions {
  bin: string;
  dir: string;
  layout: Omit<HaproxyLayout, 'mapPath' | 'nodeMapPath' | 'runtimeSocket' | 'serverStateFile'>;
  pins: MapPin[];
  logger: Logger;
  metrics: Metrics;
  /** The registry as the balancer sees it. */
  nodes: () => Promise<NodeSnapshot[]>;
  /** Build the map from the GeoIP database: these .mmdb files (unset: the bundled ones). */
  geoMap?: { databases?: string[] };
}

/** How often the registry is compared with HAProxy: node joins and deaths reach HAProxy within about this. */
const RENDER_INTERVAL_MS = 1000;
/** How long HAProxy gets to start, and to stop on SIGTERM before SIGKILL. */
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5000;

/**
 * HAProxy that exits by itself (Debian's 2.6.12 was seen to segfault, rarely, while a map was
 * replaced through the runtime API under traffic) is started again after this pause, doubled for
 * each exit within RESTART_WINDOW_MS of the last, up to RESTART_MAX_MS: ingress comes back in about
 * a second, and a config that kills it at once is not restarted in a tight loop.
 */
const RESTART_DELAY_MS = 500;
const RESTART_MAX_MS = 30_000;
const RESTART_WINDOW_MS = 60_000;
/**
 * How long `haproxy -c` may take. It reads the whole geo map: ~1 s for 100,000 networks on a quiet
 * core (bench), many times that on a loaded one; a check cut short is a failed refresh, tried again,
 * never a rejected config.
 */
const CHECK_TIMEOUT_MS = 60_000;
/**
 * `del server` attempts for a server that still has connections, one per refresh (1 s apart): 30
 * is the config's hard-stop-after (30 s), longer than any signalling request takes and than an
 * edge keeps an idle connection open (Node's keep-alive timeout, 5 s), which also holds it (see
 * HaproxyRuntime). After that a reload removes it (its old worker finishes those connections
 * within hard-stop-after).
 */
const DELETE_ATTEMPTS = 30;
/** A map text this large (~40,000 lines, what pins never reach) is replaced, not diffed. */
const WHOLE_MAP_BYTES = 1 << 20;

/** A server HAProxy runs; `deleting` counts del attempts once it is stopped and on its way out. */
type LiveServer = HaproxyServer & { deleting?: number };

export class HaproxyController {
  readonly #options: HaproxyControllerOptions;
  readonly #logger: Logger;
  readonly #masterSocket: string;
  readonly #runtimeSocket: string;
  readonly #runtime: HaproxyRuntime;
  readonly #master: HaproxyRuntime;
  #child: ChildProcess | undefined;
  /** What HAProxy runs, and the registry inputs it was rendered from. */
  #current: { cfg: string; shape: string; map: string | MapFile; nodeMap: string; inputs: string; sites: Map<string, Position> } = { cfg: '', shape: '', map: '', nodeMap: '', inputs: '', sites: new Map() };
  /** The servers HAProxy runs, by backend/name: the config's, plus those still being deleted. */
  #live = new Map<string, LiveServer>();
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> = Promise.resolve();
  #stopped = false;
  /** The last unexpected exit and the pause before the restart that followed it. */
  #lastCrash = { at: 0, delayMs: 0 };
  /** The map from the GeoIP database, when asked for. */
  readonly #geo: HaproxyGeoMap | undefined;
  /** The edges' inputs (see #inputs) the geo map was last asked to follow. */
  #geoAskedFor: string | undefined;

  private constructor(options: HaproxyControllerOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'haproxy' });
    this.#masterSocket = join(options.dir, 'master.sock');
    this.#runtimeSocket = join(options.dir, 'runtime.sock');
    this.#runtime = new HaproxyRuntime(this.#runtimeSocket);
    this.#master = new HaproxyRuntime(this.#masterSocket);
    this.#geo = options.geoMap
      ? new HaproxyGeoMap({
          databases: options.geoMap.databases,
          dir: join(options.dir, 'geo-builds'),
          pins: options.pins,
          defaultRegion: options.layout.defaultRegion,
          logger: this.#logger,
          onBuilt: () => void this.refresh().catch(() => undefined),
        })
      : undefined;
  }

  static async start(options: HaproxyControllerOptions): Promise<HaproxyController> {
    mkdirSync(options.dir, { recursive: true });
    const controller = new HaproxyController(options);
    // The servers keep the ids (places on the hash ring) a previous run gave them.
    const previous = existsSync(controller.cfgPath) ? parseServerIds(readFileSync(controller.cfgPath, 'utf8')) : new Map<string, number>();
    // At start-up the registry may not be readable yet (database still migrating): start with no
    // edges; the first refresh brings them in.
    await controller.#boot(previous, await options.nodes().catch(() => []));
    controller.#schedule();
    return controller;
  }

  /** Renders, checks and installs the config for `nodes`, then starts HAProxy on it. */
  async #boot(previous: ReadonlyMap<string, number>, nodes: NodeSnapshot[]): Promise<void> {
    const rendered = await this.#renderChecked(nodes, previous);
    if (!rendered) throw new Error(`the HAProxy config failed haproxy -c (see ${join(this.#options.dir, 'haproxy.cfg.rejected')})`);
    this.#install(rendered, nodes);
    this.#live = new Map(rendered.servers.map((s) => [serverKey(s.backend, s.name), s]));
    await this.#spawn();
  }

  /** HAProxy exited by itself: start it again (after RESTART_DELAY_MS, more if it keeps exiting), one refresh-slot in the queue. */
  #restart(): void {
    const now = Date.now();
    const delayMs = now - this.#lastCrash.at < RESTART_WINDOW_MS ? Math.min(this.#lastCrash.delayMs * 2, RESTART_MAX_MS) : RESTART_DELAY_MS;
    this.#lastCrash = { at: now, delayMs };
    this.#options.metrics.haproxyRestarts.inc();
    this.#busy = this.#busy.then(async () => {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (this.#stopped) return;
      try {
        await this.#boot(this.#heldIds(), await this.#options.nodes());
        this.#logger.warn({ afterMs: delayMs }, 'haproxy started again');
      } catch (error) {
        this.#logger.error({ err: error }, 'haproxy could not be started again; retrying');
        if (!this.#stopped) this.#restart();
      }
    });
  }

  get cfgPath(): string {
    return join(this.#options.dir, 'haproxy.cfg');
  }

  /**
   * Brings HAProxy in step with the registry now: through the runtime API when only servers or map
   * entries changed, else (or always, when `force`) by a checked reload. One refresh at a time; the
   * returned promise rejects when this one failed (a forced one also when `haproxy -c` refused the
   * config), so that an operator's reload is not answered as done when it was not.
   */
  refresh(force = false): Promise<void> {
    const run = this.#busy.then(() => {
      // Between refreshes nothing copies or sends an older map's file.
      this.#geo?.prune();
      return this.#refresh(force);
    });
    this.#busy = run.catch((error) => this.#logger.error({ err: error }, 'haproxy refresh failed'));
    return run;
  }

  /**
   * Hands HAProxy a renewed certificate for its TLS bind (certificate chain and key, one PEM) through
   * the runtime API: new connections get it, nothing is reloaded. Also written to the file, for
   * the next start or reload.
   */
  updateCertificate(pem: string): Promise<void> {
    const path = this.#options.layout.tlsCrt;
    if (!path) throw new TypeError('this HAProxy terminates no TLS (no tlsCrt in its layout)');
    const run = this.#busy.then(async () => {
      writeFileSync(path, pem, { mode: 0o600 });
      const set = await this.#runtime.command(`set ssl cert ${path}`, pem.trim().split('\n'));
      if (!/transaction (created|updated)/i.test(set)) throw new Error(`set ssl cert ${path}: ${set.trim()}`);
      const commit = await this.#runtime.command(`commit ssl cert ${path}`);
      if (!/success/i.test(commit)) throw new Error(`commit ssl cert ${path}: ${commit.trim()}`);
      this.#logger.info({ path }, 'haproxy serves the renewed certificate (runtime API, no reload)');
    });
    this.#busy = run.catch((error) => this.#logger.error({ err: error }, 'haproxy certificate update failed'));
    return run;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    // A refresh under way may still read the map's file, which close() removes.
    await this.#busy;
    await this.#geo?.close();
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await once(child, 'exit');
    clearTimeout(timer);
  }

  #paths(dir: string) {
    return { cfg: join(dir, 'haproxy.cfg'), map: join(dir, 'geo.map'), nodeMap: join(dir, 'nodes.map') };
  }

  /**
   * Renders for `dir`, each server keeping the id it has in HAProxy (or `held`); with `kept`, the
   * regions HAProxy runs keep their backends though their edges are gone.
   */
  #render(nodes: NodeSnapshot[], dir: string, held: ReadonlyMap<string, number> = this.#heldIds(), kept?: ReadonlyMap<string, Position>): RenderedHaproxy<string | MapFile> {
    const { layout, pins } = this.#options;
    const paths = { mapPath: this.#paths(dir).map, nodeMapPath: this.#paths(dir).nodeMap, runtimeSocket: this.#runtimeSocket, serverStateFile: join(this.#options.dir, 'server-state') };
    return renderHaproxy(nodes, pins, { ...layout, ...paths }, held, this.#geo?.map, kept);
  }

  #heldIds(): Map<string, number> {
    return new Map([...this.#live].map(([key, s]) => [key, s.id]));
  }

  /**
   * What the rendered config depends on in the registry: the edges' places, not their load (which
   * changes at every heartbeat and reaches HAProxy through the agent-check). Same inputs, same
   * config: the refresh skips rendering (150 ms for 1,000 edges, bench).
   */
  #inputs(nodes: NodeSnapshot[]): string {
    const reach = nodes.filter((n) => n.roles.includes('edge') || n.roles.includes('origin')).map((n) => `node ${n.id} ${n.publicUrl} ${n.announcedIp ?? ''}`);
    return `${this.#edgeInputs(nodes)}\n${this.#rtmpInputs(nodes)}\n${reach.sort().join('\n')}\ngeo map ${this.#geo?.key ?? ''}`;
  }

  /** The RTMP servers' inputs: each origin's RTMP address and its drain (its weight in HAProxy). */
  #rtmpInputs(nodes: NodeSnapshot[]): string {
    if (!this.#options.layout.rtmpBind) return '';
    const origins = nodes.filter((n) => n.roles.includes('origin') && n.rtmpUrl).map((n) => `rtmp ${n.id} ${n.rtmpUrl} ${n.draining}`);
    return origins.sort().join('\n');
  }

  #edgeInputs(nodes: NodeSnapshot[]): string {
    const edges = nodes.filter((n) => n.roles.includes('edge')).map((n) => `${n.id} ${n.region} ${n.lat} ${n.lon} ${n.publicUrl} ${n.agentPort ?? ''}`);
    return edges.sort().join('\n');
  }

  /** Renders for the live paths after checking the same config, pointing at a candidate map, with haproxy -c. */
  async #renderChecked(nodes: NodeSnapshot[], held?: ReadonlyMap<string, number>): Promise<RenderedHaproxy<string | MapFile> | undefined> {
    const candidateDir = join(this.#options.dir, 'candidate');
    mkdirSync(candidateDir, { recursive: true });
    const candidate = this.#render(nodes, candidateDir, held);
    const paths = this.#paths(candidateDir);
    writeMap(paths.map, candidate.map);
    writeFileSync(paths.nodeMap, candidate.nodeMap);
    writeFileSync(paths.cfg, candidate.cfg);
    try {
      await promisify(execFile)(this.#options.bin, ['-c', '-q', '-f', paths.cfg], { timeout: CHECK_TIMEOUT_MS });
    } catch (error) {
      // A check that ran out of time says nothing about the config: fail this refresh, reject nothing.
      if ((error as { killed?: boolean }).killed) throw new Error(`haproxy -c did not finish within ${CHECK_TIMEOUT_MS} ms`, { cause: error });
      writeFileSync(join(this.#options.dir, 'haproxy.cfg.rejected'), candidate.cfg);
      this.#options.metrics.haproxyRejected.inc();
      this.#logger.error({ stderr: (error as { stderr?: string }).stderr }, 'rendered HAProxy config failed haproxy -c; kept aside, HAProxy untouched');
      return undefined;
    }
    return this.#render(nodes, this.#options.dir, held);
  }

  /** Writes the config and map where HAProxy reads them, each by an atomic rename. */
  #install(rendered: RenderedHaproxy<string | MapFile>, nodes: NodeSnapshot[]): void {
    const paths = this.#paths(this.#options.dir);
    if (!sameMap(rendered.map, this.#current.map) || !existsSync(paths.map)) {
      writeMap(`${paths.map}.tmp`, rendered.map);
      renameSync(`${paths.map}.tmp`, paths.map);
    }
    if (rendered.nodeMap !== this.#current.nodeMap || !existsSync(paths.nodeMap)) {
      writeFileSync(`${paths.nodeMap}.tmp`, rendered.nodeMap);
      renameSync(`${paths.nodeMap}.tmp`, paths.nodeMap);
    }
    if (rendered.cfg !== this.#current.cfg) {
      writeFileSync(`${paths.cfg}.tmp`, rendered.cfg);
      renameSync(`${paths.cfg}.tmp`, paths.cfg);
    }
    this.#current = { cfg: rendered.cfg, shape: rendered.shape, map: rendered.map, nodeMap: rendered.nodeMap, inputs: this.#inputs(nodes), sites: rendered.sites };
  }

  async #spawn(): Promise<void> {
    // Sockets a previous run left behind would pass for this HAProxy's before it has made its own.
    for (const socket of [this.#masterSocket, this.#runtimeSocket]) rmSync(socket, { force: true });
    const child = spawn(this.#options.bin, ['-W', '-S', this.#masterSocket, '-f', this.cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child = child;
    child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n').filter(Boolean)) if (/ALERT|WARNING/.test(line)) this.#logger.warn(line);
    });
    child.once('exit', (code, signal) => {
      // A reload keeps the master (this child) running; only a crash or a kill ends it.
      if (this.#stopped || this.#child !== child) return;
      this.#logger.error({ code, signal }, 'haproxy exited; starting it again');
      this.#restart();
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!existsSync(this.#masterSocket) || !existsSync(this.#runtimeSocket)) {
      if (child.exitCode !== null) throw new Error(`haproxy exited at start with code ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error('haproxy did not start in time');
      await new Promise((r) => setTimeout(r, 50));
    }
    this.#logger.info({ pid: child.pid, config: this.cfgPath }, 'haproxy running');
  }

  #schedule(): void {
    if (this.#stopped) return;
    // A failed refresh is logged (see refresh) and tried again at the next interval.
    this.#timer = setTimeout(() => void this.refresh().catch(() => undefined).finally(() => this.#schedule()), RENDER_INTERVAL_MS);
  }

  async #refresh(force: boolean): Promise<void> {
    if (this.#stopped) return;
    const nodes = await this.#options.nodes();
    const edges = this.#edgeInputs(nodes);
    // The geography is in the edges' inputs: while they hold, there is nothing new to build.
    if (edges !== this.#geoAskedFor) {
      this.#geoAskedFor = edges;
      this.#geo?.update(nodes);
    }
    const deleting = [...this.#live.values()].some((s) => s.deleting !== undefined);
    if (!force && !deleting && this.#inputs(nodes) === this.#current.inputs) return;
    const next = this.#render(nodes, this.#options.dir, undefined, this.#current.sites);
    // A reload (which renders without the kept regions) drops the backends of regions left empty.
    if (force || next.shape !== this.#current.shape) return this.#reload(nodes, force ? 'asked' : 'shape');
    if (next.cfg === this.#current.cfg && sameMap(next.map, this.#current.map) && next.nodeMap === this.#current.nodeMap && !deleting) {
      this.#current.inputs = this.#inputs(nodes);
      return;
    }
    try {
      await this.#applyServers(next.servers);
      if (!sameMap(next.map, this.#current.map)) await this.#applyMap(next.map);
      if (next.nodeMap !== this.#current.nodeMap) {
        const done = await this.#runtime.updateMap(this.#paths(this.#options.dir).nodeMap, parseMap(this.#current.nodeMap), parseMap(next.nodeMap));
        this.#options.metrics.haproxyRuntimeChanges.inc({ kind: 'node-map' }, done.entries);
      }
    } catch (error) {
      // HAProxy now runs something between the old and the new config: only a reload is sure.
      this.#options.metrics.haproxyRuntimeFailures.inc();
      this.#logger.error({ err: error }, 'a runtime API change failed; reloading HAProxy with the checked config instead');
      this.#current = { ...this.#current, shape: '', inputs: '' };
      return this.#reload(nodes, 'runtime-failed');
    }
    this.#install(next, nodes);
  }

  /**
   * Checks the config for `nodes`, installs it and reloads HAProxy (hitless), because an operator
   * asked, the config's shape changed, or a runtime change failed.
   */
  async #reload(nodes: NodeSnapshot[], reason: 'asked' | 'shape' | 'runtime-failed'): Promise<void> {
    const checked = await this.#renderChecked(nodes, this.#heldIds());
    if (!checked) {
      if (reason === 'asked') throw new Error('the rendered HAProxy config failed haproxy -c (kept as haproxy.cfg.rejected); HAProxy runs the previous one');
      return;
    }
    this.#install(checked, nodes);
    try {
      writeFileSync(join(this.#options.dir, 'server-state'), await this.#runtime.command('show servers state'));
      // The new worker reads the files just written.
      await this.#master.reload();
    } catch (error) {
      // Not reloaded: what HAProxy runs is not what is on disk; the next refresh reloads again.
      this.#current = { ...this.#current, shape: '', inputs: '' };
      throw error;
    }
    this.#live = new Map(checked.servers.map((s) => [serverKey(s.backend, s.name), s]));
    this.#options.metrics.haproxyReloads.inc();
    this.#logger.info({ regions: checked.regions, reason }, 'haproxy reloaded');
  }

  /** Makes HAProxy's servers the `wanted` ones through the runtime API; throws on the first refusal. */
  async #applyServers(wanted: readonly HaproxyServer[]): Promise<void> {
    const changes = this.#options.metrics.haproxyRuntimeChanges;
    const keys = new Set(wanted.map((s) => serverKey(s.backend, s.name)));
    const done = { added: 0, deleted: 0, updated: 0, waiting: 0 };
    // Leavers first (their names may come back): stopped at once, deleted once their connections end.
    for (const [key, live] of this.#live) {
      if (keys.has(key)) continue;
      if (live.deleting === undefined) {
        await this.#runtime.stopServer(live.backend, live.name, Boolean(live.agentPort));
        live.deleting = 0;
      }
      if ((await this.#runtime.deleteServer(live.backend, live.name)) === 'busy') {
        live.deleting++;
        done.waiting++;
        if (live.deleting >= DELETE_ATTEMPTS) throw new Error(`${key} still has connections after ${DELETE_ATTEMPTS} del server attempts`);
        continue;
      }
      this.#live.delete(key);
      changes.inc({ kind: 'del-server' });
      done.deleted++;
    }
    for (const server of wanted) {
      const key = serverKey(server.backend, server.name);
      const live = this.#live.get(key);
      if (!live) {
        await this.#runtime.addServer(server, await resolveAddress(server.address));
        changes.inc({ kind: 'add-server' });
        done.added++;
      } else {
        if (live.backup !== server.backup || live.id !== server.id || Boolean(live.agentPort) !== Boolean(server.agentPort) || Boolean(live.rtmp) !== Boolean(server.rtmp)) {
          throw new Error(`${key} changed in a way the runtime API cannot apply (backup, id, agent-check or kind)`);
        }
        if (live.deleting !== undefined) {
          await this.#runtime.reviveServer(server.backend, server.name, Boolean(server.agentPort));
          changes.inc({ kind: 'revive-server' });
        }
        if (live.address !== server.address) {
          const { host, port } = splitAddress(await resolveAddress(server.address));
          await this.#runtime.setServerAddress(server.backend, server.name, host, port);
          changes.inc({ kind: 'set-server' });
        }
        if (server.agentPort && live.agentPort !== server.agentPort) {
          await this.#runtime.setAgentPort(server.backend, server.name, server.agentPort);
          changes.inc({ kind: 'set-server' });
        }
        if (server.rtmp && Boolean(live.drain) !== Boolean(server.drain)) {
          await this.#runtime.setWeight(server.backend, server.name, rtmpWeight(server));
          changes.inc({ kind: 'set-server' });
        }
        if (live.deleting !== undefined || live.address !== server.address || live.agentPort !== server.agentPort || Boolean(live.drain) !== Boolean(server.drain)) done.updated++;
      }
      this.#live.set(key, { ...server });
    }
    if (done.added + done.deleted + done.updated + done.waiting > 0) this.#logger.info(done, 'haproxy servers changed through the runtime API (no reload)');
  }

  /** Makes HAProxy's geo map `map`: a few entries edited in place, or the whole map replaced atomically. */
  async #applyMap(map: string | MapFile): Promise<void> {
    const started = performance.now();
    const path = this.#paths(this.#options.dir).map;
    const current = this.#current.map;
    // A map from the GeoIP database is replaced whole, sent from its file (MapFile): diffing two of
    // them (a million lines each at 100 regions) would hold the event loop for seconds, and a new
    // geography moves most lines. So is a large text.
    let done: { kind: 'map-edit' | 'map-replace'; entries: number };
    if (map instanceof MapFile) {
      await this.#runtime.replaceMap(path, map);
      done = { kind: 'map-replace', entries: map.entries };
    } else if (current instanceof MapFile || map.length > WHOLE_MAP_BYTES || current.length > WHOLE_MAP_BYTES) {
      const entries = parseMap(map);
      await this.#runtime.replaceMap(path, entries);
      done = { kind: 'map-replace', entries: entries.length };
    } else done = await this.#runtime.updateMap(path, parseMap(current), parseMap(map));
    this.#options.metrics.haproxyRuntimeChanges.inc({ kind: done.kind }, done.kind === 'map-edit' ? done.entries : 1);
    this.#logger.info({ ...done, ms: Math.round(performance.now() - started) }, 'haproxy map changed through the runtime API (no reload)');
  }
}

/** Writes a rendered map to `path`: the pins' text, or a built map's file copied (never read in). */
function writeMap(path: string, map: string | MapFile): void {
  if (map instanceof MapFile) map.copyTo(path);
  else writeFileSync(path, map);
}
