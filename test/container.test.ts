import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import { publish, publishWithRetry, TestBrowser } from '../kit/browser.ts';
import { metric } from '../kit/metrics.ts';
import { spawnTracked, stopProcess, waitFor } from '../kit/processes.ts';
import { httpsFetch, issueCertificate, makeTestCa } from '../kit/tls.ts';
import { playing } from './helpers/player.ts';

/**
 * The image built and the compose cluster (docker/compose.yml) run for real, through
 * scripts/container-test.sh: Postgres, two origins, an edge in each of two regions and the balancer
 * with HAProxy, each in its own container from the one image. ffmpeg publishes over RTMP to
 * HAProxy's port and Chromium over WHIP; Chromium plays both through the balancer; the edge
 * serving a player is killed (`docker kill`) and the player plays again from the other edge; that
 * edge, started again, rejoins, and when its process crashes the restart policy brings it back.
 *
 * Skipped, with the script's reason, on a machine that cannot run containers (no engine, no
 * compose, no way to make a base image, the cluster's ports taken). The build and start figures
 * are printed, not asserted.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = 'scripts/container-test.sh';
const exec = promisify(execFile);
/** What compose.yml publishes on this machine, and the defaults it sets for a local try. */
const BALANCER = 'http://127.0.0.1:8080';
const RTMP = 'rtmp://127.0.0.1:1935';
const ADMIN = 'local-admin-token-change-me';
const PROJECT = 'relaycast-test';
/** A cold build makes the base images and may build the mediasoup worker (about 6 minutes). */
const BUILD_TIMEOUT_MS = 30 * 60_000;
/** The script that skips exits with 77 (automake's "skipped"). */
const SKIPPED = 77;

interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Every variable the compose files read (`${NAME:-default}`): the cluster the test brings up takes
 * their defaults, whatever the caller's shell exports (a RELAYCAST_ADMIN_TOKEN of the developer's
 * own made the cluster and the test disagree about the admin token). Only `env` sets them.
 */
const COMPOSE_VARIABLES = new Set(
  ['docker/compose.yml', 'docker/compose.tls.yml'].flatMap((file) => [...readFileSync(join(ROOT, file), 'utf8').matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!)),
);

/** The caller's environment without the compose files' variables, then `env`. */
function scriptEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !COMPOSE_VARIABLES.has(name))), ...env };
}

async function script(command: string, timeoutMs: number, env: Record<string, string> = {}): Promise<ScriptResult> {
  try {
    const { stdout, stderr } = await exec('bash', [SCRIPT, command], { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 << 20, env: scriptEnv(env) });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
  }
}

async function mustRun(command: string, timeoutMs: number, env: Record<string, string> = {}): Promise<ScriptResult> {
  const result = await script(command, timeoutMs, env);
  if (result.code !== 0) assert.fail(`${SCRIPT} ${command} exited ${result.code}:\n${result.stderr.slice(-4000)}`);
  return result;
}

async function docker(...args: string[]): Promise<string> {
  const { stdout } = await exec(process.env.RELAYCAST_DOCKER ?? dockerCli, args, { timeout: 60_000, maxBuffer: 16 << 20 });
  return stdout.trim();
}
/** The CLI the script picked (it prints it on `check`). */
let dockerCli = 'docker';

/** The container id of a compose service (names differ between compose v1 and v2). */
async function containerOf(service: string): Promise<string> {
  const id = await docker('ps', '-aq', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--filter', `label=com.docker.compose.service=${service}`);
  assert.ok(id, `no container for ${service}`);
  return id.split('\n')[0]!;
}

async function createStream(name: string): Promise<{ streamKey: string; publishToken: string; rtmpUrl: string }> {
  const res = await fetch(`${BALANCER}/api/v1/streams`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { streamKey: string; publishToken: string; rtmpUrl: string };
}

/** The node's state in the cluster's own Postgres (the nodes table). */
async function nodeState(node: string): Promise<string> {
  return docker('exec', await containerOf('postgres'), 'psql', '-U', 'relaycast', '-d', 'relaycast', '-Atc', `select state from nodes where id = '${node}'`);
}

const health = (id: string) => docker('inspect', '--format', '{{if .State.Health}}{{.State.Health.Status}}{{end}}', id);

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe('containers: the image and the compose cluster (scripts/container-test.sh)', function () {
  let skipped = false;
  let upStartedAt = 0;
  let browser: TestBrowser | undefined;
  let rtmpViewer: Page;
  let whipPublisher: Page;
  let whipViewer: Page;
  let ffmpeg: ChildProcess | undefined;
  /** The edge the kill test stopped. */
  let killed = '';
  /** The balancer's HAProxy reloads before that kill. */
  let reloadsBeforeKill: number | undefined;

  before(async function () {
    this.timeout(BUILD_TIMEOUT_MS + 5 * 60_000);
    const check = await script('check', 120_000);
    if (check.code === SKIPPED) {
      skipped = true;
      console.log(`      SKIPPED: ${check.stderr.trim().split('\n').pop()}`);
      this.skip();
    }
    assert.equal(check.code, 0, check.stderr);
    dockerCli = /can run: (\S+)/.exec(check.stderr)?.[1] ?? 'docker';
    // A cluster a failed run left behind.
    await script('down', 120_000);
    const image = await mustRun('image', BUILD_TIMEOUT_MS);
    console.log(`      image built in ${/build_seconds=(\S+)/.exec(image.stdout)?.[1]} s (base images already made: ${!/making|building relaycast-base/.test(image.stderr)})`);
    upStartedAt = Date.now();
    await mustRun('up', 5 * 60_000);
    console.log(`      cluster up and healthy after ${seconds(Date.now() - upStartedAt)}`);
    browser = await TestBrowser.launch();
  });

  after(async function () {
    this.timeout(180_000);
    if (skipped) return;
    if (ffmpeg) await stopProcess(ffmpeg, 5000);
    await browser?.close();
    const down = await script('down', 150_000);
    if (down.code !== 0) console.log(`      ${SCRIPT} down exited ${down.code}: ${down.stderr.slice(-2000)}`);
    // The engine, if the script started it for this run (a machine's own engine stays up).
    await script('engine-stop', 60_000);
  });

  it('brings the same cluster up whatever the caller\'s shell exports: the compose files\' variables take their defaults', async () => {
    const exported = { RELAYCAST_ADMIN_TOKEN: 'exported-by-the-callers-shell-0123', RELAYCAST_CLUSTER_SECRET: 'exported-by-the-callers-shell-4567', RELAYCAST_GEO_PINS: '203.0.113.77=exported-by-the-shell' };
    const before = Object.fromEntries(Object.keys(exported).map((name) => [name, process.env[name]]));
    Object.assign(process.env, exported);
    let config: ScriptResult;
    try {
      config = await mustRun('config', 60_000);
    } finally {
      for (const [name, value] of Object.entries(before)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
    for (const value of Object.values(exported)) assert.ok(!config.stdout.includes(value), `${value} reached the compose configuration`);
    assert.match(config.stdout, new RegExp(`RELAYCAST_ADMIN_TOKEN: ${ADMIN}\\b`), 'the admin token this test uses');
  });

  it('the image runs compiled JavaScript as a non-root user, with a health check', async () => {
    const config = JSON.parse(await docker('image', 'inspect', 'relaycast:local', '--format', '{{json .Config}}')) as { User: string; Healthcheck?: { Test: string[] } };
    assert.equal(config.User, '10001:10001');
    assert.deepEqual(config.Healthcheck?.Test.slice(0, 2), ['CMD', 'node']);
    const inside = await docker('run', '--rm', 'relaycast:local', 'sh', '-c', 'id -u; ls /app; find /app/dist -name "*.ts" ! -name "*.d.ts" | wc -l; command -v tsc tsx gcc || true');
    const [uid, ...rest] = inside.split('\n');
    assert.equal(uid, '10001');
    assert.ok(rest.includes('dist'), inside);
    assert.ok(!rest.includes('app') && !rest.includes('origin'), `no TypeScript source folders in /app: ${inside}`);
    assert.equal(rest.at(-1), '0', 'no .ts sources under dist');
    const size = Number(await docker('image', 'inspect', 'relaycast:local', '--format', '{{.Size}}'));
    console.log(`      image size ${(size / 1e6).toFixed(0)} MB`);
  });

  it('every node registers in the cluster\'s Postgres and reports healthy; memory at rest is printed', async () => {
    const postgres = await containerOf('postgres');
    const rows = await docker('exec', postgres, 'psql', '-U', 'relaycast', '-d', 'relaycast', '-Atc', "select id || ' ' || array_to_string(roles, ',') || ' ' || state from nodes order by id");
    assert.deepEqual(rows.split('\n'), ['balancer balancer up', 'edge-eu edge up', 'edge-us edge up', 'origin-eu origin up', 'origin-us origin up']);
    const health = await docker('ps', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--format', '{{.Label "com.docker.compose.service"}} {{.Status}}');
    for (const line of health.split('\n')) if (!line.startsWith('net ')) assert.match(line, /\(healthy\)/, line);
    const memory = await docker('stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}}');
    console.log(`      memory at rest:\n${memory.split('\n').map((l) => `        ${l.replace(`${PROJECT}_`, '').replace(`${PROJECT}-`, '')}`).join('\n')}`);
  });

  it('ffmpeg publishes over RTMP through HAProxy\'s port (x264 defaults, 2 s key frames); Chromium plays through the balancer', async () => {
    const { rtmpUrl } = await createStream('rtmp');
    assert.ok(rtmpUrl.startsWith(`${RTMP}/live/`), `the admin API names HAProxy's RTMP port: ${rtmpUrl}`);
    const publishedAt = Date.now();
    ffmpeg = spawnTracked(
      'ffmpeg',
      [
        ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-re'],
        ...['-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100'],
        ...['-c:v', 'libx264', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '600', '-f', 'flv', rtmpUrl],
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    rtmpViewer = await browser!.page(BALANCER);
    await rtmpViewer.goto(`${BALANCER}/play/rtmp`);
    const stats = await playing(rtmpViewer, 'the player to play the RTMP stream', { timeoutMs: 90_000 });
    console.log(`      RTMP publish → played: ${seconds(Date.now() - publishedAt)}; cluster up → played: ${seconds(Date.now() - upStartedAt)} (${stats.videoWidth}x${stats.videoHeight} from ${stats.edge})`);
    assert.equal(stats.videoWidth, 640);
    assert.match(stats.edge ?? '', /^edge-(eu|us)$/);
  });

  it('Chromium publishes over WHIP to an origin the route API names; another Chromium page plays it', async () => {
    const { publishToken } = await createStream('whip');
    whipPublisher = await browser!.page(BALANCER);
    const started = Date.now();
    await publishWithRetry(whipPublisher, BALANCER, 'whip', publishToken);
    whipViewer = await browser!.page(BALANCER);
    await whipViewer.goto(`${BALANCER}/play/whip`);
    const stats = await playing(whipViewer, 'the player to play the WHIP stream', { timeoutMs: 60_000 });
    console.log(`      WHIP publish → played: ${seconds(Date.now() - started)} (${stats.videoWidth}x${stats.videoHeight} from ${stats.edge})`);
    assert.ok(stats.videoWidth > 0);
  });

  it('docker kill of the edge serving the RTMP stream\'s player: it plays again from the other edge', async () => {
    const before = await playing(rtmpViewer, 'the player before the kill');
    const dead = before.edge!;
    const other = dead === 'edge-eu' ? 'edge-us' : 'edge-eu';
    reloadsBeforeKill = await metric(BALANCER, 'relaycast_haproxy_reloads_total');
    assert.equal(typeof reloadsBeforeKill, 'number', 'the balancer counts its HAProxy reloads (/metrics through HAProxy)');
    const started = Date.now();
    await docker('kill', await containerOf(dead));
    const after = await playing(rtmpViewer, 'the player on the other edge', { afterSession: before.sessions, timeoutMs: 60_000 });
    console.log(`      docker kill ${dead}: the player plays again from ${after.edge} after ${seconds(Date.now() - started)}`);
    assert.equal(after.edge, other);
    // The WHIP stream's player, wherever it was, plays too.
    await playing(whipViewer, 'the WHIP stream\'s player after the kill', { timeoutMs: 60_000 });
    assert.notEqual(await nodeState(dead), 'up', `${dead} is no longer up in the nodes table`);
    // `docker kill` is an operator's stop: compose's restart policy leaves the container exited.
    assert.match(await docker('inspect', '--format', '{{.State.Status}}', await containerOf(dead)), /^exited$/);
    killed = dead;
  });

  it('the killed edge started again rejoins; when its process crashes, the restart policy brings it back', async () => {
    const id = await containerOf(killed);
    await docker('start', id);
    await waitFor(`${killed} healthy and up again`, async () => (await health(id)) === 'healthy' && (await nodeState(killed)) === 'up', 90_000, 500);
    const restarts = Number(await docker('inspect', '--format', '{{.RestartCount}}', id));
    // A crash, not a stop: node and its mediasoup worker die, and tini exits with them.
    const started = Date.now();
    // (The image has no kill binary: the shell's. Its init, tini, is immune to signals from inside.)
    await docker('exec', id, 'sh', '-c', 'kill -9 -1').catch(() => undefined);
    await waitFor(`${killed} restarted by the restart policy`, async () => Number(await docker('inspect', '--format', '{{.RestartCount}}', id)) > restarts, 30_000, 250);
    await waitFor(`${killed} healthy and up after the restart`, async () => (await health(id)) === 'healthy' && (await nodeState(killed)) === 'up', 90_000, 500);
    console.log(`      ${killed} crashed: restarted, healthy and up in the nodes table after ${seconds(Date.now() - started)}`);
    // Its region was empty meanwhile: HAProxy kept the region's backend (no reload), so the RTMP
    // publisher's connection through it was never handed to an old worker to be cut.
    assert.equal(await metric(BALANCER, 'relaycast_haproxy_reloads_total'), reloadsBeforeKill, 'no HAProxy reload since the kill');
    assert.equal(ffmpeg?.exitCode, null, 'the RTMP publisher through HAProxy is still connected');
  });

  it('with docker/compose.tls.yml: HTTPS at HAProxy with one certificate; Chromium publishes and plays through the /n/{node} paths', async function () {
    this.timeout(5 * 60_000);
    // The RTMP publisher goes with the plain cluster.
    if (ffmpeg) await stopProcess(ffmpeg, 5000);
    ffmpeg = undefined;
    await mustRun('down', 150_000);
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-compose-tls-'));
    try {
      const ca = makeTestCa(dir);
      const cert = issueCertificate(ca, 'server');
      // A throwaway key, readable by the image's user (uid 10001) through the read-only mount.
      copyFileSync(cert.certFile, join(dir, 'tls.crt'));
      copyFileSync(cert.keyFile, join(dir, 'tls.key'));
      chmodSync(dir, 0o755);
      chmodSync(join(dir, 'tls.key'), 0o644);
      const started = Date.now();
      await mustRun('up', 5 * 60_000, { RELAYCAST_TLS_DIR: dir, RELAYCAST_PUBLIC_HOST: '127.0.0.1' });
      console.log(`      TLS cluster healthy after ${seconds(Date.now() - started)}`);
      const front = BALANCER.replace('http:', 'https:');
      const plain = await fetch(`${BALANCER}/healthz`, { signal: AbortSignal.timeout(5000) }).catch((error: Error) => error);
      assert.ok(plain instanceof Error || plain.status >= 400, 'HAProxy speaks HTTPS only');
      const created = await httpsFetch(`${front}/api/v1/streams`, ca, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'secure' }) });
      assert.equal(created.status, 201, created.text);
      const { publishToken } = JSON.parse(created.text) as { publishToken: string };
      const route = JSON.parse((await httpsFetch(`${front}/v1/route?stream=secure&role=origin`, ca)).text) as { choices: Array<{ url: string }> };
      assert.match(route.choices[0]!.url, new RegExp(`^${front}/n/origin-(eu|us)$`));
      const tlsBrowser = await TestBrowser.launch({ args: [`--ignore-certificate-errors-spki-list=${ca.spki}`] });
      try {
        const publisher = await tlsBrowser.page(front);
        const published = await publish(publisher, `${route.choices[0]!.url}/whip/secure`, publishToken, 'video/VP8');
        assert.equal(published.status, 201, published.body);
        const viewer = await tlsBrowser.page(front);
        await viewer.goto(`${front}/play/secure`);
        const stats = await playing(viewer, 'the player over HTTPS through HAProxy', { timeoutMs: 60_000 });
        const session = await viewer.evaluate(() => (window as any).relaycastPlayer.stats().session as string);
        assert.match(session, new RegExp(`^${front}/n/edge-(eu|us)/whep/secure/`));
        console.log(`      HTTPS: published through ${route.choices[0]!.url}, playing ${stats.videoWidth}x${stats.videoHeight} through ${session.slice(0, session.indexOf('/whep/'))}`);
      } finally {
        await tlsBrowser.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
