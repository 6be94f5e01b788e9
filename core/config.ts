import { existsSync, readFileSync } from 'node:fs';
import { hostname, availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { parseGeoPins, REGION, REGION_RULE } from './geoPins.ts';
import { parseIceServers } from './iceServers.ts';
import { PACKAGE_ROOT } from './paths.ts';
import { parseLadder } from './rtmpLadder.ts';
import { parseRange, TrustedProxies } from './TrustedProxies.ts';

/**
 * The one config loader. A setting comes from, highest first: a command-line flag, an environment
 * variable, the config file (JSON, `--config` / `RELAYCAST_CONFIG`), the default. Every source
 * goes through the same zod schema, so a bad value is reported the same way wherever it came from,
 * naming the field, its flag and its variable.
 */

export const ROLES = ['origin', 'edge', 'balancer'] as const;
export type Role = (typeof ROLES)[number];

/** When origins package a stream for HLS: on its first HLS request, from its publish on, or never. */
export const HLS_MODES = ['on-demand', 'always', 'off'] as const;
export type HlsMode = (typeof HLS_MODES)[number];

/** What admission answers when the operator's endpoint is slow, down or answers nonsense (core/Admission.ts). */
export const ADMISSION_FAILURE_ANSWERS = ['refuse', 'allow'] as const;

/** Whether origins record a stream that has no setting of its own (media/record/). */
export const RECORD_MODES = ['off', 'on'] as const;

export const POLICY_NAMES = ['compact', 'packing', 'least-used', 'round-robin', 'random', 'stream-affinity'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

/**
 * Viewers one mediasoup worker (one core) carries at full load, for the default capacity: ~500
 * consumers per worker is mediasoup's own rough figure.
 */
export const VIEWERS_PER_WORKER = 500;

/**
 * What a node's network sends at most, by default (bits/s): 1 Gbit/s, the least a server or
 * cloud instance has. A worker sends about 175 Mbit/s per core (docs/operating/scaling.md, Egress), so an edge of 6
 * cores or more, or a parent feeding many edges, reaches it before its CPU runs out. A node with
 * 10 Gbit/s says so with --egress-capacity 10G.
 */
export const DEFAULT_EGRESS_CAPACITY = 1_000_000_000;

const port = z.coerce.number().int().min(1).max(65535);
const region = z.string().regex(REGION, REGION_RULE);

/** A text setting parsed by `parse`, whose TypeError becomes the setting's validation message. */
function parsedText<T>(parse: (text: string) => T) {
  return z.string().transform((text, ctx) => {
    try {
      return parse(text);
    } catch (error) {
      ctx.issues.push({ code: 'custom', message: (error as Error).message, input: text });
      return z.NEVER;
    }
  });
}

/** Comma-separated whole numbers above 0, ascending ("off" or "" for none). */
function parseThresholds(text: string): number[] {
  if (text.trim() === '' || text.trim() === 'off') return [];
  const values = text.split(',').map((s) => Number(s.trim()));
  if (values.some((v) => !Number.isInteger(v) || v < 1)) throw new TypeError('must be whole numbers above 0, comma-separated');
  if (values.some((v, i) => i > 0 && v <= values[i - 1]!)) throw new TypeError('must be in ascending order');
  return values;
}

/** A bitrate in bits/s: a number with an optional k, M or G (×1000), e.g. 1G, 800M, 2.5G. */
function parseBitrate(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kMG]?)\s*$/i.exec(text);
  if (!match) throw new TypeError('must be bits per second, e.g. 1G, 800M or 2500000');
  const value = Number(match[1]) * { '': 1, k: 1e3, m: 1e6, g: 1e9 }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  if (value < 1e6 || value > 1e12) throw new TypeError('must be between 1M and 1000G');
  return Math.round(value);
}

/** Comma-separated file paths, each of which must exist. */
function existingFiles(text: string): string[] {
  const paths = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (paths.length === 0) throw new TypeError('no file given');
  for (const path of paths) if (!existsSync(path)) throw new TypeError(`${path} does not exist`);
  return paths.map((path) => resolve(path));
}

/** One file path, which must exist. */
function existingFile(text: string): string {
  if (!existsSync(text)) throw new TypeError(`${text} does not exist`);
  return resolve(text);
}

/** What the process needs to know; defaults make `relaycast all` work with nothing set. */
const schema = z.object({
  nodeId: z
    .string()
    .regex(/^[A-Za-z0-9._:-]{1,64}$/, 'letters, digits and . _ : - only, at most 64')
    .optional(),
  httpPort: port.default(8080),
  httpHost: z.string().min(1).default('0.0.0.0'),
  /** PEM files: with both, the HTTP port speaks HTTPS only (core/TlsListener.ts). */
  tlsCert: parsedText(existingFile).optional(),
  tlsKey: parsedText(existingFile).optional(),
  /** A second, plain-HTTP port for health checks and internal traffic when the main one is HTTPS (0: none). */
  httpPlainPort: z.coerce.number().int().min(0).max(65535).default(0),
  region: region.default('default'),
  lat: z.coerce.number().min(-90).max(90).default(0),
  lon: z.coerce.number().min(-180).max(180).default(0),
  publicUrl: z.url({ protocol: /^https?$/ }).optional(),
  /** Unset: every interface address and loopback (core/announcedAddresses.ts). */
  announcedIp: z.union([z.ipv4(), z.ipv6()]).optional(),
  dataDir: z.string().min(1).default('./data'),
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  adminToken: z.string().min(16, 'must be at least 16 characters').optional(),
  clusterSecret: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Unset: one per core (availableParallelism(), in loadConfig: a default must not depend on the machine). */
  workers: z.coerce.number().int().min(1).max(256).optional(),
  workerBin: z.string().min(1).optional(),
  rtmpPort: z.coerce.number().int().min(0).max(65535).default(1935),
  /** Heights of the simulcast layers an origin's RTMP bridge makes, highest first; [] (off) passes the publish on as one layer. */
  rtmpLadder: parsedText(parseLadder).default([]),
  agentPort: z.coerce.number().int().min(0).max(65535).default(0),
  rtcListenIp: z.union([z.ipv4(), z.ipv6()]).default('0.0.0.0'),
  rtcMinPort: port.default(40000),
  rtcMaxPort: port.default(49999),
  /** Viewers this node takes at full load; the balancer's thresholds are fractions of it. */
  capacity: z.coerce.number().int().min(1).optional(),
  /** Bits/s this node's network sends at most: to viewers and to edges it feeds. */
  egressCapacity: z.preprocess((v) => (typeof v === 'number' ? String(v) : v), parsedText(parseBitrate)).default(DEFAULT_EGRESS_CAPACITY),
  /** How long an edge keeps a relay with no viewers, so that a viewer who reloads finds it warm. */
  relayLingerMs: z.coerce.number().int().min(0).max(3_600_000).default(5000),
  /** When origins package streams for HLS (media/hls/): on the first HLS request, from the publish on, or never. */
  hls: z.enum(HLS_MODES).default('on-demand'),
  /** How long an origin packages a stream after its last HLS request: a viewer who pauses, or a CDN between fetches, finds it warm. */
  hlsLingerMs: z.coerce.number().int().min(0).max(3_600_000).default(30_000),
  /**
   * Bytes an edge keeps of HLS playlists and media, least recently used going first: a stream's
   * 36 s window as parts and segments is about 9 MB at 1 Mbit/s, so 256 MiB keeps some 28 at once.
   */
  hlsCacheBytes: z.coerce.number().int().min(1024 * 1024).default(256 * 1024 * 1024),
  /** Whether origins record streams without a `record` setting of their own. */
  record: z.enum(RECORD_MODES).default('off'),
  /** Unset: <data dir>/recordings. */
  recordDir: z.string().min(1).optional(),
  /**
   * Days recordings are kept, for streams without a retention of their own; 0 keeps them. A week:
   * long enough to notice and export what matters, short enough that a forgotten cluster does not
   * fill its disk (MediaMTX keeps a day by default, OvenMediaEngine until deleted).
   */
  recordingRetentionDays: z.coerce.number().int().min(0).max(36_500).default(7),
  /** Unset: recordings stay in recordDir. */
  recordS3: z.string().regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/, 'must be s3://bucket or s3://bucket/prefix').optional(),
  recordS3Endpoint: z.url({ protocol: /^https?$/ }).optional(),
  recordS3Region: z.string().min(1).default('us-east-1'),
  /** Edges an origin feeds each stream to; past it, edges pull from other edges (relay tiers). Unset: no limit. */
  originMaxRelays: z.coerce.number().int().min(1).max(100_000).optional(),
  /** Edges an edge feeds each stream to, as their parent. Unset: no limit. */
  edgeMaxChildren: z.coerce.number().int().min(1).max(100_000).optional(),
  iceServers: parsedText(parseIceServers).default([]),
  /** The operator's admission endpoint: asked before each publish and play (core/Admission.ts). Unset: no admission call. */
  admissionUrl: z.url({ protocol: /^https?$/ }).optional(),
  /** Secret admission calls are signed with (Standard Webhooks, whsec_…); required with admissionUrl. */
  admissionSecret: z.string().regex(/^whsec_[A-Za-z0-9+/=]{24,}$/, 'must be whsec_ followed by base64 of at least 18 bytes (relaycast webhook-secret makes one)').optional(),
  /**
   * How long a join waits for the admission endpoint. 2 s: a browser's join takes a few hundred
   * ms, and an endpoint on the operator's own network answers in a few; past 2 s it is down.
   */
  admissionTimeoutMs: z.coerce.number().int().min(50).max(30_000).default(2000),
  /** Refusing keeps a private platform private while its endpoint is down; allowing keeps a public one watchable. */
  admissionOnFailure: z.enum(ADMISSION_FAILURE_ANSWERS).default('refuse'),
  /** How long a decision is reused for the same stream, action, client address and token (the answer's `ttl` may say otherwise). */
  admissionCacheMs: z.coerce.number().int().min(0).max(3_600_000).default(10_000),
  /** Extra CA certificates (PEM) trusted for https:// webhook and admission endpoints, besides the system's. */
  webhookCaFile: parsedText(existingFile).optional(),
  /** How long an event delivery waits for the endpoint's answer before it counts as failed and is retried. */
  webhookTimeoutMs: z.coerce.number().int().min(100).max(120_000).default(10_000),
  /**
   * How long an event is retried before it is given up (and kept, failed, for inspection and
   * replay). A day covers an endpoint down over a night; Stripe and Svix retry for about three.
   */
  webhookGiveUpS: z.coerce.number().int().min(1).max(30 * 86_400).default(86_400),
  /** Viewer counts whose crossing (up or down) makes a stream.viewers event. */
  webhookViewerThresholds: parsedText(parseThresholds).default([1, 10, 100, 1000, 10_000, 100_000]),
  /** Seconds between periodic stream.viewers events for each live stream (0: only at thresholds). */
  webhookViewersPeriodS: z.coerce.number().int().min(0).max(86_400).default(0),
  policy: z.enum(POLICY_NAMES).default('compact'),
  streamThreshold: z.coerce.number().gt(0).max(1).default(0.8),
  viewerThreshold: z.coerce.number().gt(0).max(1.5).default(0.95),
  geoDatabase: parsedText(existingFiles).optional(),
  geoPins: parsedText(parseGeoPins).default([]),
  trustedProxies: parsedText(TrustedProxies.parse).default(new TrustedProxies([])),
  defaultRegion: region.optional(),
  haproxyBin: z.string().min(1).optional(),
  haproxyBind: z.string().regex(/^[^\s:]*:\d{1,5}$/, 'address:port, e.g. 0.0.0.0:80').default('0.0.0.0:80'),
  haproxyDir: z.string().min(1).optional(),
  haproxyGeoMap: z.enum(['full', 'pins']).default('full'),
  /** CA bundle HAProxy checks https:// nodes against; @system-ca is the system's. */
  haproxyCaFile: z.string().min(1).default('@system-ca'),
  /**
   * The URLs the route API and the WHEP/WHIP 307s name for a node: its own public URL, or a path
   * of the balancer's HAProxy that pins it (/n/{node}/…), so one certificate serves the cluster.
   */
  nodeUrls: z.enum(['direct', 'balancer']).default('direct'),
  /** 0: off. Not on by default: 1935 is the origins' own RTMP port, which `relaycast all` binds. */
  haproxyRtmpPort: z.coerce.number().int().min(0).max(65535).default(0),
  heartbeatMs: z.coerce.number().int().min(100).max(60_000).default(2000),
  nodeTtlMs: z.coerce.number().int().min(300).max(600_000).default(10_000),
  /** How long SIGTERM may spend moving viewers off the node before it closes what is left. */
  drainTimeoutMs: z.coerce.number().int().min(0).max(600_000).default(20_000),
  targetUtilisation: z.coerce.number().gt(0).max(1).default(0.7),
  slackViewers: z.coerce.number().int().min(0).default(200),
  minEdgesPerRegion: z.coerce.number().int().min(0).max(10_000).default(1),
  /**
   * POSTs (API, WHIP, WHEP) per minute from one client address. 600 lets a NAT with many viewers
   * join at 10 a second and stops a script from making sessions (or audit rows) by the thousand.
   */
  postRateLimit: z.coerce.number().int().min(0).max(1_000_000).default(600),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  logFormat: z.enum(['auto', 'json', 'pretty']).default('auto'),
});

type Parsed = z.infer<typeof schema>;

export interface Config extends Omit<Parsed, 'nodeId' | 'publicUrl' | 'workers' | 'capacity' | 'defaultRegion' | 'recordDir'> {
  defaultRegion: string;
  recordDir: string;
  roles: Role[];
  nodeId: string;
  publicUrl: string;
  workers: number;
  capacity: number;
  version: string;
}

export type ConfigKey = keyof z.infer<typeof schema>;

/**
 * What the schema makes of an empty input: each setting's default, undefined where it has none
 * (a default computed at start from the machine or other settings, which the setting's
 * description names). The configuration reference (npm run docs) prints these.
 */
export const CONFIG_DEFAULTS: Readonly<Parsed> = schema.parse({});

export interface Field {
  key: ConfigKey;
  flag: string;
  env: string;
  description: string;
}

const descriptions: Record<ConfigKey, string> = {
  nodeId: 'id of this node in the registry (default: <hostname>-<http port>)',
  httpPort: 'HTTP port for signalling, API, player, /healthz and /metrics',
  httpHost: 'address the HTTP server listens on',
  tlsCert: 'PEM certificate chain: with --tls-key, the HTTP port speaks HTTPS only; read again when the file changes',
  tlsKey: 'PEM private key of --tls-cert',
  httpPlainPort: 'with TLS, a plain-HTTP port besides (same routes) for health checks, HAProxy and other nodes on a private network (0: none)',
  region: `region this node serves (balancer groups edges by it): ${REGION_RULE}`,
  lat: 'latitude of this node',
  lon: 'longitude of this node',
  publicUrl: 'base URL clients reach this node at (default: http://127.0.0.1:<http port>, https:// with --tls-cert)',
  announcedIp: 'IP address announced in ICE candidates and to other nodes\' relays; set it behind NAT (default: every IPv4 address of the machine\'s interfaces and 127.0.0.1 in ICE candidates, or the one address of --rtc-listen-ip when it names one, and 127.0.0.1 to relays; logged at start as "media addresses announced")',
  dataDir: 'directory for the embedded database and other state',
  databaseUrl: 'Postgres URL; unset = embedded PGlite under the data dir',
  adminToken: 'first admin API token, scopes read+write (at least 16 characters; unset: one is made and printed once)',
  clusterSecret: 'secret all nodes share: signs stream tokens, guards the internal relay API (at least 16 characters; unset: generated once into the data dir)',
  workers: 'mediasoup workers (default: one per core)',
  workerBin: 'path of the mediasoup-worker binary (default: MEDIASOUP_WORKER_BIN, else the one scripts/setup.sh built, else mediasoup\'s own)',
  rtmpPort: 'RTMP ingest port of an origin (0: no RTMP)',
  rtmpLadder: 'simulcast layers an origin makes from each RTMP publish: off, or 2–3 picture heights such as 720,360,180 (a stream\'s own setting wins; never upscaled)',
  agentPort: 'HAProxy agent-check port of an edge (0: none)',
  rtcListenIp: 'address WebRTC media sockets listen on',
  rtcMinPort: 'lowest port for WebRTC media (UDP and ICE-TCP) and relays',
  rtcMaxPort: 'highest port for WebRTC media (UDP and ICE-TCP) and relays',
  capacity: `viewers this node serves at full load (default: ${VIEWERS_PER_WORKER} per worker)`,
  egressCapacity: 'bits/s this node\'s network sends at most, to viewers and to edges it feeds, e.g. 1G, 10G, 800M (1M–1000G): the balancer loads it by that share too, and past it the node feeds no more edges (default: 1G)',
  relayLingerMs: 'how long an edge keeps a stream\'s relay after its last viewer left',
  hls: 'when origins package streams for LL-HLS: on-demand (first HLS request), always (from the publish on), off',
  hlsLingerMs: 'how long an origin keeps packaging a stream after its last HLS request',
  hlsCacheBytes: 'bytes an edge keeps of HLS playlists and media (least recently used go first)',
  record: 'whether origins record streams without a record setting of their own: off or on',
  recordDir: 'directory for recordings (default: <data dir>/recordings); a volume shared by the nodes lets any node serve them',
  recordingRetentionDays: 'days recordings are kept for streams without a retention of their own (0: kept until deleted)',
  recordS3: 'S3-compatible object storage for recordings, s3://bucket/prefix (credentials: the AWS SDK\'s, e.g. AWS_ACCESS_KEY_ID); --record-dir is then the backlog of segments not uploaded yet',
  recordS3Endpoint: 'URL of an S3-compatible service (MinIO, Ceph…; path-style addressing); unset: AWS',
  recordS3Region: 'the bucket\'s region',
  originMaxRelays: 'edges an origin feeds each stream to; past it, edges pull from other edges (default: no limit); on an edge, the origins\' limit: it asks bounded parents first, and the origin may move its relay below a newcomer on the way',
  edgeMaxChildren: 'edges an edge feeds each stream to as their parent (default: no limit)',
  iceServers: 'STUN/TURN servers offered to clients, e.g. stun:stun.example.com,turn:user:pass@turn.example.com:3478',
  admissionUrl: 'the operator\'s admission endpoint, asked (signed POST) before each publish and play; it answers {"allow": true|false, "reason"}',
  admissionSecret: 'whsec_… secret admission calls are signed with (required with --admission-url; relaycast webhook-secret makes one)',
  admissionTimeoutMs: 'how long a publish or play waits for the admission endpoint before --admission-on-failure applies',
  admissionOnFailure: 'answer when the admission endpoint is slow, down or answers nonsense: refuse (503) or allow',
  admissionCacheMs: 'how long an admission decision is reused for the same stream, action, client address and token (0: never)',
  webhookCaFile: 'PEM CA certificates trusted for https:// webhook and admission endpoints, besides Node\'s bundled roots',
  webhookTimeoutMs: 'how long an event delivery waits for the endpoint\'s answer',
  webhookGiveUpS: 'seconds an event delivery is retried (exponential backoff) before it is given up and kept as failed',
  webhookViewerThresholds: 'viewer counts whose crossing makes a stream.viewers event, comma-separated ascending (off: none)',
  webhookViewersPeriodS: 'seconds between periodic stream.viewers events for each live stream (0: only at thresholds)',
  policy: `balancer edge selection policy: ${POLICY_NAMES.join(', ')}`,
  streamThreshold: 'load (0..1) above which a node takes no new streams',
  viewerThreshold: 'load above which a node takes no new viewers (higher than streamThreshold)',
  geoDatabase: 'GeoIP2/GeoLite2 City .mmdb files, comma-separated (default: bundled DB-IP City Lite)',
  geoPins: 'CIDRs or addresses pinned to a region or position: 10.0.0.0/8=eu-west,192.0.2.0/24=48.8:2.3,198.51.100.7=us-east (an address alone is a /32, /128)',
  trustedProxies: 'addresses/CIDRs whose X-Forwarded-For is believed (geo, rate limit, audit), comma-separated; a balancer with --haproxy-bin adds loopback',
  defaultRegion: 'region for clients the geo lookup cannot place (default: this node\'s region)',
  haproxyBin: 'HAProxy binary: the balancer runs HAProxy in front of the cluster and keeps its config current',
  haproxyBind: 'where that HAProxy listens (address:port)',
  haproxyDir: 'where its haproxy.cfg, geo map and sockets live (default: <data dir>/haproxy)',
  haproxyGeoMap: "HAProxy's geo map: full (every network of the GeoIP database, built in a short-lived child process) or pins (--geo-pins only)",
  haproxyCaFile: 'CA bundle that HAProxy checks nodes with an https:// public URL against (@system-ca: the system\'s)',
  nodeUrls: 'what the route API and the WHEP/WHIP 307s name for a node: direct (its public URL) or balancer (<balancer public URL>/n/<node id>, through HAProxy, which pins it; needs --haproxy-bin)',
  haproxyRtmpPort: 'RTMP port of that HAProxy, on the address of --haproxy-bind: publishers go to a live origin through it, and the admin API hands it out (0: off)',
  heartbeatMs: 'how often the node reports its load to the registry',
  nodeTtlMs: 'a node whose last heartbeat is older than this is dead (at least twice --heartbeat-ms)',
  drainTimeoutMs: 'on SIGTERM, longest time spent moving viewers to other edges before exiting',
  targetUtilisation: 'autoscaling: share of a region\'s edge capacity to use (balancer; see GET /api/v1/capacity)',
  slackViewers: 'autoscaling: viewer slots each region keeps free whatever its load',
  minEdgesPerRegion: 'autoscaling: edges a region keeps with no viewers',
  postRateLimit: 'POST requests (API, WHIP, WHEP) per minute per client address (0: no limit)',
  logLevel: 'pino log level: fatal, error, warn, info, debug, trace or silent',
  logFormat: 'auto (readable lines on a terminal, pino-pretty; JSON lines otherwise), json or pretty: the same fields either way',
};

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Flag and variable names are derived from the key: httpPort → --http-port, RELAYCAST_HTTP_PORT. */
export const FIELDS: Field[] = (Object.keys(schema.shape) as ConfigKey[]).map((key) => ({
  key,
  flag: `--${kebab(key)}`,
  env: key === 'databaseUrl' ? 'DATABASE_URL' : `RELAYCAST_${kebab(key).replace(/-/g, '_').toUpperCase()}`,
  description: descriptions[key],
}));

export interface ConfigSources {
  roles: string[];
  /** Values given on the command line, by key. */
  flags?: Partial<Record<ConfigKey, unknown>>;
  env?: NodeJS.ProcessEnv;
  /** Path of a JSON config file; RELAYCAST_CONFIG when not given. */
  configFile?: string;
}

export function parseRoles(names: string[]): Role[] {
  const roles = new Set<Role>();
  for (const name of names) {
    for (const part of name.split(',')) {
      if (part === 'all') ROLES.forEach((r) => roles.add(r));
      else if ((ROLES as readonly string[]).includes(part)) roles.add(part as Role);
      else throw new ConfigError('roles', `unknown role "${part}" (expected origin, edge, balancer or all)`);
    }
  }
  if (roles.size === 0) throw new ConfigError('roles', 'no role given (expected origin, edge, balancer or all)');
  return ROLES.filter((r) => roles.has(r));
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError('config', `cannot read config file ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError('config', `config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError('config', `config file ${path} must hold a JSON object`);
  }
  const known = new Set<string>(FIELDS.map((f) => f.key));
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw new ConfigError(key, `unknown setting in config file ${path}`);
  }
  return value as Record<string, unknown>;
}

export function loadConfig(sources: ConfigSources): Config {
  const env = sources.env ?? process.env;
  const roles = parseRoles(sources.roles);
  const configFile = sources.configFile ?? env.RELAYCAST_CONFIG;
  const merged: Record<string, unknown> = configFile ? readConfigFile(configFile) : {};
  for (const field of FIELDS) {
    const fromEnv = env[field.env];
    if (fromEnv !== undefined && fromEnv !== '') merged[field.key] = fromEnv;
    const fromFlag = sources.flags?.[field.key];
    if (fromFlag !== undefined) merged[field.key] = fromFlag;
  }
  // mediasoup reads this variable itself too; honouring it here keeps one place that decides.
  if (merged.workerBin === undefined && env.MEDIASOUP_WORKER_BIN) merged.workerBin = env.MEDIASOUP_WORKER_BIN;

  const result = schema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = String(issue.path[0] ?? 'config');
    throw new ConfigError(key, issue.message);
  }
  const parsed = result.data;
  const workers = parsed.workers ?? availableParallelism();
  if (parsed.rtcMinPort > parsed.rtcMaxPort) {
    throw new ConfigError('rtcMinPort', `must not be above rtcMaxPort (${parsed.rtcMaxPort})`);
  }
  if (parsed.streamThreshold > parsed.viewerThreshold) {
    throw new ConfigError('streamThreshold', `must not be above viewerThreshold (${parsed.viewerThreshold})`);
  }
  if (parsed.haproxyRtmpPort > 0 && (parsed.haproxyRtmpPort === Number(parsed.haproxyBind.split(':').pop()) || (roles.includes('origin') && parsed.haproxyRtmpPort === parsed.rtmpPort))) {
    throw new ConfigError('haproxyRtmpPort', `must differ from haproxyBind's port and from this origin's rtmpPort (${parsed.rtmpPort})`);
  }
  if (parsed.nodeUrls === 'balancer' && roles.includes('balancer') && !parsed.haproxyBin) {
    throw new ConfigError('nodeUrls', 'balancer: the /n/{node} paths are HAProxy\'s, so the balancer must run it (haproxyBin)');
  }
  if ((parsed.tlsCert === undefined) !== (parsed.tlsKey === undefined)) {
    throw new ConfigError(parsed.tlsCert === undefined ? 'tlsCert' : 'tlsKey', 'tlsCert and tlsKey go together: give both or neither');
  }
  if (parsed.httpPlainPort > 0 && (parsed.tlsCert === undefined || parsed.httpPlainPort === parsed.httpPort)) {
    throw new ConfigError('httpPlainPort', 'is for a node with tlsCert and tlsKey, and must differ from httpPort');
  }
  if ((parsed.admissionUrl === undefined) !== (parsed.admissionSecret === undefined)) {
    throw new ConfigError(parsed.admissionUrl === undefined ? 'admissionUrl' : 'admissionSecret', 'admissionUrl and admissionSecret go together: every admission call is signed');
  }
  if (parsed.heartbeatMs * 2 > parsed.nodeTtlMs) {
    throw new ConfigError('nodeTtlMs', `must be at least twice heartbeatMs (${parsed.heartbeatMs}), or live nodes look dead`);
  }
  return {
    ...parsed,
    roles,
    dataDir: resolve(parsed.dataDir),
    recordDir: resolve(parsed.recordDir ?? join(parsed.dataDir, 'recordings')),
    nodeId: parsed.nodeId ?? `${hostname()}-${parsed.httpPort}`,
    publicUrl: (parsed.publicUrl ?? `${parsed.tlsCert ? 'https' : 'http'}://127.0.0.1:${parsed.httpPort}`).replace(/\/+$/, ''),
    workers,
    capacity: parsed.capacity ?? VIEWERS_PER_WORKER * workers,
    defaultRegion: parsed.defaultRegion ?? parsed.region,
    // A balancer that runs HAProxy hears it on loopback, with the client in X-Forwarded-For.
    trustedProxies: parsed.haproxyBin ? parsed.trustedProxies.with([parseRange('127.0.0.1'), parseRange('::1')]) : parsed.trustedProxies,
    version: VERSION,
  };
}

export const VERSION: string = (
  JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

/** The flag and variable that set a key, for error messages. */
export function describeKey(key: string): string {
  const field = FIELDS.find((f) => f.key === key);
  return field ? `${key} (${field.flag} / ${field.env})` : key;
}
