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
 * namespace and the link; remove() runs on process exit too if a test forgot it. shape() makes the
 * link toward the namespace slow or lossy with `tc` (tbf, netem), for viewers on real networks;
 * blockUdp() cuts its UDP (nftables), for viewers on networks that let only TCP through.
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
  /**
   * Shapes what the host sends into the namespace (the host side's egress qdisc), or lifts the
   * shaping when `link` is undefined. Takes effect at once on flows already running.
   */
  shape(link: LinkProfile | undefined): void;
  /**
   * Drops all UDP into and out of the namespace (a network that lets only TCP through, as some
   * corporate and hotel networks do), or lets it through again.
   */
  blockUdp(blocked: boolean): void;
  /** Starts `cmd args` inside the namespace; the process is stopped by remove() at the latest. */
  run(cmd: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Stops what run() started (SIGKILL), deletes the namespace and the host link. Idempotent. */
  remove(): Promise<void>;
}

/**
 * A constrained link toward the namespace: rate and delay by `tc` (tbf, netem) on the host's side,
 * random loss by an nftables rule (numgen) on the namespace's, which works where the kernel has no
 * netem (these machines' has none).
 */
export interface LinkProfile {
  /** Bandwidth (token bucket); packets beyond LINK_QUEUE_MS of queue are dropped, as a router does. */
  rateKbit?: number;
  /** One-way delay added to every packet (needs netem in the kernel; see delayUnavailable()). */
  delayMs?: number;
  /** Random loss, in percent. */
  lossPercent?: number;
}

/**
 * The longest a packet waits in the shaped link's queue before it is dropped: a home router's
 * buffer is a few hundred milliseconds deep. Much deeper and a rate limit shows up as seconds of
 * delay instead of loss; much shallower and it drops bursts a real link would carry.
 */
const LINK_QUEUE_MS = 300;
/** The token bucket's burst: about ten full-size packets, enough for one video frame's burst at low rates. */
const LINK_BURST = '20kb';

/** `tc` commands that make `link`'s rate and delay on `dev` (after any existing root qdisc is deleted). */
export function shapingCommands(dev: string, link: LinkProfile): string[][] {
  const tbf = (parent: string[]) => [...parent, 'tbf', 'rate', `${link.rateKbit}kbit`, 'burst', LINK_BURST, 'latency', `${LINK_QUEUE_MS}ms`];
  if (!link.delayMs) return link.rateKbit ? [tbf(['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:'])] : [];
  const commands = [['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'netem', 'delay', `${link.delayMs}ms`]];
  // netem is classful with one child: the rate limit goes under it.
  if (link.rateKbit) commands.push(tbf(['qdisc', 'add', 'dev', dev, 'parent', '1:1', 'handle', '10:']));
  return commands;
}

/**
 * The nftables ruleset, loaded inside the namespace, that drops `percent` % of what arrives on
 * `dev`, at random. Dropped on arrival, not on the host's way out: a packet dropped by the host's
 * output hook fails the sender's sendto(), and mediasoup (libuv) then sends it again, which a
 * lossy link would not.
 */
export function lossRuleset(percent: number, dev: string): string {
  // numgen counts in ten-thousandths, so 0.01 % steps.
  const threshold = Math.round(percent * 100);
  return `table inet relaycast_loss {\n  chain in {\n    type filter hook prerouting priority -300; policy accept;\n    iifname "${dev}" numgen random mod 10000 < ${threshold} counter drop\n  }\n}\n`;
}

/**
 * The nftables ruleset, loaded inside the namespace, that drops every UDP packet arriving on or
 * leaving by `dev`. netdev's ingress and egress hooks drop on the wire, after the sender's
 * sendto() succeeded: the sender sees silence, as behind a firewall in the path, not the EPERM an
 * output-hook drop would give it (which Chromium would take as an unusable candidate at once).
 */
export function udpBlockRuleset(dev: string): string {
  const chain = (name: string, hook: string) =>
    `  chain ${name} {\n    type filter hook ${hook} device "${dev}" priority -500; policy accept;\n    meta l4proto udp counter drop\n  }\n`;
  return `table netdev relaycast_block_udp {\n${chain('in', 'ingress')}${chain('out', 'egress')}}\n`;
}

/** Why an added delay cannot be made here (the kernel has no netem), or undefined when it can. */
export function delayUnavailable(): string | undefined {
  const probe = spawnSync('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'netem', 'delay', '0ms'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.status === 0) {
    spawnSync('tc', ['qdisc', 'del', 'dev', 'lo', 'root'], { stdio: 'ignore', timeout: 10_000 });
    return undefined;
  }
  return `tc cannot add a netem qdisc (${(probe.stderr || probe.error?.message || '').trim()}): this kernel has no CONFIG_NET_SCH_NETEM`;
}

/**
 * Why network namespaces cannot be used here, or undefined when they can. `shaping`: shape() must
 * work too (tc and nft); `firewall`: blockUdp() must (nft; its egress hook also needs Linux 5.16,
 * which this does not check).
 */
export function netnsUnavailable(options: { shaping?: boolean; firewall?: boolean } = {}): string | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'network namespaces need root (run the suite as root, as CI does)';
  const probe = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error) return `\`ip netns\` is unavailable (${probe.error.message}; install iproute2)`;
  if (probe.status !== 0) return `\`ip netns list\` failed: ${probe.stderr.trim()}`;
  if (options.shaping) {
    const tc = spawnSync('tc', ['qdisc', 'show', 'dev', 'lo'], { encoding: 'utf8', timeout: 10_000 });
    if (tc.error || tc.status !== 0) return `\`tc\` is unavailable (${tc.error?.message ?? tc.stderr.trim()}; install iproute2)`;
  }
  if (options.shaping || options.firewall) {
    const nft = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8', timeout: 10_000 });
    if (nft.error || nft.status !== 0) return `\`nft\` is unavailable (${nft.error?.message ?? nft.stderr.trim()}; install nftables)`;
  }
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

  const unshape = () => {
    spawnSync('tc', ['qdisc', 'del', 'dev', hostIf, 'root'], { stdio: 'ignore', timeout: 10_000 });
    spawnSync('ip', ['netns', 'exec', name, 'nft', 'delete', 'table', 'inet', 'relaycast_loss'], { stdio: 'ignore', timeout: 10_000 });
  };
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
    shape(link) {
      if (removed) throw new Error(`namespace ${name} was removed`);
      unshape();
      for (const command of link ? shapingCommands(hostIf, link) : []) execFileSync('tc', command, { timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
      if (link?.lossPercent) {
        execFileSync('ip', ['netns', 'exec', name, 'nft', '-f', '-'], { input: lossRuleset(link.lossPercent, nsIf), timeout: 10_000, stdio: ['pipe', 'pipe', 'pipe'] });
      }
    },
    blockUdp(blocked) {
      if (removed) throw new Error(`namespace ${name} was removed`);
      spawnSync('ip', ['netns', 'exec', name, 'nft', 'delete', 'table', 'netdev', 'relaycast_block_udp'], { stdio: 'ignore', timeout: 10_000 });
      if (blocked) execFileSync('ip', ['netns', 'exec', name, 'nft', '-f', '-'], { input: udpBlockRuleset(nsIf), timeout: 10_000, stdio: ['pipe', 'pipe', 'pipe'] });
    },
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
