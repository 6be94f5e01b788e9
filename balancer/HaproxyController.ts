import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { renderHaproxy, type HaproxyLayout, type MapPin } from './HaproxyConfig.ts';
import type { NodeSnapshot } from './policies.ts';

/**
 * Runs HAProxy in master-worker mode for the balancer and keeps its config in step with the
 * registry: every RENDER_INTERVAL_MS it renders the config; when the text changed, it checks the
 * new config with `haproxy -c` and reloads through the master CLI (hitless: old workers finish
 * their connections). A config that fails the check is kept aside as haproxy.cfg.rejected and
 * logged; the running HAProxy is left untouched. Weights and drain need no reload: HAProxy polls
 * each edge's agent-check.
 */

export interface HaproxyControllerOptions {
  bin: string;
  dir: string;
  layout: Omit<HaproxyLayout, 'mapPath' | 'runtimeSocket' | 'serverStateFile'>;
  pins: MapPin[];
  logger: Logger;
  metrics: Metrics;
  /** The registry as the balancer sees it. */
  nodes: () => Promise<NodeSnapshot[]>;
}

/** How often the config is re-rendered: node joins and deaths reach HAProxy within about this. */
const RENDER_INTERVAL_MS = 1000;
/** How long HAProxy gets to start, and to stop on SIGTERM before SIGKILL. */
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5000;
/**
 * How long `haproxy -c` may take. It reads the whole geo map: ~1 s for 100,000 networks on a quiet
 * core (bench), many times that on a loaded one; a check cut short is a failed refresh, tried again,
 * never a rejected config.
 */
const CHECK_TIMEOUT_MS = 60_000;

export class HaproxyController {
  readonly #options: HaproxyControllerOptions;
  readonly #logger: Logger;
  readonly #masterSocket: string;
  readonly #runtimeSocket: string;
  #child: ChildProcess | undefined;
  #current = { cfg: '', map: '' };
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> = Promise.resolve();
  #stopped = false;

  private constructor(options: HaproxyControllerOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'haproxy' });
    this.#masterSocket = join(options.dir, 'master.sock');
    this.#runtimeSocket = join(options.dir, 'runtime.sock');
  }

  static async start(options: HaproxyControllerOptions): Promise<HaproxyController> {
    mkdirSync(options.dir, { recursive: true });
    const controller = new HaproxyController(options);
    // At start-up the registry may not be readable yet (database still migrating): start with no
    // edges; the first refresh brings them in.
    const nodes = await options.nodes().catch(() => []);
    const rendered = await controller.#renderChecked(nodes);
    if (!rendered) throw new Error(`the initial HAProxy config failed haproxy -c (see ${join(options.dir, 'haproxy.cfg.rejected')})`);
    controller.#install(rendered);
    await controller.#spawn();
    controller.#schedule();
    return controller;
  }

  get cfgPath(): string {
    return join(this.#options.dir, 'haproxy.cfg');
  }

  /**
   * Re-renders now and reloads if the config changed (or always, when `force`). One refresh at a
   * time; the returned promise rejects when this one failed (a forced one also when `haproxy -c`
   * refused the config), so that an operator's reload is not answered as done when it was not.
   */
  refresh(force = false): Promise<void> {
    const run = this.#busy.then(() => this.#refresh(force));
    this.#busy = run.catch((error) => this.#logger.error({ err: error }, 'haproxy refresh failed'));
    return run;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#busy;
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await once(child, 'exit');
    clearTimeout(timer);
  }

  #paths(dir: string) {
    return { cfg: join(dir, 'haproxy.cfg'), map: join(dir, 'geo.map') };
  }

  #render(nodes: NodeSnapshot[], dir: string) {
    const { layout, pins } = this.#options;
    return renderHaproxy(nodes, pins, {
      ...layout,
      mapPath: this.#paths(dir).map,
      runtimeSocket: this.#runtimeSocket,
      serverStateFile: join(this.#options.dir, 'server-state'),
    });
  }

  /** Renders for the live paths after checking the same config, pointing at a candidate map, with haproxy -c. */
  async #renderChecked(nodes: NodeSnapshot[]) {
    const candidateDir = join(this.#options.dir, 'candidate');
    mkdirSync(candidateDir, { recursive: true });
    const candidate = this.#render(nodes, candidateDir);
    const paths = this.#paths(candidateDir);
    writeFileSync(paths.map, candidate.map);
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
    return this.#render(nodes, this.#options.dir);
  }

  /** Writes the config and map where HAProxy reads them, each by an atomic rename. */
  #install(rendered: { cfg: string; map: string }): void {
    const paths = this.#paths(this.#options.dir);
    writeFileSync(`${paths.map}.tmp`, rendered.map);
    renameSync(`${paths.map}.tmp`, paths.map);
    writeFileSync(`${paths.cfg}.tmp`, rendered.cfg);
    renameSync(`${paths.cfg}.tmp`, paths.cfg);
    this.#current = { cfg: rendered.cfg, map: rendered.map };
  }

  async #spawn(): Promise<void> {
    const child = spawn(this.#options.bin, ['-W', '-S', this.#masterSocket, '-f', this.cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child = child;
    child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n').filter(Boolean)) if (/ALERT|WARNING/.test(line)) this.#logger.warn(line);
    });
    child.once('exit', (code, signal) => {
      if (!this.#stopped) this.#logger.error({ code, signal }, 'haproxy exited');
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
    const next = this.#render(nodes, this.#options.dir);
    if (!force && next.cfg === this.#current.cfg && next.map === this.#current.map) return;
    const checked = await this.#renderChecked(nodes);
    if (!checked) {
      if (force) throw new Error('the rendered HAProxy config failed haproxy -c (kept as haproxy.cfg.rejected); HAProxy runs the previous one');
      return;
    }
    this.#install(checked);
    writeFileSync(join(this.#options.dir, 'server-state'), await this.#command(this.#runtimeSocket, 'show servers state'));
    await this.#command(this.#masterSocket, 'reload');
    this.#options.metrics.haproxyReloads.inc();
    this.#logger.info({ regions: checked.regions }, 'haproxy reloaded');
  }

  /** Sends one command to an HAProxy CLI socket and returns the reply (2.6's master answers `reload` with nothing). */
  async #command(path: string, command: string): Promise<string> {
    const socket = createConnection(path);
    let reply = '';
    socket.on('data', (d) => (reply += d));
    await once(socket, 'connect');
    socket.end(`${command}\n`);
    await once(socket, 'close');
    return reply;
  }
}
