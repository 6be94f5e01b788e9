/**
 * Janus (Debian's `janus` package, 1.1.2 on bookworm) as a peer to compare the fan-out with: its
 * streaming plugin with one RTP mountpoint, its HTTP API on 127.0.0.1, nothing else loaded (a
 * private configuration in a temp dir; /etc/janus is not read). The mountpoint takes plain RTP on
 * MEDIA's ports (what the baseline server's POST /forward sends it: the benchmark's publisher);
 * viewers watch it with kit/clients/janus.ts.
 *
 * Janus's ICE (libnice) gathers no loopback candidates, so its candidates are on the machine's own
 * interface address (`ice_enforce_list`): traffic to it never leaves the machine (the kernel
 * delivers it over loopback), but it is not 127.0.0.1.
 */
import { mkdtempSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { freePort } from '../../kit/postgres.ts';
import { spawnTracked, stopProcess, waitFor } from '../../kit/processes.ts';

/**
 * Janus's event loops: by default each PeerConnection gets a thread of its own; `event_loops = 2`
 * shares two among all of them (a documented Janus setting), which on 2 cores halved its CPU per
 * viewer (0.515 % → 0.256 % of a core, ../shared/peers/janus). The better of the two is compared.
 */
const EVENT_LOOPS = 2;
/** The one mountpoint's id. */
export const MOUNTPOINT = 1;
/** Janus's warnings and errors only (its default, 4, logs every session). */
const DEBUG_LEVEL = 3;
/** What the mountpoint takes: RTP of these codecs with these payload types (it offers viewers the same). */
const TRACKS = [
  { kind: 'audio', codec: 'opus', payloadType: 111 },
  { kind: 'video', codec: 'vp8', payloadType: 96 },
] as const;

export interface JanusTrack {
  kind: 'audio' | 'video';
  payloadType: number;
  /** Where Janus takes the track's RTP and RTCP on 127.0.0.1. */
  port: number;
  rtcpPort: number;
}

/** Where Debian installs Janus's modules (/usr/lib/<multiarch>/janus), if it is installed. */
function modulesDir(): string | undefined {
  return readdirSync('/usr/lib')
    .map((d) => join('/usr/lib', d, 'janus'))
    .find((d) => existsSync(join(d, 'plugins', 'libjanus_streaming.so')));
}

/** The first non-internal IPv4 address of this machine, for Janus's ICE candidates. */
function ownInterface(): { name: string; address: string } | undefined {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    const v4 = addresses?.find((a) => a.family === 'IPv4' && !a.internal);
    if (v4) return { name, address: v4.address };
  }
  return undefined;
}

export class JanusServer {
  /** Its HTTP API's base (POST a session here). */
  readonly url: string;
  readonly pid: number;
  readonly tracks: JanusTrack[];
  readonly eventLoops = EVENT_LOOPS;
  private readonly child: ChildProcess;
  private readonly dir: string;

  private constructor(url: string, child: ChildProcess, dir: string, tracks: JanusTrack[]) {
    this.url = url;
    this.child = child;
    this.pid = child.pid!;
    this.dir = dir;
    this.tracks = tracks;
  }

  /** Why Janus cannot run here, or undefined if it can. */
  static unavailable(): string | undefined {
    if (!modulesDir()) return "Janus is not installed (Debian's package: apt-get install janus)";
    if (!ownInterface()) return "no non-loopback IPv4 interface for Janus's ICE candidates (libnice gathers none on loopback)";
    return undefined;
  }

  static async start(): Promise<JanusServer> {
    const reason = JanusServer.unavailable();
    if (reason) throw new Error(reason);
    const modules = modulesDir()!;
    const iface = ownInterface()!;
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-janus-'));
    try {
      // Folders holding only the modules used: Janus loads every module in its folders.
      for (const [folder, file] of [['plugins', 'libjanus_streaming.so'], ['transports', 'libjanus_http.so'], ['events', ''], ['loggers', '']] as const) {
        mkdirSync(join(dir, folder));
        if (file) symlinkSync(join(modules, folder, file), join(dir, folder, file));
      }
      const httpPort = await freePort();
      const tracks: JanusTrack[] = [];
      for (const t of TRACKS) tracks.push({ kind: t.kind, payloadType: t.payloadType, port: await freePort(), rtcpPort: await freePort() });
      writeFileSync(
        join(dir, 'janus.jcfg'),
        `general: {
  configs_folder = "${dir}"
  plugins_folder = "${dir}/plugins"
  transports_folder = "${dir}/transports"
  events_folder = "${dir}/events"
  loggers_folder = "${dir}/loggers"
  debug_level = ${DEBUG_LEVEL}
  event_loops = ${EVENT_LOOPS}
}
nat: {
  ice_enforce_list = "${iface.name}"
}
`,
      );
      writeFileSync(join(dir, 'janus.transport.http.jcfg'), `general: {\n  json = "plain"\n  base_path = "/janus"\n  http = true\n  ip = "127.0.0.1"\n  port = ${httpPort}\n  https = false\n}\nadmin: {\n  admin_http = false\n}\n`);
      const media = tracks
        .map((t, i) => `    { type = "${t.kind}" mid = "${t.kind[0]}" label = "${t.kind}" port = ${t.port} rtcpport = ${t.rtcpPort} pt = ${t.payloadType} codec = "${TRACKS[i]!.codec}" }`)
        .join(',\n');
      writeFileSync(join(dir, 'janus.plugin.streaming.jcfg'), `general: {\n  events = false\n}\nbench: {\n  type = "rtp"\n  id = ${MOUNTPOINT}\n  description = "bench"\n  media = (\n${media}\n  )\n}\n`);

      const child = spawnTracked('janus', ['-F', dir, '-C', join(dir, 'janus.jcfg'), '--disable-colors'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
      const url = `http://127.0.0.1:${httpPort}/janus`;
      const janus = new JanusServer(url, child, dir, tracks);
      try {
        await waitFor('Janus to answer', async () => {
          if (child.exitCode !== null) throw new Error(`janus exited (${child.exitCode}): ${stderr}`);
          const info = await fetch(`${url}/info`).then((r) => r.json() as Promise<{ plugins?: Record<string, unknown> }>).catch(() => undefined);
          return info?.plugins?.['janus.plugin.streaming'] !== undefined;
        }, 20_000, 200);
      } catch (error) {
        await janus.stop();
        throw error;
      }
      return janus;
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Janus's version, as its API reports it. */
  async version(): Promise<string> {
    const info = (await (await fetch(`${this.url}/info`)).json()) as { version_string?: string };
    return info.version_string ?? 'unknown';
  }

  /** The mountpoint's viewers, from the streaming plugin's `info` (a session of its own). */
  async viewers(): Promise<number> {
    const call = async (url: string, body: Record<string, unknown>) => {
      const res = await fetch(url, { method: 'POST', body: JSON.stringify({ ...body, transaction: 'viewers' }) });
      return (await res.json()) as { data?: { id: number }; plugindata?: { data?: { info?: { viewers?: number } } } };
    };
    const session = `${this.url}/${(await call(this.url, { janus: 'create' })).data!.id}`;
    try {
      const handle = `${session}/${(await call(session, { janus: 'attach', plugin: 'janus.plugin.streaming' })).data!.id}`;
      const info = await call(handle, { janus: 'message', body: { request: 'info', id: MOUNTPOINT } });
      const viewers = info.plugindata?.data?.info?.viewers;
      if (viewers === undefined) throw new Error(`Janus's info has no viewer count: ${JSON.stringify(info)}`);
      return viewers;
    } finally {
      await call(session, { janus: 'destroy' });
    }
  }

  async stop(): Promise<void> {
    await stopProcess(this.child, 5000, 'SIGINT');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
