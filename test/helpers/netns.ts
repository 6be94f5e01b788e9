import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';

/**
 * A Linux network namespace joined to the host by a veth pair, for clients that will not talk
 * over loopback (GStreamer's webrtcbin/libnice gathers no 127.0.0.1 candidates, and alone in a
 * namespace with only `lo` it gathers nothing).
 *
 *   host ── <hostIf> 10.213.X.1/24 ══ veth ══ 10.213.X.2/24 <nsIf> ── namespace <name> (+ lo)
 *
 * X is derived from the pid (and moved on if the /24 is already on a host interface), names
 * carry the pid and a counter, so parallel runs do not clash. Needs root and iproute2's
 * `ip netns`. Every process started with run() is killed by remove(), which also deletes the
 * namespace and the link; remove() runs on process exit too if a test forgot it.
 */

export interface NetNs {
  /** Namespace name (`ip netns exec <name>`). */
  name: string;
  /** The host side of the veth pair and its address (the servers announce and listen on it). */
  hostIf: string;
  hostIp: string;
  /** The namespace side and its address. */
  nsIf: string;
  nsIp: string;
  /** Starts `cmd args` inside the namespace; the process is stopped by remove() at the latest. */
  run(cmd: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Stops what run() started (SIGKILL), deletes the namespace and the host link. Idempotent. */
  remove(): Promise<void>;
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'network namespaces need root (run the suite as root, as CI does)';
  const probe = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error) return `\`ip netns\` is unavailable (${probe.error.message}; install iproute2)`;
  if (probe.status !== 0) return `\`ip netns list\` failed: ${probe.stderr.trim()}`;
  return undefined;
}

let counter = 0;
const live = new Set<() => void>();
process.on('exit', () => {
  for (const removeSync of live) removeSync();
});

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Third octet for 10.213.X.0/24: from the pid, moved on past any /24 already on the host. */
function pickSubnet(): number {
  const used = ip(['-4', '-o', 'addr', 'show']);
  const start = 16 + ((process.pid * 7 + counter) % 224);
  for (let i = 0; i < 224; i++) {
    const x = 16 + ((start - 16 + i) % 224);
    if (!used.includes(` 10.213.${x}.`)) return x;
  }
  throw new Error('no free 10.213.X.0/24 subnet on this host');
}

export async function createNetns(): Promise<NetNs> {
  const reason = netnsUnavailable();
  if (reason) throw new Error(reason);
  const n = counter++;
  const tag = `${process.pid.toString(36)}${n.toString(36)}`; // interface names: at most 15 characters
  const x = pickSubnet();
  const name = `relaycast-test-${process.pid}-${n}`;
  const hostIf = `rch${tag}`.slice(0, 15);
  const nsIf = `rcn${tag}`.slice(0, 15);
  const hostIp = `10.213.${x}.1`;
  const nsIp = `10.213.${x}.2`;
  const children = new Set<ChildProcess>();
  let removed = false;

  const removeSync = () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // Deleting the namespace deletes its end of the pair, which deletes the host end too; the
    // link is deleted explicitly as well in case the namespace was never made.
    spawnSync('ip', ['netns', 'delete', name], { stdio: 'ignore', timeout: 10_000 });
    spawnSync('ip', ['link', 'delete', hostIf], { stdio: 'ignore', timeout: 10_000 });
  };
  live.add(removeSync);

  const netns: NetNs = {
    name,
    hostIf,
    hostIp,
    nsIf,
    nsIp,
    run(cmd, args, options = {}) {
      if (removed) throw new Error(`namespace ${name} was removed`);
      const child = spawn('ip', ['netns', 'exec', name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    async remove() {
      if (removed) return;
      removed = true;
      const exits = [...children].filter((c) => c.exitCode === null && c.signalCode === null).map((c) => once(c, 'exit'));
      removeSync();
      // Bounded: SIGKILL cannot be ignored, but a process in uninterruptible sleep could linger.
      await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5_000))]);
      live.delete(removeSync);
    },
  };

  try {
    ip(['netns', 'add', name]);
    ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
    ip(['link', 'set', nsIf, 'netns', name]);
    ip(['addr', 'add', `${hostIp}/24`, 'dev', hostIf]);
    ip(['link', 'set', hostIf, 'up']);
    ip(['netns', 'exec', name, 'ip', 'addr', 'add', `${nsIp}/24`, 'dev', nsIf]);
    ip(['netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up']);
    ip(['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
  } catch (error) {
    await netns.remove();
    const stderr = (error as { stderr?: string }).stderr;
    throw new Error(`could not set up network namespace ${name}: ${(error as Error).message}${stderr ? `\n${stderr}` : ''}`, { cause: error });
  }
  return netns;
}
