import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './postgres.ts';
import { spawnTracked, stopProcess, waitFor } from './processes.ts';
import { httpsFetch, type TestCa } from './tls.ts';

/**
 * Relaycast processes started by tests and benchmarks, as a user would start them
 * (bin/relaycast.js), in the one registry of processes.ts: every one is stopped by whoever started
 * it; any left over when the runner exits are killed.
 */

export const BIN = fileURLToPath(new URL('../bin/relaycast.js', import.meta.url));

export interface RelaycastProcess {
  child: ChildProcess;
  port: number;
  /** Its RTMP port (every test process gets a free one, whether it runs an origin or not). */
  rtmpPort: number;
  /** --http-plain-port, with `tls.plainPort`. */
  plainPort?: number;
  url: string;
  dataDir: string;
  /** stdout and stderr so far (pino JSON lines). */
  output(): string;
  /** SIGTERM, and the exit code (SIGKILL after 20 s). */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

export interface StartOptions {
  roles?: string[];
  databaseUrl?: string;
  args?: string[];
  env?: Record<string, string>;
  /**
   * The address the node serves HTTP and media on, announces, and names in its session URLs
   * (`--public-url`): a veth address for clients in a network namespace. Default 127.0.0.1.
   */
  host?: string;
  /**
   * HTTPS on the HTTP port (--tls-cert/--tls-key), with `ca` trusted by the process for its peers
   * (NODE_EXTRA_CA_CERTS); `plainPort`: --http-plain-port on a free port besides.
   */
  tls?: { certFile: string; keyFile: string; ca: TestCa; plainPort?: boolean };
}

/** The environment a test process gets: nothing inherited that would point it elsewhere. */
function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('RELAYCAST_') || key === 'DATABASE_URL') delete env[key];
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

export function runRelaycast(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawnRelaycast(BIN, args, env);
}

/** Starts `bin` (the relaycast command of this tree or of another checkout) with a clean environment. */
export function spawnRelaycast(bin: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawnTracked(process.execPath, [bin, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Starts a node on free ports and waits until it is ready. A port freePort() found can be taken by
 * another process before the node binds it (the suite's other nodes, a benchmark beside it): a
 * start that fails with EADDRINUSE is tried once more, on other ports.
 */
export async function startRelaycast(options: StartOptions = {}): Promise<RelaycastProcess> {
  try {
    return await startOnce(options);
  } catch (error) {
    if (!/EADDRINUSE/.test((error as Error).message)) throw error;
    return startOnce(options);
  }
}

async function startOnce(options: StartOptions): Promise<RelaycastProcess> {
  const port = await freePort();
  const rtmpPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'relaycast-data-'));
  const host = options.host ?? '127.0.0.1';
  const tls = options.tls;
  const plainPort = tls?.plainPort ? await freePort() : undefined;
  const url = `${tls ? 'https' : 'http'}://${host}:${port}`;
  const child = runRelaycast(
    [
      ...(options.roles ?? ['all']),
      ...['--http-port', String(port), '--rtmp-port', String(rtmpPort), '--http-host', host, '--workers', '1'],
      ...(options.host ? ['--public-url', url, '--announced-ip', host, '--rtc-listen-ip', host] : []),
      // Media ports below Linux's ephemeral range (32768–60999), where freePort() finds the
      // HTTP and RTMP ports of the other test processes.
      ...['--rtc-min-port', '20000', '--rtc-max-port', '29999'],
      ...(tls ? ['--tls-cert', tls.certFile, '--tls-key', tls.keyFile] : []),
      ...(plainPort ? ['--http-plain-port', String(plainPort)] : []),
      ...(options.args ?? []),
    ],
    {
      RELAYCAST_DATA_DIR: dataDir,
      ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
      ...(tls ? { NODE_EXTRA_CA_CERTS: tls.ca.certFile } : {}),
      ...options.env,
    },
  );
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const stop = (signal: NodeJS.Signals) => stopProcess(child, 20_000, signal);
  const proc: RelaycastProcess = {
    child,
    port,
    rtmpPort,
    plainPort,
    url,
    dataDir,
    output: () => output,
    stop: async () => {
      const code = await stop('SIGTERM');
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
    kill: async () => {
      await stop('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(
      `${url}/readyz to answer 200`,
      async () => {
        if (child.exitCode !== null) throw new Error(`relaycast exited with ${child.exitCode}:\n${output}`);
        const res = tls ? await httpsFetch(`${url}/readyz`, tls.ca).catch(() => undefined) : await fetch(`${url}/readyz`).catch(() => undefined);
        return res?.status === 200;
      },
      READY_TIMEOUT_MS,
    );
  } catch (error) {
    await proc.kill();
    // What the process said is what explains a start that never became ready.
    throw new Error(`${(error as Error).message}\n--- relaycast output ---\n${output.slice(-4000)}`, { cause: error });
  }
  return proc;
}

/**
 * How long a started process may take to be ready. A wait, not a figure: PGlite boots in 3–6 s on a
 * quiet machine, and took over 45 s once on two cores shared with the suite's browsers, encoders
 * and another suite (a fresh-clone run that failed on that alone).
 */
const READY_TIMEOUT_MS = 120_000;
