import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Copy, DockerfileParser, type Instruction } from 'dockerfile-ast';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { FIELDS, loadConfig, type Config } from '../core/config.ts';
import { helm } from './helm-render/helm.ts';
import { apiServerRuleErrors, describeObject, schemaErrors, typeErrors, type K8sObject } from './helm-render/validate.ts';

/**
 * The deployment files, checked without a Docker engine or a cluster: the compose file through
 * `docker-compose config` (Debian's docker-compose 1.29), the Dockerfile through a Dockerfile
 * parser and linter, the Helm chart rendered by the real Helm (3.8.1, from an npm package) and its
 * objects validated against the Kubernetes OpenAPI schemas. Every node's environment, from compose
 * or from the chart, goes through the config loader the nodes themselves use.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHART = join(ROOT, 'docker/helm/relaycast');
const exec = promisify(execFile);
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
/** The image's data dir (its ENV RELAYCAST_DATA_DIR). */
const DATA_DIR = /RELAYCAST_DATA_DIR=(\S+)/.exec(read('docker/Dockerfile'))![1]!;
const packageJson = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

/** Variables the container's own scripts read (docker/entrypoint.sh, docker/prestop.mjs). */
const CONTAINER_VARS = ['RELAYCAST_PORT_BLOCK_BASE', 'RELAYCAST_PORT_BLOCK_SIZE', 'RELAYCAST_ANNOUNCED_IPS', 'RELAYCAST_POD_INDEX', 'RELAYCAST_PRESTOP_ROLE', 'RELAYCAST_PRESTOP_WAIT_S', 'RELAYCAST_PRESTOP_POLL_MS', 'RELAYCAST_PRESTOP_REQUEST_TIMEOUT_MS'];
const KNOWN_VARS = new Set([...FIELDS.map((f) => f.env), 'RELAYCAST_CONFIG', 'MEDIASOUP_WORKER_BIN', ...CONTAINER_VARS]);

/** A node's settings as the node would load them; fails on an unknown variable or a bad value. */
function nodeConfig(what: string, roles: string[], env: Record<string, string>): Config {
  for (const name of Object.keys(env)) {
    if (name.startsWith('RELAYCAST_') || name === 'DATABASE_URL') assert.ok(KNOWN_VARS.has(name), `${what}: ${name} is not a relaycast setting`);
  }
  try {
    return loadConfig({ roles, env });
  } catch (error) {
    assert.fail(`${what}: ${(error as Error).message}`);
  }
}

/** The environment docker/entrypoint.sh hands relaycast, from the environment it is given. */
async function entrypointEnv(env: Record<string, string>): Promise<Record<string, string>> {
  const { stdout } = await exec('sh', [join(ROOT, 'docker/entrypoint.sh'), 'env'], { env: { PATH: process.env.PATH!, ...env }, timeout: 10_000 });
  return Object.fromEntries(stdout.trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const overlaps = (a: [number, number], b: [number, number]) => a[0] <= b[1] && b[0] <= a[1];

describe('docker/compose.yml (docker-compose config)', function () {
  interface Service {
    image?: string;
    command?: string[];
    environment?: Record<string, string | number>;
    ports?: { published: number; target: number; protocol?: string }[];
    network_mode?: string;
    depends_on?: Record<string, { condition: string }>;
    healthcheck?: { test: string[]; disable?: boolean };
    stop_grace_period?: string;
    /** `source:target[:mode]` (docker-compose 1.29's config) or the long form (compose v2's). */
    volumes?: (string | { type?: string; source?: string; target: string; read_only?: boolean })[];
  }
  type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown> };
  const PUBLIC_IP = '203.0.113.7';
  /** Recording settings given to the `custom` configuration. */
  const RECORDING_ENV = {
    RELAYCAST_RECORD: 'on',
    RELAYCAST_RECORDING_RETENTION_DAYS: '30',
    RELAYCAST_RECORD_S3: 's3://recordings/live',
    RELAYCAST_RECORD_S3_ENDPOINT: 'http://minio.example.net:9000',
    RELAYCAST_RECORD_S3_REGION: 'eu-central-1',
    AWS_ACCESS_KEY_ID: 'AKIAEXAMPLEEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret-access-key-example',
  };
  let local: Compose;
  let custom: Compose;

  const config = async (env: Record<string, string>): Promise<Compose> => {
    const dir = mkdtempSync(join(tmpdir(), 'relaycast-compose-'));
    try {
      // An empty env file: a developer's docker/.env must not change what is checked.
      writeFileSync(join(dir, 'empty.env'), '');
      const { stdout } = await exec('docker-compose', ['--env-file', join(dir, 'empty.env'), '-f', 'docker/compose.yml', 'config'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH!, HOME: dir, ...env },
        timeout: 30_000,
      });
      return parseYaml(stdout) as Compose;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('docker-compose not found: `bash scripts/setup.sh --test` installs Debian\'s docker-compose', { cause: error });
      throw error;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const env = (s: Service) => Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v)]));
  /** The Relaycast nodes: services whose command starts with a role. */
  const nodes = (c: Compose) =>
    Object.entries(c.services)
      .filter(([, s]) => ['origin', 'edge', 'balancer', 'all'].includes(s.command?.[0] ?? ''))
      .map(([name, s]) => ({ name, service: s, roles: s.command!.filter((a) => !a.startsWith('-')), env: env(s) }));
  const withRole = (c: Compose, role: string) => nodes(c).filter((n) => n.roles.includes(role) || n.roles.includes('all'));
  const mounts = (s: Service) =>
    (s.volumes ?? []).map((v) => {
      if (typeof v !== 'string') return { source: v.source, target: v.target, readOnly: v.read_only === true };
      const [source, target, mode] = v.split(':');
      return target === undefined ? { source: undefined, target: source!, readOnly: false } : { source, target, readOnly: mode === 'ro' };
    });

  before(async function () {
    [local, custom] = await Promise.all([
      config({}),
      config({ RELAYCAST_PUBLIC_IP: PUBLIC_IP, RELAYCAST_CLUSTER_SECRET: 'a-custom-cluster-secret-0123', RELAYCAST_ADMIN_TOKEN: 'a-custom-admin-token-0123', POSTGRES_PASSWORD: 'pw-custom', ...RECORDING_ENV }),
    ]);
  });

  it('runs Postgres, two origins, edges in two regions and the balancer with HAProxy', () => {
    assert.ok(local.services.postgres, 'a postgres service');
    assert.ok(withRole(local, 'origin').length >= 2, 'two origins');
    const regions = new Set(withRole(local, 'edge').map((n) => n.env.RELAYCAST_REGION));
    assert.ok(regions.size >= 2, `edges in two regions, got ${[...regions]}`);
    const [balancer, ...more] = withRole(local, 'balancer');
    assert.ok(balancer && more.length === 0, 'one balancer');
    assert.equal(balancer.env.RELAYCAST_HAPROXY_BIN, 'haproxy');
    for (const n of nodes(local)) assert.equal(n.service.image, local.services.net!.image, `${n.name} runs the Relaycast image`);
  });

  it('gives every node a configuration its own loader accepts, with one cluster secret and Postgres', () => {
    const pg = env(local.services.postgres!);
    const secrets = new Set<string>();
    for (const n of nodes(local)) {
      const c = nodeConfig(`compose service ${n.name}`, n.roles, n.env);
      secrets.add(c.clusterSecret!);
      const url = new URL(c.databaseUrl!);
      assert.ok(local.services[url.hostname], `${n.name}: DATABASE_URL names a compose service`);
      assert.deepEqual([url.username, url.password, url.pathname.slice(1)], [pg.POSTGRES_USER, pg.POSTGRES_PASSWORD, pg.POSTGRES_DB], `${n.name}: DATABASE_URL matches Postgres`);
      assert.equal(n.service.depends_on?.postgres?.condition, 'service_healthy', `${n.name} waits for Postgres`);
      assert.deepEqual(n.service.healthcheck?.test.slice(0, 3), ['CMD', 'node', '/app/docker/healthcheck.mjs'], `${n.name} has a healthcheck`);
      // SIGTERM → the node moves its viewers off (drainTimeoutMs, if this version has it) and stops, before SIGKILL.
      const grace = /^(\d+)(s|m)$/.exec(n.service.stop_grace_period ?? '10s')!;
      const shutdown = ((c as Config & { drainTimeoutMs?: number }).drainTimeoutMs ?? 0) / 1000 + 15;
      assert.ok(Number(grace[1]) * (grace[2] === 'm' ? 60 : 1) >= shutdown, `${n.name}: stop_grace_period ${n.service.stop_grace_period} covers the shutdown (${shutdown} s)`);
    }
    assert.equal(secrets.size, 1, 'one cluster secret');
    assert.ok(local.services.postgres!.healthcheck?.test.includes('pg_isready'), 'postgres has a healthcheck');
    const balancer = withRole(local, 'balancer')[0]!;
    assert.ok((balancer.env.RELAYCAST_ADMIN_TOKEN ?? '').length >= 16, 'the balancer has an admin token');
  });

  it('publishes every node\'s ports one-to-one from the shared network namespace, UDP ranges apart', () => {
    const published = new Map<string, number>();
    for (const [name, s] of Object.entries(local.services)) {
      for (const p of s.ports ?? []) {
        assert.equal(p.published, p.target, `${name}: port ${p.target} is published on the same number (nodes announce their own ports)`);
        published.set(`${p.protocol ?? 'tcp'}/${p.target}`, 0);
      }
    }
    const owner = new Map<number, string>();
    const claim = (node: string, port: number, protocol: string, mustPublish: boolean) => {
      assert.ok(!owner.has(port) || owner.get(port) === node, `port ${port} used by ${owner.get(port)} and ${node} in one namespace`);
      owner.set(port, node);
      if (mustPublish) {
        assert.ok(published.has(`${protocol}/${port}`), `${node}: ${protocol} port ${port} is not published`);
        published.set(`${protocol}/${port}`, published.get(`${protocol}/${port}`)! + 1);
      }
    };
    const ranges: [string, [number, number]][] = [];
    for (const n of nodes(local)) {
      assert.equal(n.service.network_mode, 'service:net', `${n.name} shares the net service's namespace`);
      const c = nodeConfig(n.name, n.roles, n.env);
      claim(n.name, c.httpPort, 'tcp', false);
      claim(n.name, Number(new URL(c.publicUrl).port), 'tcp', true);
      if (c.roles.includes('balancer')) claim(n.name, Number(c.haproxyBind.split(':').pop()), 'tcp', true);
      if (c.roles.includes('balancer') && c.haproxyRtmpPort > 0) claim(n.name, c.haproxyRtmpPort, 'tcp', true);
      if (c.roles.includes('origin')) claim(n.name, c.rtmpPort, 'tcp', true);
      if (c.roles.includes('edge')) {
        assert.ok(c.agentPort > 0, `${n.name} has an agent-check port`);
        claim(n.name, c.agentPort, 'tcp', false);
      }
      if (c.roles.includes('origin') || c.roles.includes('edge')) {
        for (const [other, r] of ranges) assert.ok(!overlaps(r, [c.rtcMinPort, c.rtcMaxPort]), `${n.name}'s media ports overlap ${other}'s`);
        ranges.push([n.name, [c.rtcMinPort, c.rtcMaxPort]]);
        for (const port of range(c.rtcMinPort, c.rtcMaxPort)) claim(n.name, port, 'udp', true);
      }
    }
    const stray = [...published].filter(([, uses]) => uses === 0).map(([port]) => port);
    assert.deepEqual(stray, [], 'published ports no node uses');
  });

  it('announces RELAYCAST_PUBLIC_IP and builds the nodes\' URLs from it; secrets come from the environment', () => {
    for (const n of nodes(custom)) {
      const c = nodeConfig(n.name, n.roles, n.env);
      assert.equal(new URL(c.publicUrl).hostname, PUBLIC_IP, `${n.name}'s public URL`);
      if (!c.roles.includes('balancer')) assert.equal(c.announcedIp, PUBLIC_IP, `${n.name}'s announced IP`);
      assert.equal(c.clusterSecret, 'a-custom-cluster-secret-0123');
      assert.equal(new URL(c.databaseUrl!).password, 'pw-custom');
      if (c.roles.includes('balancer')) assert.equal(c.adminToken, 'a-custom-admin-token-0123');
    }
    for (const n of withRole(local, 'edge')) assert.equal(nodeConfig(n.name, n.roles, n.env).announcedIp, '127.0.0.1', 'local default');
  });

  it('mounts one recordings volume in every origin and edge, at their RELAYCAST_RECORD_DIR; the image makes that directory for its user', () => {
    const media = [...withRole(local, 'origin'), ...withRole(local, 'edge')];
    assert.ok(media.length >= 4);
    const dirs = new Set<string>();
    const volumes = new Set<string | undefined>();
    for (const n of media) {
      const { recordDir } = nodeConfig(n.name, n.roles, n.env);
      const mount = mounts(n.service).find((m) => m.target === recordDir);
      assert.ok(mount, `${n.name}: a volume at its record dir ${recordDir} (so recordings outlive the container, and edges read the origins' from disk)`);
      assert.ok(!mount.readOnly, `${n.name}: the recordings volume is writable (origins record, every node sweeps its own files)`);
      dirs.add(recordDir);
      volumes.add(mount.source);
    }
    assert.deepEqual([...volumes], ['recordings'], 'one named volume, the same for all');
    assert.ok(local.volumes && 'recordings' in local.volumes, 'declared as a named volume');
    assert.equal(dirs.size, 1, `one path in every node: ${[...dirs]}`);
    // A new named volume takes the ownership of the image's directory at its mount point: the
    // image must make it, owned by the user it runs as (uid 10001), or nothing could be recorded.
    const [dir] = [...dirs] as [string];
    const dockerfile = read('docker/Dockerfile');
    const user = /^USER (\d+):/m.exec(dockerfile)?.[1];
    const useradd = dockerfile.split('\n').find((line) => line.includes('useradd ') && line.includes(`--uid ${user} `));
    const userName = useradd?.split(/\s+/).filter((word) => word && word !== '\\').pop();
    assert.ok(userName, `the image's user ${user} is made by useradd`);
    assert.match(dockerfile, new RegExp(`mkdir -p [^&]*${dir}\\b`), `the image makes ${dir}`);
    assert.match(dockerfile, new RegExp(`chown ${userName}:\\S+ [^&]*${dir}\\b`), `${dir} is owned by ${userName}`);
    // The balancer neither records nor serves recordings.
    for (const n of withRole(local, 'balancer')) assert.deepEqual(mounts(n.service).filter((m) => m.source === 'recordings'), [], n.name);
  });

  it('records only streams set to record, unless RELAYCAST_RECORD=on; RELAYCAST_RECORD_S3 and the AWS credentials reach origins and edges', () => {
    // Left empty by default, which the config loader takes as not set.
    for (const n of [...withRole(local, 'origin'), ...withRole(local, 'edge')]) {
      const c = nodeConfig(n.name, n.roles, n.env);
      assert.deepEqual([c.record, c.recordingRetentionDays, c.recordS3, c.recordS3Endpoint, c.recordS3Region], ['off', 7, undefined, undefined, 'us-east-1'], `${n.name}: the defaults`);
    }
    for (const n of withRole(custom, 'origin')) {
      const c = nodeConfig(n.name, n.roles, n.env);
      assert.deepEqual([c.record, c.recordingRetentionDays], ['on', 30], `${n.name}: RELAYCAST_RECORD, RELAYCAST_RECORDING_RETENTION_DAYS`);
    }
    for (const n of [...withRole(custom, 'origin'), ...withRole(custom, 'edge')]) {
      const c = nodeConfig(n.name, n.roles, n.env);
      assert.deepEqual([c.recordS3, c.recordS3Endpoint, c.recordS3Region], ['s3://recordings/live', 'http://minio.example.net:9000', 'eu-central-1'], `${n.name}: the bucket (origins upload, edges read back)`);
      assert.deepEqual([n.env.AWS_ACCESS_KEY_ID, n.env.AWS_SECRET_ACCESS_KEY], [RECORDING_ENV.AWS_ACCESS_KEY_ID, RECORDING_ENV.AWS_SECRET_ACCESS_KEY], `${n.name}: the credentials, for the AWS SDK`);
    }
  });
});

describe('docker/Dockerfile', function () {
  const text = read('docker/Dockerfile');
  const dockerfile = DockerfileParser.parse(text);
  const froms = dockerfile.getFROMs();
  const stageOf = (i: Instruction) => {
    const line = i.getRange().start.line;
    return froms.filter((f) => f.getRange().start.line <= line).pop()!;
  };
  const final = froms[froms.length - 1]!;
  const finalStage = dockerfile.getInstructions().filter((i) => stageOf(i) === final);
  const image = (from: (typeof froms)[number]) => from.getExpandedArguments()[0]!.getValue();
  /** COPY's --from stage, or undefined for a copy from the build context. */
  const copyFrom = (i: Instruction) => (i instanceof Copy ? (i.getFromFlag()?.getValue() ?? undefined) : undefined);
  const contextCopies = (instructions: Instruction[]) => instructions.filter((i) => i.getKeyword() === 'COPY' && !copyFrom(i));
  const runs = (stage?: (typeof froms)[number]) => dockerfile.getInstructions().filter((i) => i.getKeyword() === 'RUN' && (!stage || stageOf(i) === stage)).map((i) => i.getArgumentsContent() ?? '');

  it('parses and lints clean', () => {
    assert.deepEqual(lintDockerfile(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`), []);
    // The linter must be able to fail: a misspelt instruction and flag are reported.
    assert.equal(lintDockerfile(text.replace('\nUSER ', '\nUSR ').replace('--start-period', '--start-periodd')).length, 2);
    // The base images made where no registry is reachable (scripts/container-test.sh).
    assert.deepEqual(lintDockerfile(read('docker/base/Dockerfile')).map((d) => `docker/base/Dockerfile line ${d.range.start.line + 1}: ${d.message}`), []);
  });

  it('builds the mediasoup worker in a build stage with scripts/mediasoup-offline, for package.json\'s mediasoup', () => {
    assert.ok(froms.length >= 3, 'multi-stage');
    const builder = froms.find((f) => runs(f).some((r) => r.includes('scripts/mediasoup-offline/build-worker.sh')));
    assert.ok(builder, 'a stage runs scripts/mediasoup-offline/build-worker.sh');
    assert.notEqual(builder, final);
    const versionArg = dockerfile.getInstructions().find((i) => stageOf(i) === builder && i.getKeyword() === 'ARG' && /^MEDIASOUP_VERSION=/.test(i.getArgumentsContent() ?? ''));
    assert.equal(versionArg?.getArgumentsContent()?.split('=')[1], packageJson.dependencies.mediasoup, 'ARG MEDIASOUP_VERSION is package.json\'s mediasoup version');
  });

  it('installs production dependencies only: no TypeScript loader or compiler', () => {
    assert.ok(runs().some((r) => /npm ci\b.*--omit=dev/.test(r)), 'npm ci --omit=dev');
    for (const tool of ['tsx', 'typescript']) assert.ok(!packageJson.dependencies[tool], `${tool} is not a runtime dependency`);
    const deps = finalStage.find((i) => copyFrom(i) === 'deps');
    assert.equal(deps?.getArguments()[0]?.getValue(), '/app/node_modules', 'node_modules come from the deps stage');
  });

  it('runs on node:20-bookworm-slim with ffmpeg and HAProxy and no compilers, the worker copied in and named by MEDIASOUP_WORKER_BIN', () => {
    assert.equal(image(final), 'node:20-bookworm-slim');
    const packages = runs(final)
      .flatMap((r) => [...r.matchAll(/apt-get install ((?:[^&|;])*)/g)].map((m) => m[1]!))
      .flatMap((args) => args.split(/\s+/).filter((a) => a && !a.startsWith('-') && a !== '\\'));
    for (const p of ['ffmpeg', 'haproxy']) assert.ok(packages.includes(p), `installs ${p}`);
    const compilers = packages.filter((p) => /^(gcc|g\+\+|clang|make|cmake|meson|ninja-build|build-essential|python3)$|-dev$/.test(p));
    assert.deepEqual(compilers, [], 'no build tools in the runtime stage');
    const env = finalStage.filter((i) => i.getKeyword() === 'ENV').map((i) => i.getArgumentsContent() ?? '').join(' ');
    const workerBin = /MEDIASOUP_WORKER_BIN=(\S+)/.exec(env)?.[1];
    assert.ok(workerBin, 'ENV MEDIASOUP_WORKER_BIN');
    const copy = finalStage.find((i) => copyFrom(i) && i.getArguments().at(-1)?.getValue() === workerBin);
    assert.ok(copy, `the worker is copied from a build stage to ${workerBin}`);
    const source = froms.find((f) => f.getBuildStage() === copyFrom(copy));
    assert.ok(source && source !== final, `COPY --from=${copyFrom(copy)} names a stage`);
  });

  it('runs as a non-root user, with a HEALTHCHECK on /healthz, EXPOSE and the entrypoint', () => {
    const users = finalStage.filter((i) => i.getKeyword() === 'USER').map((i) => (i.getArgumentsContent() ?? '').split(':')[0]!);
    assert.ok(users.length > 0, 'USER in the runtime stage');
    assert.ok(!['root', '0'].includes(users[users.length - 1]!), 'the last USER is not root');
    const healthcheck = finalStage.find((i) => i.getKeyword() === 'HEALTHCHECK');
    const command = JSON.parse((healthcheck?.getArgumentsContent() ?? '').replace(/^CMD\s+/, '')) as string[];
    assert.equal(command[0], 'node', 'the healthcheck runs node (no curl in the image)');
    assert.ok(command.includes('/healthz'));
    const script = command.find((a) => a.startsWith('/app/docker/'))!;
    assert.match(read(script.replace('/app/', '')), /localNode\.request\(/, 'the healthcheck script exists and asks the node (test/tls.test.ts runs it)');
    const exposed = finalStage.filter((i) => i.getKeyword() === 'EXPOSE').flatMap((i) => i.getArguments().map((a) => a.getValue()));
    for (const p of ['8080/tcp', '1935/tcp']) assert.ok(exposed.includes(p), `EXPOSE ${p}`);
    const entrypoint = JSON.parse(finalStage.find((i) => i.getKeyword() === 'ENTRYPOINT')?.getArgumentsContent() ?? '[]') as string[];
    assert.ok(entrypoint.includes('/app/docker/entrypoint.sh'), 'the entrypoint script');
  });

  it('compiles every source folder the app loads, ships dist/ and what the code reads, from a small context', () => {
    // Patterns as Docker applies them: the last match wins, a pattern matching a folder covers its files.
    const patterns = read('docker/Dockerfile.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const toRegExp = (p: string) =>
      new RegExp(`^${posix.normalize(p).replace(/\/$/, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*\/?/g, '\uE000').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\uE000/g, '(.*/)?')}$`);
    const rules = patterns.map((p) => ({ exclude: !p.startsWith('!'), re: toRegExp(p.replace(/^!/, '')) }));
    const ignored = (path: string) => {
      let result = false;
      const prefixes = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
      for (const rule of rules) if (prefixes.some((p) => rule.re.test(p))) result = rule.exclude;
      return result;
    };
    for (const path of ['node_modules/mediasoup/package.json', '.git/HEAD', 'test/deploy.test.ts', 'bench/webrtc.ts', 'docker/helm/relaycast/Chart.yaml', 'data/cluster-secret']) {
      assert.ok(ignored(path), `${path} stays out of the build context`);
    }
    // The sources reachable from app/cli.ts (imports, import() of roles) and the folders the code
    // reads at run time (join(PACKAGE_ROOT, 'haproxy', …)).
    const reached = new Set<string>();
    const assets = new Set<string>(['package.json']);
    const queue = ['app/cli.ts'];
    for (let file = queue.pop(); file; file = queue.pop()) {
      if (reached.has(file)) continue;
      reached.add(file);
      const source = read(file);
      for (const m of source.matchAll(/(?:from\s+|import\(\s*)['"`](\.\.?\/[^'"`$]*)/g)) {
        const target = posix.normalize(posix.join(posix.dirname(file), m[1]!));
        assert.ok(existsSync(join(ROOT, target)), `${file} imports ${target}, which does not exist`);
        if (target.endsWith('.ts')) queue.push(target);
      }
      for (const m of source.matchAll(/join\(PACKAGE_ROOT, '([^']+)'/g)) assets.add(m[1]!);
    }
    const sourceFolders = new Set([...reached].map((p) => p.split('/')[0]!));
    // A build stage compiles them (npm run build), and the runtime stage takes its dist/.
    const builder = froms.find((f) => runs(f).some((r) => /npm run build/.test(r)));
    assert.ok(builder && builder !== final, 'a build stage runs npm run build');
    const built = contextCopies(dockerfile.getInstructions().filter((i) => stageOf(i) === builder)).flatMap((i) => i.getArguments().slice(0, -1).map((a) => a.getValue().replace(/\/$/, '')));
    for (const folder of [...sourceFolders, 'tsconfig.json', 'tsconfig.build.json']) assert.ok(built.includes(folder), `the build stage copies ${folder}`);
    const buildConfig = read('tsconfig.build.json');
    for (const folder of sourceFolders) assert.ok(buildConfig.includes(`"${folder}"`), `tsconfig.build.json compiles ${folder}/`);
    const dist = finalStage.find((i) => copyFrom(i) === builder!.getBuildStage());
    assert.match(dist?.getArguments()[0]?.getValue() ?? '', /\/dist\/?$/, 'the runtime stage copies dist/ from the build stage');
    const copied = contextCopies(finalStage).flatMap((i) => i.getArguments().slice(0, -1).map((a) => a.getValue().replace(/\/$/, '')));
    for (const needed of ['bin', ...assets]) assert.ok(copied.includes(needed), `the runtime stage copies ${needed}`);
    for (const folder of sourceFolders) assert.ok(!copied.includes(folder), `the runtime stage ships no sources (${folder}/)`);
    // Every source of every context COPY exists and is in the context.
    for (const i of contextCopies(dockerfile.getInstructions())) {
      for (const source of i.getArguments().slice(0, -1).map((a) => a.getValue()).filter((s) => !s.includes('*'))) {
        assert.ok(existsSync(join(ROOT, source)), `COPY ${source}: no such file`);
        assert.ok(!ignored(source.replace(/\/$/, '')), `COPY ${source} is excluded by Dockerfile.dockerignore`);
        if (statSync(join(ROOT, source)).isDirectory()) {
          const code = readdirSync(join(ROOT, source), { recursive: true }).map(String).filter((f) => /\.(ts|js|mjs|hbs|html|css)$/.test(f));
          for (const f of code) assert.ok(!ignored(posix.join(source, f)), `${posix.join(source, f)} is excluded from the context`);
        }
      }
    }
  });
});

describe('docker/entrypoint.sh and docker/prestop.mjs', function () {
  it('reads the container-only variables the checks above allow', () => {
    const scripts = read('docker/entrypoint.sh') + read('docker/prestop.mjs');
    for (const name of CONTAINER_VARS) assert.ok(scripts.includes(name), name);
  });

  it('gives pod N of a StatefulSet port block N and announced address N', async () => {
    const env = await entrypointEnv({
      HOSTNAME: 'rc-relaycast-edge-eu-2',
      RELAYCAST_PORT_BLOCK_BASE: '41000',
      RELAYCAST_PORT_BLOCK_SIZE: '20',
      RELAYCAST_ANNOUNCED_IPS: '198.51.100.1,198.51.100.2,198.51.100.3',
      RELAYCAST_HTTP_PORT: '8081',
    });
    assert.deepEqual([env.RELAYCAST_RTC_MIN_PORT, env.RELAYCAST_RTC_MAX_PORT, env.RELAYCAST_ANNOUNCED_IP, env.RELAYCAST_PUBLIC_URL], ['41040', '41059', '198.51.100.3', 'http://198.51.100.3:8081']);
    const plain = await entrypointEnv({ HOSTNAME: 'rc-relaycast-edge-eu-2', RELAYCAST_RTC_MIN_PORT: '45000' });
    assert.equal(plain.RELAYCAST_RTC_MIN_PORT, '45000', 'without a block size nothing changes');
    assert.equal(plain.RELAYCAST_ANNOUNCED_IP, undefined);
    for (const bad of [{ HOSTNAME: 'no-index-here' }, { HOSTNAME: 'edge-5', RELAYCAST_ANNOUNCED_IPS: '198.51.100.1' }] as Record<string, string>[]) {
      await assert.rejects(entrypointEnv({ RELAYCAST_PORT_BLOCK_SIZE: '20', ...bad }), (e: { code?: number; stderr?: string }) => e.code === 2 && /entrypoint:/.test(e.stderr ?? ''));
    }
  });

  it('runs relaycast for a role or a relaycast command, anything else as given', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'relaycast-entrypoint-'));
    try {
      // A stand-in `node` that prints what it was asked to run.
      writeFileSync(join(bin, 'node'), '#!/bin/sh\necho "node $*"\n');
      chmodSync(join(bin, 'node'), 0o755);
      const run = async (...args: string[]) =>
        (await exec('sh', [join(ROOT, 'docker/entrypoint.sh'), ...args], { env: { PATH: `${bin}:${process.env.PATH}` }, timeout: 10_000 })).stdout.trim();
      assert.equal(await run('origin', 'edge', '--region', 'eu'), 'node /app/bin/relaycast.js origin edge --region eu');
      assert.equal(await run('drain', 'edge-1'), 'node /app/bin/relaycast.js drain edge-1');
      assert.equal(await run('--help'), 'node /app/bin/relaycast.js --help');
      assert.equal(await run('echo', 'hello'), 'hello');
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  /** A stand-in for the node the hook runs beside: its drain endpoint and its /metrics. */
  interface StubNode {
    /** Status of the n-th authorized drain request (from 0); 'hang' never answers. Default 200. */
    drain?: (n: number) => number | 'hang';
    /** What the n-th /metrics request reports. Default nothing carried. */
    load?: (n: number) => { streams: number; viewers: number };
    /** Accepts connections and drops them at once: a node that does not answer. */
    down?: boolean;
  }
  const SECRET = 'prestop-cluster-secret-of-32-chars';

  /** Runs prestop.mjs against a StubNode; what it logged, how long it took, what the node saw. */
  async function prestop(node: StubNode, env: Record<string, string>) {
    const seen = { connections: 0, drains: 0, authorized: 0, scrapes: 0, order: [] as string[] };
    const server = createServer((req, res) => {
      if (req.method === 'POST' && req.url === '/internal/v1/drain') {
        seen.drains++;
        seen.order.push('drain');
        if (req.headers.authorization !== `Bearer ${SECRET}`) {
          res.writeHead(401, { 'content-type': 'application/problem+json' }).end('{"status":401,"title":"Unauthorized"}');
          return;
        }
        const status = (node.drain ?? (() => 200))(seen.authorized++);
        if (status === 'hang') return;
        res.writeHead(status, { 'content-type': 'application/json' }).end(status === 200 ? '{"node":"stub-1","draining":true}' : `{"status":${status}}`);
      } else if (req.method === 'GET' && req.url === '/metrics') {
        seen.order.push('metrics');
        const { streams, viewers } = (node.load ?? (() => ({ streams: 0, viewers: 0 })))(seen.scrapes++);
        res.end(`# HELP relaycast_viewers x\nrelaycast_viewers{node="stub-1"} ${viewers}\nrelaycast_streams{node="stub-1"} ${streams}\nrelaycast_relays{node="stub-1",direction="in"} 7\n`);
      } else {
        res.writeHead(404).end();
      }
    });
    server.on('connection', (socket) => {
      seen.connections++;
      if (node.down) socket.destroy();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const child = spawn(process.execPath, [join(ROOT, 'docker/prestop.mjs')], {
        env: {
          PATH: process.env.PATH!,
          RELAYCAST_HTTP_PORT: String((server.address() as AddressInfo).port),
          RELAYCAST_CLUSTER_SECRET: SECRET,
          RELAYCAST_PRESTOP_POLL_MS: '100',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const started = Date.now();
      // Killed before any 30 s wait could end: exit code 0 means the hook stopped waiting by itself.
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const [code] = (await once(child, 'exit')) as [number | null];
      clearTimeout(timer);
      return { code, output, ms: Date.now() - started, ...seen };
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }

  // Every hook run starts at once (each takes up to a few seconds) and is awaited by its test.
  const runs: Record<string, ReturnType<typeof prestop>> = {};
  before(() => {
    const streamsEnd = (n: number) => ({ streams: n < 3 ? 2 : 0, viewers: 5 });
    runs.origin = prestop({ load: streamsEnd }, { RELAYCAST_PRESTOP_ROLE: 'origin', RELAYCAST_PRESTOP_WAIT_S: '30' });
    runs.originTimeout = prestop({ load: () => ({ streams: 3, viewers: 0 }) }, { RELAYCAST_PRESTOP_ROLE: 'origin', RELAYCAST_PRESTOP_WAIT_S: '1' });
    runs.edge = prestop({ load: () => ({ streams: 2, viewers: 7 }) }, { RELAYCAST_PRESTOP_ROLE: 'edge', RELAYCAST_PRESTOP_WAIT_S: '2' });
    runs.emptyEdge = prestop({}, { RELAYCAST_PRESTOP_ROLE: 'edge', RELAYCAST_PRESTOP_WAIT_S: '2' });
    runs.databaseBlip = prestop({ drain: (n) => (n < 2 ? 503 : 200) }, { RELAYCAST_PRESTOP_ROLE: 'edge', RELAYCAST_PRESTOP_WAIT_S: '0' });
    runs.wrongSecret = prestop({ load: streamsEnd }, { RELAYCAST_PRESTOP_ROLE: 'origin', RELAYCAST_CLUSTER_SECRET: 'not-the-cluster-secret' });
    runs.noSecret = prestop({}, { RELAYCAST_PRESTOP_ROLE: 'edge', RELAYCAST_PRESTOP_WAIT_S: '0', RELAYCAST_CLUSTER_SECRET: '' });
    runs.hung = prestop({ drain: () => 'hang', load: () => ({ streams: 1, viewers: 0 }) }, { RELAYCAST_PRESTOP_ROLE: 'origin', RELAYCAST_PRESTOP_WAIT_S: '30', RELAYCAST_PRESTOP_REQUEST_TIMEOUT_MS: '500' });
    runs.down = prestop({ down: true }, { RELAYCAST_PRESTOP_ROLE: 'edge', RELAYCAST_PRESTOP_WAIT_S: '30' });
  });

  it('preStop drains through the node\'s drain endpoint with the cluster secret; an origin then waits until its streams end', async () => {
    const r = await runs.origin!;
    assert.equal(r.code, 0, r.output);
    assert.deepEqual([r.drains, r.authorized], [1, 1], `one drain request, with the cluster secret\n${r.output}`);
    assert.equal(r.order[0], 'drain', 'drained before the wait');
    assert.match(r.output, /drained \(\{"node":"stub-1","draining":true\}\)/);
    assert.match(r.output, /no streams left/);
    assert.equal(r.scrapes, 4, 'polled /metrics until the streams were gone, its viewers (relays) notwithstanding');
    assert.doesNotMatch(r.output, /wait over/, 'ended when the streams did, not at the 30 s wait');
  });

  it('preStop: an origin gives up at RELAYCAST_PRESTOP_WAIT_S, with streams still live', async () => {
    const r = await runs.originTimeout!;
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /wait over \(1 s\) with 3 streams left/);
    assert.ok(r.ms >= 1000, `gave up after ${r.ms} ms, not before the 1 s wait`);
  });

  it('preStop: an edge waits RELAYCAST_PRESTOP_WAIT_S, viewers or not, and leaves its viewers to SIGTERM', async () => {
    for (const [r, viewers] of [[await runs.edge!, 7], [await runs.emptyEdge!, 0]] as const) {
      assert.equal(r.code, 0, r.output);
      assert.equal(r.authorized, 1, r.output);
      assert.equal(r.order[0], 'drain', 'drained before the wait');
      // The wait is for the balancers and endpoints to stop sending viewers: an empty edge waits it too.
      const waited = Number(/waited ([\d.]+) s/.exec(r.output)?.[1]);
      assert.ok(waited >= 2, `waited the 2 s (${waited} s)\n${r.output}`);
      assert.ok(r.scrapes <= 1, `does not poll for viewers to leave (${r.scrapes} scrapes)`);
      assert.match(r.output, new RegExp(`SIGTERM moves the ${viewers} viewers left`));
    }
  });

  it('preStop retries a drain the node could not record (503), and takes no for an answer (401)', async () => {
    const blip = await runs.databaseBlip!;
    assert.equal(blip.code, 0, blip.output);
    assert.equal(blip.drains, 3, `two 503s, then 200\n${blip.output}`);
    assert.match(blip.output, /drain attempt 1: HTTP 503/);
    assert.match(blip.output, /drained/);

    const refused = await runs.wrongSecret!;
    assert.equal(refused.code, 0, refused.output);
    assert.deepEqual([refused.drains, refused.authorized], [1, 0], `no retry after a 401\n${refused.output}`);
    assert.match(refused.output, /HTTP 401[\s\S]*could not drain the node; going on[\s\S]*no streams left/, 'then waits all the same');

    const none = await runs.noSecret!;
    assert.equal(none.code, 0, none.output);
    assert.equal(none.drains, 0);
    assert.match(none.output, /RELAYCAST_CLUSTER_SECRET is not set/);
  });

  it('preStop never blocks on a node that does not answer: bounded requests, a few tries, no wait', async () => {
    const hung = await runs.hung!;
    assert.equal(hung.code, 0, hung.output);
    assert.ok(hung.drains >= 1, 'the requests reached the node');
    assert.equal(hung.output.match(/drain attempt \d: no answer within 500 ms/g)?.length, 3, `three tries, each given up after 0.5 s\n${hung.output}`);
    assert.match(hung.output, /could not drain the node; going on\n.*does not answer; not waiting/);
    assert.equal(hung.scrapes, 0);

    const down = await runs.down!;
    assert.equal(down.code, 0, down.output);
    assert.ok(down.connections >= 3, `three tries (${down.connections} connections)\n${down.output}`);
    assert.equal(down.output.match(/drain attempt \d: /g)?.length, 3, down.output);
    assert.match(down.output, /does not answer; not waiting/);
  });
});

describe('docker/helm/relaycast (helm template, Kubernetes schemas)', function () {
  /** Values scenarios: the defaults (plus the one required value), and the chart's ci/ files. */
  const SCENARIOS: Record<string, { args: string[]; externalSecrets: string[] }> = {
    default: { args: ['--set', 'database.existingSecret=postgres-app'], externalSecrets: ['postgres-app'] },
    keda: { args: ['-f', join(CHART, 'ci/keda-values.yaml')], externalSecrets: ['postgres-app', 'relaycast-auth'] },
    hpa: { args: ['-f', join(CHART, 'ci/hpa-values.yaml')], externalSecrets: [] },
    portrange: { args: ['-f', join(CHART, 'ci/portrange-values.yaml')], externalSecrets: ['postgres-app'] },
    tls: { args: ['-f', join(CHART, 'ci/tls-values.yaml')], externalSecrets: ['postgres-app'] },
    recording: { args: ['-f', join(CHART, 'ci/recording-values.yaml')], externalSecrets: ['postgres-app', 'recordings-s3'] },
    // The user's own claim, mounted by StatefulSets.
    recordingClaim: { args: ['-f', join(CHART, 'ci/portrange-values.yaml'), '--set', 'recording.persistence.enabled=true', '--set', 'recording.persistence.existingClaim=recordings-nfs'], externalSecrets: ['postgres-app'] },
    rtmp: { args: ['-f', join(CHART, 'ci/rtmp-values.yaml')], externalSecrets: ['postgres-app'] },
    // HAProxy's RTMP on a port of one's own, forwarding to origins reached at their announced addresses.
    rtmpPortRange: { args: ['-f', join(CHART, 'ci/portrange-values.yaml'), '--set', 'balancer.haproxy.rtmp.enabled=true', '--set', 'balancer.haproxy.rtmp.port=1940'], externalSecrets: ['postgres-app'] },
  };
  const HOST_IP = '192.0.2.50';
  let cache: string;
  /** Stand-ins for the files of the user's TLS Secret (see loadable). */
  let tlsFiles: { cert: string; key: string };
  const rendered: Record<string, K8sObject[]> = {};

  const template = (args: string[]) => helm(['template', 'rc', CHART, '--namespace', 'live', '--kube-version', '1.30.0', ...args], cache);
  const byKind = (scenario: string, kind: string) => rendered[scenario]!.filter((o) => o.kind === kind);
  const find = (scenario: string, kind: string, name: string) => rendered[scenario]!.find((o) => o.kind === kind && o.metadata.name === name);
  type Container = { name: string; args?: string[]; env?: { name: string; value?: string; valueFrom?: Record<string, Record<string, string>> }[]; ports?: { name?: string; containerPort: number; protocol?: string }[]; [key: string]: unknown };
  type PodTemplate = { metadata: { labels: Record<string, string> }; spec: { containers: Container[]; hostNetwork?: boolean; dnsPolicy?: string; terminationGracePeriodSeconds?: number; securityContext?: Record<string, unknown>; volumes?: { name: string }[]; [key: string]: unknown } };
  const workloads = (scenario: string) => rendered[scenario]!.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind));
  const podOf = (o: K8sObject) => (o.spec as { template: PodTemplate }).template;
  const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
  const component = (o: K8sObject) => podOf(o).metadata.labels['app.kubernetes.io/component'];

  /** A container's environment as the kubelet (and, in a StatefulSet, the entrypoint) would give it to relaycast. */
  async function resolvedEnv(o: K8sObject, c: Container, podIndex = 0): Promise<Record<string, string>> {
    const podName = o.kind === 'StatefulSet' ? `${o.metadata.name}-${podIndex}` : `${o.metadata.name}-5d9c7b-x2x7q`;
    const env: Record<string, string> = {};
    for (const e of c.env ?? []) {
      let value: string;
      if (e.valueFrom?.secretKeyRef) value = e.name === 'DATABASE_URL' ? 'postgres://relaycast:pw@postgres.db.svc:5432/relaycast' : 'a-secret-value-of-32-characters!';
      else if (e.valueFrom?.fieldRef) value = { 'metadata.name': podName, 'status.hostIP': HOST_IP, 'status.podIP': '10.1.2.3' }[e.valueFrom.fieldRef.fieldPath!] ?? assert.fail(`${describeObject(o)}: unexpected fieldRef ${e.valueFrom.fieldRef.fieldPath}`);
      else value = String(e.value ?? '');
      // $(VAR) of a variable defined earlier in the list is replaced; $$ escapes.
      env[e.name] = value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, name?: string) => (name === undefined ? '$' : name in env ? env[name]! : all));
    }
    if (o.kind === 'StatefulSet') return entrypointEnv({ HOSTNAME: podName, ...env });
    return env;
  }

  /**
   * The environment with the TLS file paths pointed at files that exist here: loadConfig checks
   * that RELAYCAST_TLS_CERT and RELAYCAST_TLS_KEY exist, and in the pod they are the user's Secret,
   * mounted by the kubelet (that the mount is where they point is checked on its own, below).
   */
  function loadable(env: Record<string, string>): Record<string, string> {
    return { ...env, ...(env.RELAYCAST_TLS_CERT && { RELAYCAST_TLS_CERT: tlsFiles.cert }), ...(env.RELAYCAST_TLS_KEY && { RELAYCAST_TLS_KEY: tlsFiles.key }) };
  }

  before(async function () {
    cache = mkdtempSync(join(tmpdir(), 'relaycast-helm-'));
    tlsFiles = { cert: join(cache, 'tls.crt'), key: join(cache, 'tls.key') };
    writeFileSync(tlsFiles.cert, '');
    writeFileSync(tlsFiles.key, '');
    await Promise.all(
      Object.entries(SCENARIOS).map(async ([name, { args }]) => {
        const result = await template(args);
        assert.equal(result.code, 0, `helm template (${name}): ${result.stderr}`);
        rendered[name] = parseAllDocuments(result.stdout)
          .map((d) => d.toJS() as K8sObject | null)
          .filter((o): o is K8sObject => o !== null);
      }),
    );
  });
  after(() => rmSync(cache, { recursive: true, force: true }));

  it('lints clean with helm lint --strict, for the defaults and every ci/ values file', async () => {
    for (const [name, { args }] of Object.entries(SCENARIOS)) {
      const result = await helm(['lint', '--strict', CHART, ...args], cache);
      assert.equal(result.code, 0, `helm lint (${name}): ${result.stdout}${result.stderr}`);
    }
  });

  it('renders objects the Kubernetes schemas accept, with no unknown fields and valid names', async () => {
    const all = Object.values(rendered).flat();
    assert.deepEqual(await schemaErrors(all), []);
    assert.deepEqual(typeErrors(all), []);
    for (const [name, objects] of Object.entries(rendered)) assert.deepEqual(apiServerRuleErrors(objects), [], name);
    const kinds = new Set(all.map((o) => o.kind));
    for (const kind of ['Deployment', 'StatefulSet', 'Service', 'Secret', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ScaledObject', 'ServiceMonitor', 'PrometheusRule', 'PersistentVolumeClaim']) assert.ok(kinds.has(kind), `some scenario renders a ${kind}`);
  });

  it('catches a misspelt field, a wrong type and a bad name (the checks above can fail)', async () => {
    const broken = (change: (d: K8sObject, c: Container) => void) => {
      const deployment = structuredClone(workloads('default')[0]!);
      change(deployment, podOf(deployment).spec.containers[0]!);
      return deployment;
    };
    const misspelt = broken((_, c) => (c.readinesProbe = c.readinessProbe));
    const wrongType = broken((_, c) => ((c.ports![0] as { containerPort: unknown }).containerPort = 'http'));
    const badName = broken((d) => (d.metadata.name = 'Not_A_Name'));
    assert.match((await schemaErrors([wrongType])).join('\n'), /containerPort must be integer/);
    assert.match(typeErrors([misspelt, wrongType]).join('\n'), /readinesProbe.*\n.*not assignable to type 'number'/);
    assert.match(apiServerRuleErrors([badName]).join('\n'), /invalid name/);
    assert.match((await schemaErrors([{ apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 'x' } }])).join('\n'), /no schema known/);
  });

  it('refuses values it cannot run with, saying why', async () => {
    const refusals: [string[], RegExp][] = [
      [[], /needs Postgres: set database.existingSecret/],
      [['--set', 'database.url=postgres://x', '--set', 'edges.regions[0].name=EU'], /Does not match pattern/],
      [['--set', 'database.url=postgres://x', '--set', 'edges.defaults.replcias=2'], /Additional property replcias is not allowed/],
      [['--set', 'database.url=postgres://x', '--set', 'network.mode=portRange'], /portRange.announcedIps per pod/],
      [['--set', 'database.url=postgres://x', '--set', 'auth.clusterSecret=short'], /at least 16 characters/],
      [['--set', 'database.url=postgres://x', '--set', 'edges.defaults.terminationGracePeriodSeconds=40'], /rc-relaycast-edge-eu: terminationGracePeriodSeconds \(40\) must cover the preStop wait .* at least 45/],
      [['--set', 'database.url=postgres://x', '--set', 'edges.defaults.extraEnv[0].name=RELAYCAST_DRAIN_TIMEOUT_MS', '--set-string', 'edges.defaults.extraEnv[0].value=60000'], /\(RELAYCAST_DRAIN_TIMEOUT_MS, 60 s\) and 15 s to leave the cluster: at least 85/],
      [['--set', 'database.url=postgres://x', '--set', 'origins.terminationGracePeriodSeconds=30'], /origins.terminationGracePeriodSeconds: Must be greater than or equal to 60/],
      [['-f', join(CHART, 'ci/tls-values.yaml'), '--set', 'balancer.haproxy.enabled=false'], /balancer.tls.secretName needs balancer.haproxy.enabled: HAProxy terminates TLS/],
      [['-f', join(CHART, 'ci/tls-values.yaml'), '--set', 'balancer.publicUrl=http://live.example.com'], /balancer.publicUrl \(http:\/\/live.example.com\) must be https:\/\/ with balancer.tls.secretName/],
      [['-f', join(CHART, 'ci/tls-values.yaml'), '--set', 'balancer.tls.plainPort=8080'], /balancer.tls.plainPort \(8080\) must differ from balancer.httpPort/],
      [['--set', 'database.url=postgres://x', '--set', 'recording.s3.url=https://recordings.example.com'], /recording.s3.url: Does not match pattern/],
      [['--set', 'database.url=postgres://x', '--set', 'recording.s3.existingSecret=recordings-s3'], /recording.s3: endpoint, region and existingSecret are for the bucket in recording.s3.url/],
      [['--set', 'database.url=postgres://x', '--set', 'recording.persistence.accessModes[0]=ReadWriteSome'], /recording.persistence.accessModes.0/],
      [['-f', join(CHART, 'ci/rtmp-values.yaml'), '--set', 'balancer.haproxy.rtmp.port=0'], /balancer.haproxy.rtmp.port: Must be greater than or equal to 1/],
      [['-f', join(CHART, 'ci/rtmp-values.yaml'), '--set-string', 'balancer.haproxy.rtmp.port=1935'], /balancer.haproxy.rtmp.port: Invalid type. Expected: integer, given: string/],
      [['-f', join(CHART, 'ci/rtmp-values.yaml'), '--set', 'balancer.haproxy.rtmp.prot=1935'], /Additional property prot is not allowed/],
      [['-f', join(CHART, 'ci/rtmp-values.yaml'), '--set', 'balancer.haproxy.enabled=false'], /balancer.haproxy.rtmp.enabled needs balancer.haproxy.enabled/],
      [['-f', join(CHART, 'ci/rtmp-values.yaml'), '--set', 'balancer.haproxy.rtmp.port=8000'], /balancer.haproxy.rtmp.port \(8000\) must differ from the balancer's other ports/],
      [['-f', join(CHART, 'ci/tls-values.yaml'), '--set', 'balancer.haproxy.rtmp.enabled=true', '--set', 'balancer.haproxy.rtmp.port=443'], /balancer.haproxy.rtmp.port \(443\) must differ from .*the Service's port and tls.plainPort/],
    ];
    for (const [args, message] of refusals) {
      const result = await template(args);
      assert.notEqual(result.code, 0, `helm template ${args.join(' ')} should fail`);
      assert.match(result.stderr, message);
    }
  });

  it('gives every container a configuration its own loader accepts', async () => {
    for (const scenario of Object.keys(SCENARIOS)) {
      for (const o of workloads(scenario)) {
        for (const c of podOf(o).spec.containers) {
          const roles = (c.args ?? []).filter((a) => !a.startsWith('-'));
          assert.ok(roles.length > 0, `${describeObject(o)}: a role`);
          const config = nodeConfig(`${scenario} ${describeObject(o)}`, roles, loadable(await resolvedEnv(o, c)));
          assert.equal(config.nodeId.startsWith(o.metadata.name), true, `${describeObject(o)}: the node id is the pod name`);
          assert.ok(config.databaseUrl && config.clusterSecret, `${describeObject(o)}: database and cluster secret`);
          if (roles.includes('balancer')) assert.ok(config.adminToken, 'the balancer has the admin token');
        }
      }
    }
  });

  it('wires selectors, named ports, Secrets, probes, PDBs and autoscaler targets together', () => {
    for (const [scenario, { externalSecrets }] of Object.entries(SCENARIOS)) {
      const pods = workloads(scenario).map((o) => ({ o, pod: podOf(o) }));
      for (const { o, pod } of pods) {
        assert.ok(matches((o.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels, pod.metadata.labels), `${describeObject(o)}: selector matches its pods`);
        for (const c of pod.spec.containers) {
          const ports = new Set((c.ports ?? []).map((p) => p.name));
          for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe'] as const) {
            const get = (c[probe] as { httpGet?: { port: string | number; path: string } } | undefined)?.httpGet;
            assert.ok(get, `${describeObject(o)}: ${probe}`);
            assert.ok(typeof get.port === 'number' || ports.has(get.port), `${describeObject(o)}: ${probe} port ${get.port}`);
          }
          assert.equal((c.readinessProbe as { httpGet: { path: string } }).httpGet.path, '/readyz');
          assert.equal((c.livenessProbe as { httpGet: { path: string } }).httpGet.path, '/healthz');
          for (const e of c.env ?? []) {
            const ref = e.valueFrom?.secretKeyRef;
            if (!ref) continue;
            const secret = find(scenario, 'Secret', ref.name!) as { data?: Record<string, string>; stringData?: Record<string, string> } | undefined;
            if (secret) assert.ok(ref.key! in { ...secret.data, ...secret.stringData }, `${scenario}: Secret ${ref.name} has key ${ref.key}`);
            else assert.ok(externalSecrets.includes(ref.name!), `${scenario}: ${describeObject(o)} reads Secret ${ref.name}, which is neither rendered nor the user's`);
          }
        }
      }
      for (const svc of byKind(scenario, 'Service')) {
        const spec = svc.spec as { selector?: Record<string, string>; ports: { name: string; targetPort: string | number; port: number; protocol?: string }[] };
        const podName = spec.selector?.['statefulset.kubernetes.io/pod-name'];
        const selected = podName
          ? pods.filter(({ o }) => o.kind === 'StatefulSet' && podName.startsWith(`${o.metadata.name}-`))
          : pods.filter(({ pod }) => matches(spec.selector ?? {}, pod.metadata.labels));
        assert.ok(selected.length > 0, `${scenario}: Service ${svc.metadata.name} selects no pods`);
        for (const p of spec.ports.filter((x) => typeof x.targetPort === 'string')) {
          for (const { o, pod } of selected) assert.ok(pod.spec.containers.some((c) => c.ports?.some((cp) => cp.name === p.targetPort)), `${scenario}: Service ${svc.metadata.name} port ${p.name} → ${describeObject(o)} has no port ${p.targetPort}`);
        }
      }
      for (const pdb of byKind(scenario, 'PodDisruptionBudget')) {
        const selector = (pdb.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
        assert.equal(pods.filter(({ pod }) => matches(selector, pod.metadata.labels)).length, 1, `${scenario}: PDB ${pdb.metadata.name} covers one workload`);
      }
      for (const s of byKind(scenario, 'StatefulSet')) {
        const headless = find(scenario, 'Service', (s.spec as { serviceName: string }).serviceName);
        assert.equal((headless?.spec as { clusterIP?: string } | undefined)?.clusterIP, 'None', `${describeObject(s)}: its headless Service`);
      }
      for (const scaler of [...byKind(scenario, 'HorizontalPodAutoscaler'), ...byKind(scenario, 'ScaledObject')]) {
        const ref = (scaler.spec as { scaleTargetRef: { kind: string; name: string } }).scaleTargetRef;
        const target = find(scenario, ref.kind, ref.name);
        assert.ok(target, `${scenario}: ${describeObject(scaler)} scales ${ref.kind}/${ref.name}, which is not rendered`);
        assert.equal((target.spec as { replicas?: number }).replicas, undefined, `${describeObject(target)}: replicas are the autoscaler's`);
      }
      for (const monitor of byKind(scenario, 'ServiceMonitor')) {
        const spec = monitor.spec as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] };
        const services = byKind(scenario, 'Service').filter((s) => matches(spec.selector.matchLabels, s.metadata.labels ?? {}));
        assert.equal(services.length, 1, 'the ServiceMonitor selects the metrics Service');
        const ports = (services[0]!.spec as { ports: { name: string }[] }).ports.map((p) => p.name);
        assert.ok(spec.endpoints.every((e) => ports.includes(e.port) && e.path === '/metrics'));
        const selected = pods.filter(({ pod }) => matches((services[0]!.spec as { selector: Record<string, string> }).selector, pod.metadata.labels));
        assert.deepEqual(new Set(selected.map(({ o }) => component(o))), new Set(['balancer', 'origin', 'edge']), 'every node is scraped');
      }
    }
  });

  it('renders the alerting rules file into the PrometheusRule, its job the ServiceMonitor\'s (or prometheusRule.job)', async () => {
    const file = readFileSync(join(CHART, 'files/relaycast-alerts.yml'), 'utf8');
    const groupsFor = (job: string) => (parseYaml(file.replaceAll('job="relaycast"', `job="${job}"`)) as { groups: unknown[] }).groups;
    assert.ok(file.includes('job="relaycast"'), 'the rules select the job by name');
    const [rule, ...more] = byKind('keda', 'PrometheusRule');
    assert.ok(rule && more.length === 0, 'one PrometheusRule');
    assert.equal(rule.metadata.labels?.release, 'kube-prometheus-stack', 'prometheusRule.labels');
    // prometheus-operator names a ServiceMonitor's job after the Service it selects.
    const [monitor] = byKind('keda', 'ServiceMonitor');
    const selector = (monitor!.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
    const [service, ...others] = byKind('keda', 'Service').filter((s) => matches(selector, s.metadata.labels ?? {}));
    assert.ok(service && others.length === 0);
    assert.deepEqual((rule.spec as { groups: unknown[] }).groups, groupsFor(service.metadata.name));
    assert.equal(byKind('default', 'PrometheusRule').length, 0, 'off by default');
    const result = await template(['-f', join(CHART, 'ci/keda-values.yaml'), '--set', 'prometheusRule.job=relaycast-nodes']);
    assert.equal(result.code, 0, result.stderr);
    const [own] = parseAllDocuments(result.stdout).map((d) => d.toJS() as K8sObject | null).filter((o) => o?.kind === 'PrometheusRule');
    assert.deepEqual((own!.spec as { groups: unknown[] }).groups, groupsFor('relaycast-nodes'));
  });

  it('drains origins and edges before they stop (preStop), within their grace period; pods run as non-root', async () => {
    /** Grace period, preStop wait and drain timeout, by scenario and role. */
    const shutdowns: Record<string, [number, number, number]> = {};
    for (const scenario of Object.keys(SCENARIOS)) {
      for (const o of workloads(scenario)) {
        const pod = podOf(o);
        assert.equal(pod.spec.securityContext?.runAsNonRoot, true, `${describeObject(o)}: runAsNonRoot`);
        for (const c of pod.spec.containers) {
          // A read-only root needs writable places for what the node writes: tsx's cache, the data dir.
          if (!(c.securityContext as { readOnlyRootFilesystem?: boolean } | undefined)?.readOnlyRootFilesystem) continue;
          const mounts = (c.volumeMounts ?? []) as { name: string; mountPath: string }[];
          for (const path of ['/tmp', DATA_DIR]) assert.ok(mounts.some((m) => m.mountPath === path), `${describeObject(o)}: ${path} is writable`);
          for (const m of mounts) assert.ok(pod.spec.volumes?.some((v) => v.name === m.name), `${describeObject(o)}: volume ${m.name}`);
        }
        if (!['origin', 'edge'].includes(component(o)!)) continue;
        const c = pod.spec.containers[0]!;
        const command = (c.lifecycle as { preStop?: { exec?: { command: string[] } } } | undefined)?.preStop?.exec?.command ?? [];
        assert.deepEqual(command, ['node', '/app/docker/prestop.mjs'], `${describeObject(o)}: preStop drains`);
        const env = await resolvedEnv(o, c);
        const role = component(o)!;
        assert.equal(env.RELAYCAST_PRESTOP_ROLE, role, `${describeObject(o)}: the hook knows what to wait for`);
        const wait = Number(env.RELAYCAST_PRESTOP_WAIT_S);
        const grace = pod.spec.terminationGracePeriodSeconds!;
        // After the hook, SIGTERM: an edge moves its viewers (drainTimeoutMs), then the node leaves the cluster.
        const config = nodeConfig(describeObject(o), [role], env);
        const shutdown = config.drainTimeoutMs / 1000 + 15;
        assert.ok(Number.isInteger(wait) && wait >= 0 && grace >= wait + shutdown, `${describeObject(o)}: grace ${grace} s covers the preStop wait (${wait} s) and the shutdown (${shutdown} s)`);
        if (role === 'edge') {
          // Viewers are moved, not waited for: the wait is for balancers and endpoints to stop sending new ones.
          assert.ok(wait >= 5 && wait <= 30, `${describeObject(o)}: a short preStop wait (${wait} s)`);
          assert.ok(grace <= wait + shutdown + 60, `${describeObject(o)}: a rollout is not held minutes per edge (grace ${grace} s)`);
        } else {
          assert.ok(wait >= 600, `${describeObject(o)}: shows get minutes to end, not seconds (${wait} s)`);
        }
        shutdowns[`${scenario} ${role}`] = [grace, wait, config.drainTimeoutMs];
      }
    }
    assert.deepEqual(shutdowns['default edge'], [60, 10, 20_000], 'edges by default: a minute, a 10 s wait, 20 s to move the viewers');
    assert.deepEqual(shutdowns['default origin'], [3600, 3540, 20_000], 'origins by default: an hour for shows to end');
    assert.deepEqual(shutdowns['hpa edge'], [90, 15, 40_000], 'edges with their own wait and drain timeout (ci/hpa-values.yaml)');
  });

  it('runs one edge workload per region, origins and a balancer whose Service points at HAProxy', async () => {
    for (const [scenario, values] of [['default', ['eu', 'us']], ['keda', ['eu', 'us-east', 'ap']]] as const) {
      const edges = workloads(scenario).filter((o) => component(o) === 'edge');
      const regions = await Promise.all(edges.map(async (o) => (await resolvedEnv(o, podOf(o).spec.containers[0]!)).RELAYCAST_REGION));
      assert.deepEqual(regions.sort(), [...values].sort(), scenario);
      assert.equal(workloads(scenario).filter((o) => component(o) === 'origin').length, 1);
    }
    const eu = find('keda', 'Deployment', 'rc-relaycast-edge-eu')!;
    assert.deepEqual(podOf(eu).spec.nodeSelector, { 'topology.kubernetes.io/region': 'eu-central-1' }, 'a region\'s nodeSelector');
    assert.equal((podOf(eu).spec.tolerations as unknown[]).length, 1, 'tolerations from edges.defaults');
    assert.ok(podOf(find('keda', 'Deployment', 'rc-relaycast-edge-ap')!).spec.affinity, 'a region\'s affinity');
    assert.ok(find('keda', 'PodDisruptionBudget', 'rc-relaycast-edge-eu'), 'edges.defaults.pdb');
    assert.equal(find('keda', 'PodDisruptionBudget', 'rc-relaycast-edge-ap'), undefined, 'a region turns its PDB off (false overrides a default)');
    for (const [scenario, target] of [['default', 'haproxy'], ['hpa', 'http']] as const) {
      const svc = find(scenario, 'Service', 'rc-relaycast-balancer')!;
      assert.equal((svc.spec as { ports: { targetPort: string }[] }).ports[0]!.targetPort, target, `${scenario}: the balancer Service's target`);
      const balancer = find(scenario, 'Deployment', 'rc-relaycast-balancer')!;
      const env = await resolvedEnv(balancer, podOf(balancer).spec.containers[0]!);
      assert.equal(env.RELAYCAST_HAPROXY_BIN, target === 'haproxy' ? 'haproxy' : undefined);
    }
  });

  it('hostNetwork by default: the node\'s address announced, ports declared for the scheduler, replaced in place', async () => {
    for (const o of workloads('default').filter((w) => component(w) !== 'balancer')) {
      const pod = podOf(o);
      assert.equal(o.kind, 'Deployment');
      assert.equal(pod.spec.hostNetwork, true, describeObject(o));
      assert.equal(pod.spec.dnsPolicy, 'ClusterFirstWithHostNet', `${describeObject(o)} resolves cluster names`);
      const config = nodeConfig(describeObject(o), [component(o)!], await resolvedEnv(o, pod.spec.containers[0]!));
      assert.equal(config.announcedIp, HOST_IP);
      assert.equal(config.publicUrl, `http://${HOST_IP}:${config.httpPort}`);
      const declared = pod.spec.containers[0]!.ports!.map((p) => p.containerPort);
      assert.ok(declared.includes(config.httpPort), `${describeObject(o)}: the HTTP port is declared, so two such pods never share a node`);
      assert.equal((o.spec as { strategy: { rollingUpdate: { maxSurge: number } } }).strategy.rollingUpdate.maxSurge, 0);
    }
    const origin = find('default', 'Deployment', 'rc-relaycast-origin')!;
    const edge = find('default', 'Deployment', 'rc-relaycast-edge-eu')!;
    const [o, e] = await Promise.all([origin, edge].map(async (w) => nodeConfig(describeObject(w), [component(w)!], await resolvedEnv(w, podOf(w).spec.containers[0]!))));
    assert.ok(!overlaps([o!.rtcMinPort, o!.rtcMaxPort], [e!.rtcMinPort, e!.rtcMaxPort]) && o!.httpPort !== e!.httpPort, 'an origin and an edge can share a node');
    const fixed = find('hpa', 'Deployment', 'rc-relaycast-edge-eu')!;
    assert.equal(nodeConfig('hpa edge', ['edge'], await resolvedEnv(fixed, podOf(fixed).spec.containers[0]!)).announcedIp, '203.0.113.10', 'network.announcedIp');
  });

  it('portRange: StatefulSets whose pods each take their port block and address, published by a Service per pod', async () => {
    const sets = byKind('portrange', 'StatefulSet');
    assert.deepEqual(sets.map((s) => s.metadata.name).sort(), ['rc-relaycast-edge-eu', 'rc-relaycast-edge-us', 'rc-relaycast-origin']);
    const values = parseYaml(readFileSync(join(CHART, 'ci/portrange-values.yaml'), 'utf8')) as { edges: { regions: { name: string; autoscaling: { maxReplicas: number } }[] } };
    for (const s of sets) {
      const pod = podOf(s);
      assert.notEqual(pod.spec.hostNetwork, true);
      const edgeRegion = values.edges.regions.find((r) => s.metadata.name.endsWith(`-edge-${r.name}`));
      const pods = edgeRegion ? edgeRegion.autoscaling.maxReplicas : (s.spec as { replicas: number }).replicas;
      const perPod = byKind('portrange', 'Service').filter((svc) => (svc.spec as { selector?: Record<string, string> }).selector?.['statefulset.kubernetes.io/pod-name']?.startsWith(`${s.metadata.name}-`));
      assert.equal(perPod.length, pods, `${describeObject(s)}: a Service for each pod it may have`);
      const blocks: [number, number][] = [];
      for (let i = 0; i < pods; i++) {
        const config = nodeConfig(`${describeObject(s)} pod ${i}`, [component(s)!], await resolvedEnv(s, pod.spec.containers[0]!, i));
        const svc = perPod.find((x) => x.metadata.name === `${s.metadata.name}-${i}`)!;
        const spec = svc.spec as { type: string; loadBalancerIP?: string; ports: { port: number; targetPort: number | string; protocol: string }[] };
        assert.equal(spec.type, 'LoadBalancer');
        assert.equal(spec.loadBalancerIP, config.announcedIp, `${svc.metadata.name}: the pod's announced address`);
        assert.equal(config.publicUrl, `http://${config.announcedIp}:${config.httpPort}`);
        const udp = spec.ports.filter((p) => p.protocol === 'UDP').map((p) => p.port);
        assert.deepEqual(udp, range(config.rtcMinPort, config.rtcMaxPort), `${svc.metadata.name} publishes the pod's block`);
        assert.ok(spec.ports.every((p) => typeof p.targetPort === 'string' || p.targetPort === p.port), 'media ports one-to-one');
        assert.equal(spec.ports.filter((p) => p.protocol === 'TCP' && typeof p.targetPort === 'number').length, udp.length, 'ICE-TCP too (perPodService.iceTcp)');
        for (const b of blocks) assert.ok(!overlaps(b, [config.rtcMinPort, config.rtcMaxPort]), 'pods take distinct blocks');
        blocks.push([config.rtcMinPort, config.rtcMaxPort]);
      }
    }
  });

  it('autoscaling: off by default; per region, a KEDA ScaledObject or an HPA on relaycast_region_desired_edges', () => {
    assert.equal(byKind('default', 'ScaledObject').length + byKind('default', 'HorizontalPodAutoscaler').length, 0);
    for (const o of workloads('default')) assert.ok((o.spec as { replicas?: number }).replicas! > 0, `${describeObject(o)}: replicas set`);

    const scaled = byKind('keda', 'ScaledObject');
    assert.deepEqual(scaled.map((s) => s.metadata.labels!['relaycast.io/region']).sort(), ['ap', 'eu', 'us-east']);
    for (const s of scaled) {
      const region = s.metadata.labels!['relaycast.io/region'];
      const spec = s.spec as { scaleTargetRef: { name: string }; minReplicaCount: number; maxReplicaCount: number; triggers: { type: string; metadata: Record<string, string> }[] };
      assert.equal(spec.scaleTargetRef.name, `rc-relaycast-edge-${region}`);
      const [trigger] = spec.triggers;
      assert.equal(trigger!.type, 'prometheus');
      assert.equal(trigger!.metadata.query, `max(relaycast_region_desired_edges{region="${region}"})`);
      assert.equal(trigger!.metadata.threshold, '1', 'one replica per unit of the gauge');
      assert.equal(trigger!.metadata.serverAddress, 'http://kube-prometheus-stack-prometheus.monitoring.svc:9090');
    }
    const eu = scaled.find((s) => s.metadata.name === 'rc-relaycast-edge-eu')!.spec as { minReplicaCount: number; maxReplicaCount: number };
    assert.deepEqual([eu.minReplicaCount, eu.maxReplicaCount], [2, 20], 'a region\'s own bounds');

    const hpas = byKind('hpa', 'HorizontalPodAutoscaler');
    assert.equal(hpas.length, 2);
    for (const h of hpas) {
      const region = h.metadata.labels!['relaycast.io/region'];
      const [metric] = (h.spec as { metrics: { type: string; external: { metric: { name: string; selector: { matchLabels: Record<string, string> } }; target: { type: string; averageValue: string } } }[] }).metrics;
      assert.equal(metric!.type, 'External');
      assert.equal(metric!.external.metric.name, 'relaycast_region_desired_edges');
      assert.deepEqual(metric!.external.metric.selector.matchLabels, { region });
      assert.deepEqual(metric!.external.target, { type: 'AverageValue', averageValue: '1' });
    }
    for (const s of byKind('portrange', 'ScaledObject')) assert.equal((s.spec as { scaleTargetRef: { kind: string } }).scaleTargetRef.kind, 'StatefulSet', 'portRange scales StatefulSets');
  });

  it('HTTPS at the balancer (balancer.tls): the Secret\'s certificate for HAProxy, nodes behind /n/{node}, probes on plain HTTP', async () => {
    for (const scenario of ['default', 'keda', 'hpa', 'portrange']) {
      for (const o of workloads(scenario)) {
        const env = await resolvedEnv(o, podOf(o).spec.containers[0]!);
        assert.equal(env.RELAYCAST_TLS_CERT ?? env.RELAYCAST_NODE_URLS, undefined, `${scenario} ${describeObject(o)}: no TLS unless asked for`);
      }
    }
    const balancer = find('tls', 'Deployment', 'rc-relaycast-balancer')!;
    const pod = podOf(balancer);
    const c = pod.spec.containers[0]!;
    const env = await resolvedEnv(balancer, c);
    const config = nodeConfig('tls balancer', ['balancer'], loadable(env));
    assert.equal(config.nodeUrls, 'balancer', 'browsers are sent to <publicUrl>/n/<node>, not to the nodes\' http:// addresses');
    assert.equal(config.publicUrl, 'https://live.example.com');
    assert.equal(env.RELAYCAST_HAPROXY_BIN, 'haproxy', 'HAProxy terminates TLS');
    assert.ok(config.tlsCert && config.tlsKey, 'the balancer has a certificate and key');

    // The user's kubernetes.io/tls Secret, mounted read-only as a directory (a subPath mount would
    // never see a renewal) where the two variables point.
    const mounts = c.volumeMounts as { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
    const volume = (pod.spec.volumes as { name: string; secret?: { secretName: string } }[]).find((v) => v.secret?.secretName === 'live-example-com-tls');
    assert.ok(volume, 'a volume of the Secret named by balancer.tls.secretName');
    const mount = mounts.find((m) => m.name === volume.name);
    assert.ok(mount?.readOnly && mount.subPath === undefined, 'mounted read-only, whole');
    assert.equal(env.RELAYCAST_TLS_CERT, posix.join(mount.mountPath, 'tls.crt'));
    assert.equal(env.RELAYCAST_TLS_KEY, posix.join(mount.mountPath, 'tls.key'));

    // The main port is HTTPS only: the probes use the plain port, over HTTP.
    const portOf = (name: string) => c.ports!.find((p) => p.name === name)?.containerPort;
    assert.equal(portOf('https'), config.httpPort);
    assert.ok(config.httpPlainPort > 0 && config.httpPlainPort !== config.httpPort, 'a plain port besides');
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe'] as const) {
      const get = (c[probe] as { httpGet: { port: string | number; scheme?: string } }).httpGet;
      assert.equal(typeof get.port === 'number' ? get.port : portOf(get.port), config.httpPlainPort, `${probe} on the plain port`);
      assert.notEqual(get.scheme, 'HTTPS', `${probe} over plain HTTP`);
    }

    // The Service: HTTPS on 443, to HAProxy (whose bind terminates TLS), nothing plain outside.
    const svc = find('tls', 'Service', 'rc-relaycast-balancer')!.spec as { ports: { name: string; port: number; targetPort: string }[] };
    assert.deepEqual(svc.ports.map((p) => [p.port, p.targetPort]), [[443, 'haproxy']]);
    assert.equal(env.RELAYCAST_HAPROXY_BIND, `0.0.0.0:${portOf('haproxy')}`);
    // Prometheus scrapes /metrics over plain HTTP: the metrics Service reaches the plain port.
    const metrics = find('tls', 'Service', 'rc-relaycast-metrics')!.spec as { ports: { targetPort: string }[] };
    assert.deepEqual(metrics.ports.map((p) => portOf(p.targetPort)), [config.httpPlainPort]);

    // Origins and edges stay plain HTTP inside the cluster (HAProxy reaches them at http://).
    for (const o of workloads('tls').filter((w) => component(w) !== 'balancer')) {
      const node = nodeConfig(describeObject(o), [component(o)!], await resolvedEnv(o, podOf(o).spec.containers[0]!));
      assert.ok(node.tlsCert === undefined && node.publicUrl.startsWith('http://'), `${describeObject(o)}: plain HTTP`);
    }
  });

  it('RTMP through the balancer (balancer.haproxy.rtmp): the Service\'s RTMP port is HAProxy\'s, the one the admin API names; HAProxy reaches every origin\'s RTMP', async () => {
    type ServiceSpec = { type: string; externalTrafficPolicy?: string; loadBalancerIP?: string; ports: { name: string; port: number; targetPort: string | number; protocol: string }[] };
    const balancer = async (scenario: string) => {
      const o = find(scenario, 'Deployment', 'rc-relaycast-balancer')!;
      const c = podOf(o).spec.containers[0]!;
      const env = await resolvedEnv(o, c);
      return { c, env, config: nodeConfig(`${scenario} balancer`, ['balancer'], loadable(env)), svc: find(scenario, 'Service', 'rc-relaycast-balancer')!.spec as ServiceSpec };
    };
    // Off by default: RTMP goes to the origins' own Service.
    for (const scenario of ['default', 'hpa', 'tls']) {
      const { c, env, config, svc } = await balancer(scenario);
      assert.equal(config.haproxyRtmpPort, 0, `${scenario}: HAProxy takes no RTMP`);
      assert.equal(env.RELAYCAST_HAPROXY_RTMP_PORT, undefined);
      assert.ok(!c.ports!.some((p) => p.name === 'rtmp') && !svc.ports.some((p) => p.name === 'rtmp'), `${scenario}: no RTMP port at the balancer`);
    }
    assert.ok(find('default', 'Service', 'rc-relaycast-origin-rtmp'), 'the origins\' RTMP Service, by default');
    assert.equal(find('rtmp', 'Service', 'rc-relaycast-origin-rtmp'), undefined, 'origins.rtmpService.enabled: false (ci/rtmp-values.yaml)');

    for (const [scenario, port] of [['rtmp', 1935], ['rtmpPortRange', 1940]] as const) {
      const { c, env, config, svc } = await balancer(scenario);
      const rtmp = svc.ports.filter((p) => p.name === 'rtmp');
      assert.deepEqual(rtmp.map((p) => [p.port, p.protocol]), [[port, 'TCP']], `${scenario}: the balancer Service publishes RTMP`);
      assert.equal(c.ports!.find((p) => p.name === rtmp[0]!.targetPort)?.containerPort, port, `${scenario}: to the container port of that number`);
      assert.equal(env.RELAYCAST_HAPROXY_BIN, 'haproxy');
      assert.equal(config.haproxyRtmpPort, port, `${scenario}: HAProxy takes RTMP on the port the container declares`);
      assert.notEqual(Number(config.haproxyBind.split(':').pop()), port, 'apart from its HTTP bind');
      // The admin API's rtmpUrl is rtmp://<public URL's host>:<haproxyRtmpPort>/live/<key>
      // (balancer/Balancer.ts; test/rtmpFailover.test.ts): the balancer Service's address and port.
      if (scenario === 'rtmp') assert.equal(`rtmp://${new URL(config.publicUrl).hostname}:${config.haproxyRtmpPort}/live`, 'rtmp://live.example.com:1935/live');
      assert.deepEqual([svc.type, svc.externalTrafficPolicy], ['LoadBalancer', 'Local'], `${scenario}: one Service for HTTP and RTMP, balancer.service's type and policy`);
      assert.equal(svc.ports.find((p) => p.name === 'http')?.targetPort, 'haproxy', `${scenario}: HTTP still to HAProxy`);
    }

    // HAProxy forwards to each origin's registered RTMP address, rtmp://<announced address>:<rtmpPort>:
    // hostNetwork origins declare that port on their node; in portRange mode the origin's per-pod
    // Service (at its announced address) publishes it.
    const origin = find('rtmp', 'Deployment', 'rc-relaycast-origin')!;
    const originConfig = nodeConfig('rtmp origin', ['origin'], await resolvedEnv(origin, podOf(origin).spec.containers[0]!));
    assert.equal(podOf(origin).spec.hostNetwork, true);
    assert.ok(originConfig.rtmpPort > 0 && podOf(origin).spec.containers[0]!.ports!.some((p) => p.name === 'rtmp' && p.containerPort === originConfig.rtmpPort), 'hostNetwork origins take RTMP on their node');
    const set = find('rtmpPortRange', 'StatefulSet', 'rc-relaycast-origin')!;
    const replicas = (set.spec as { replicas: number }).replicas;
    for (let i = 0; i < replicas; i++) {
      const config = nodeConfig(`rtmpPortRange origin ${i}`, ['origin'], await resolvedEnv(set, podOf(set).spec.containers[0]!, i));
      const perPod = find('rtmpPortRange', 'Service', `rc-relaycast-origin-${i}`)!.spec as ServiceSpec;
      assert.equal(perPod.loadBalancerIP, config.announcedIp, `origin ${i}: its per-pod Service is at its announced address`);
      assert.deepEqual(perPod.ports.filter((p) => p.name === 'rtmp').map((p) => [p.port, p.targetPort, p.protocol]), [[config.rtmpPort, 'rtmp', 'TCP']], `origin ${i}: and publishes its RTMP port`);
    }
  });

  it('recordings: a volume at RELAYCAST_RECORD_DIR in every origin and edge pod, one ReadWriteMany claim for all with recording.persistence, else an emptyDir', async () => {
    /** The claim every origin and edge mounts, by scenario; undefined: an emptyDir each. */
    const claims: Record<string, string | undefined> = { recording: 'rc-relaycast-recordings', recordingClaim: 'recordings-nfs' };
    for (const scenario of Object.keys(SCENARIOS)) {
      const media = workloads(scenario).filter((o) => ['origin', 'edge'].includes(component(o)!));
      assert.ok(media.some((o) => component(o) === 'origin') && media.some((o) => component(o) === 'edge'), scenario);
      for (const o of media) {
        const pod = podOf(o);
        const c = pod.spec.containers[0]!;
        const { recordDir } = nodeConfig(`${scenario} ${describeObject(o)}`, [component(o)!], loadable(await resolvedEnv(o, c)));
        const mount = (c.volumeMounts as { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[]).find((m) => m.mountPath === recordDir);
        assert.ok(mount && !mount.readOnly && mount.subPath === undefined, `${scenario} ${describeObject(o)}: a writable volume at its record dir ${recordDir}`);
        const volume = (pod.spec.volumes as { name: string; persistentVolumeClaim?: { claimName: string; readOnly?: boolean }; emptyDir?: object }[]).find((v) => v.name === mount.name)!;
        if (claims[scenario]) assert.deepEqual(volume.persistentVolumeClaim, { claimName: claims[scenario] }, `${scenario} ${describeObject(o)}: the shared claim`);
        else assert.ok(volume.emptyDir && !volume.persistentVolumeClaim, `${scenario} ${describeObject(o)}: an emptyDir without recording.persistence`);
      }
      for (const o of workloads(scenario).filter((w) => component(w) === 'balancer')) {
        assert.ok(!(podOf(o).spec.volumes as { persistentVolumeClaim?: unknown }[] | undefined)?.some((v) => v.persistentVolumeClaim), `${scenario}: the balancer does not mount the recordings`);
      }
      const pvcs = byKind(scenario, 'PersistentVolumeClaim');
      // The chart makes the claim unless it is the user's (existingClaim).
      assert.deepEqual(pvcs.map((p) => p.metadata.name), scenario === 'recording' ? [claims.recording] : [], `${scenario}: claims rendered`);
    }
    const pvc = find('recording', 'PersistentVolumeClaim', 'rc-relaycast-recordings')!;
    const spec = pvc.spec as { accessModes: string[]; storageClassName?: string; resources: { requests: { storage: string } } };
    assert.deepEqual(spec.accessModes, ['ReadWriteMany'], 'pods of every origin and edge, on many nodes, mount it');
    assert.equal(spec.storageClassName, 'nfs-client');
    assert.equal(spec.resources.requests.storage, '500Gi');
    assert.equal(pvc.metadata.annotations?.['helm.sh/resource-policy'], 'keep', 'helm uninstall leaves the recordings Postgres indexes');
    const fsGroup = (podOf(find('recording', 'Deployment', 'rc-relaycast-origin')!).spec.securityContext as { fsGroup?: number }).fsGroup;
    assert.equal(fsGroup, 10001, 'the volume is made writable for the image\'s group');
  });

  it('recordings: recording.enabled and retentionDays reach the origins; recording.s3 reaches origins and edges, with the credentials from the user\'s Secret', async () => {
    const configs = async (scenario: string) =>
      Promise.all(
        workloads(scenario)
          .filter((o) => ['origin', 'edge'].includes(component(o)!))
          .map(async (o) => {
            const c = podOf(o).spec.containers[0]!;
            return { o, c, role: component(o)!, config: nodeConfig(`${scenario} ${describeObject(o)}`, [component(o)!], loadable(await resolvedEnv(o, c))) };
          }),
      );
    for (const { o, c, role, config } of await configs('default')) {
      if (role === 'origin') assert.deepEqual([config.record, config.recordingRetentionDays], ['off', 7], `${describeObject(o)}: record off by default, a week kept`);
      assert.equal(config.recordS3, undefined, `${describeObject(o)}: no object storage by default`);
      assert.ok(!c.env!.some((e) => e.name.startsWith('AWS_')), `${describeObject(o)}: no AWS credentials by default`);
    }
    const recording = await configs('recording');
    assert.deepEqual(new Set(recording.map((r) => r.role)), new Set(['origin', 'edge']));
    for (const { o, c, role, config } of recording) {
      if (role === 'origin') assert.deepEqual([config.record, config.recordingRetentionDays], ['on', 30], `${describeObject(o)}: recording.enabled, recording.retentionDays`);
      assert.deepEqual([config.recordS3, config.recordS3Endpoint, config.recordS3Region], ['s3://recordings/live', 'http://minio.storage.svc:9000', 'eu-central-1'], `${describeObject(o)}: the bucket (origins upload, edges read back)`);
      for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
        const e = c.env!.find((x) => x.name === name);
        assert.deepEqual(e?.valueFrom?.secretKeyRef, { name: 'recordings-s3', key: name }, `${describeObject(o)}: ${name} from recording.s3.existingSecret`);
      }
    }
  });

  it('keeps the cluster secret and admin token in a Secret (generated, or the user\'s), the database URL in one too', () => {
    const auth = find('default', 'Secret', 'rc-relaycast-auth') as { data: Record<string, string> } | undefined;
    assert.ok(auth, 'the chart\'s auth Secret');
    for (const key of ['cluster-secret', 'admin-token']) assert.ok(Buffer.from(auth.data[key]!, 'base64').toString().length >= 16, `generated ${key}`);
    assert.equal(find('default', 'Secret', 'rc-relaycast-database'), undefined, 'no database Secret beside the user\'s');
    assert.equal(byKind('keda', 'Secret').length, 0, 'existing Secrets only');
    const given = find('hpa', 'Secret', 'rc-relaycast-auth') as unknown as { data: Record<string, string> };
    assert.equal(Buffer.from(given.data['cluster-secret']!, 'base64').toString(), 'a-cluster-secret-of-32-characters');
    assert.equal((find('hpa', 'Secret', 'rc-relaycast-database') as unknown as { stringData: Record<string, string> }).stringData.url, 'postgres://relaycast:secret@postgres.db.svc:5432/relaycast');
  });
});
