import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import NodeMediaServer, { type NmsSession } from 'node-media-server';
import nmsLogger from 'node-media-server/src/core/logger.js';
import { Problem } from '../core/errors.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { streamOfKey } from '../db/repositories/streamKeys.ts';
import { getStream } from '../db/repositories/streams.ts';
import { MEDIA_CODECS } from '../media/codecs.ts';
import type { Origin, OriginContext } from './Origin.ts';
import { PublishedStream } from './PublishedStream.ts';
import { RtmpBridge } from './RtmpBridge.ts';

/**
 * RTMP ingest on the origin: node-media-server takes `rtmp://host:port/live/{streamKey}`; the key
 * is looked up (hashed) in the database, and a valid publish is bridged to WebRTC (RtmpBridge) and
 * placed like a WHIP stream. Only the bridge may play from this RTMP server.
 *
 * node-media-server acknowledges a publish before any hook runs and has no asynchronous hook, so
 * a refused publisher (unknown, revoked or live key) is disconnected right after the key lookup,
 * within milliseconds; nothing it sent goes anywhere, as nobody but the bridge can play.
 */

const APP = 'live';
const KEY = /^sk_[A-Za-z0-9_-]{20,100}$/;

/** node-media-server logs stream paths, which hold stream keys: keep those out of the logs. */
const redactKeys = (message: string) => message.replace(/\/live\/[^\s/?,]+/g, '/live/[key]').replace(/sk_[A-Za-z0-9_-]+/g, '[key]');

/**
 * Where this process reaches its own RTMP server (the bridge's ffmpeg reads the publish there):
 * loopback when it listens on every address, else the one address it listens on (a node bound to
 * one interface refuses connections to 127.0.0.1).
 */
function selfAddress(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

/** The publisher's address, without the IPv4-mapped prefix (RTMP carries no X-Forwarded-For). */
const clientAddress = (session: NmsSession) => (session.socket.remoteAddress ?? '').replace(/^::ffff:/, '');

export class RtmpIngest {
  readonly port: number;
  readonly #nms: NodeMediaServer;
  readonly #ctx: OriginContext;
  readonly #origin: Origin;
  /** Lets our own bridge play; random per process. */
  readonly #bridgeToken = randomBytes(18).toString('base64url');
  /** Bridges by node-media-server session id, stopped at shutdown. */
  readonly #bridges = new Map<string, RtmpBridge>();

  private constructor(ctx: OriginContext, origin: Origin, port: number) {
    this.#ctx = ctx;
    this.#origin = origin;
    this.port = port;
    const log = ctx.logger.child({ component: 'rtmp' });
    nmsLogger.log = (message: string, level = 'info') => {
      if (level === 'error' || level === 'warn') log[level](redactKeys(message));
    };
    for (const level of ['trace', 'debug', 'info', 'warn', 'error'] as const) nmsLogger[level] = (m: string) => nmsLogger.log(m, level);
    this.#nms = new NodeMediaServer({
      bind: ctx.config.httpHost,
      rtmp: { port, chunk_size: 60000, gop_cache: true, ping: 30, ping_timeout: 60 },
      store: { path: join(ctx.config.dataDir, 'rtmp') },
    });
    // Its store would take over SIGTERM (flush, then kill the process again): shutdown is ours.
    this.#nms.store.options.signals = false;
    this.#nms.on('prePublish', (session) => this.#onPublish(session));
    this.#nms.on('prePlay', (session) => this.#onPlay(session));
  }

  static async start(ctx: OriginContext, origin: Origin, port: number): Promise<RtmpIngest> {
    // node-media-server exits the process when its port is taken; find out first, and fail start-up
    // with a clear error instead.
    const probe = createServer();
    probe.listen(port, ctx.config.httpHost);
    await Promise.race([
      once(probe, 'listening'),
      once(probe, 'error').then(([error]) => {
        throw new Error(`RTMP port ${port} is not free: ${(error as Error).message}`);
      }),
    ]);
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const ingest = new RtmpIngest(ctx, origin, port);
    await ingest.#nms.run();
    ctx.logger.info({ port }, 'rtmp listening');
    return ingest;
  }

  async close(): Promise<void> {
    for (const bridge of this.#bridges.values()) bridge.close('origin shutting down');
    await this.#nms.stop();
  }

  /** Plays are our own bridge's only: from this host (the address it reads from, selfAddress()) and with its token. */
  #onPlay(session: NmsSession): void {
    const from = clientAddress(session);
    const local = from === '127.0.0.1' || from === selfAddress(this.#ctx.config.httpHost).replace(/^\[|\]$/g, '');
    if (!local || session.streamQuery?.bridge !== this.#bridgeToken) session.close();
  }

  #onPublish(session: NmsSession): void {
    // A second publisher on a path that has one: node-media-server refuses it itself, and the
    // first publisher must not be disturbed. A path whose publisher left (or was refused) less than
    // 30 s ago is "reconnecting": node-media-server 4.4.3 holds it for that long and gives it to the
    // next publisher (resumed when it comes from the same address, as every publisher through
    // HAProxy does). That one is a new publish, checked like any other: left alone here it would
    // publish into nothing, with no bridge and no placement.
    const broadcast = session.broadcast;
    if (broadcast?.publisher && broadcast.publisher !== session && broadcast.getPublishStatus() !== 'reconnecting') return;
    if (session.streamApp !== APP || !KEY.test(session.streamName)) {
      void this.#refuse(session, 'malformed stream key');
      return;
    }
    void this.#accept(session);
  }

  async #refuse(session: NmsSession, reason: string, stream?: string): Promise<void> {
    session.close();
    this.#ctx.logger.warn({ client: session.ip, stream, reason }, 'rtmp publish refused');
    await recordAudit(this.#ctx.db.knex, {
      actor: session.ip,
      action: 'stream.publish',
      target: stream,
      outcome: 'denied',
      detail: { protocol: 'rtmp', reason },
    }).catch(() => undefined);
  }

  /**
   * Why the admission endpoint (--admission-url) keeps this publish out, or undefined when it lets
   * it in (or none is set). The encoder's connect flashVer (e.g. "FMLE/3.0 (compatible; Lavf61.7.100)")
   * stands for its user agent.
   */
  async #admissionRefusal(session: NmsSession, stream: string): Promise<string | undefined> {
    const { admission } = this.#ctx;
    if (!admission) return undefined;
    const flashVer = session.rtmp?.connectCmdObj?.flashVer;
    try {
      await admission.admit({ action: 'publish', protocol: 'rtmp', stream, clientIp: clientAddress(session), userAgent: typeof flashVer === 'string' ? flashVer : undefined, token: null });
      return undefined;
    } catch (error) {
      if (error instanceof Problem) return `${error.problem}: ${error.message}`;
      throw error;
    }
  }

  async #accept(session: NmsSession): Promise<void> {
    const ctx = this.#ctx;
    let name: string | undefined;
    let ladder: number[] = ctx.config.rtmpLadder;
    let record: boolean | null;
    try {
      name = await streamOfKey(ctx.db.knex, session.streamName);
      // The stream's own ladder wins over the node's (--rtmp-ladder); null follows the node.
      const row = name === undefined ? undefined : await getStream(ctx.db.knex, name);
      if (row?.rtmpLadder) ladder = row.rtmpLadder;
      record = row?.record ?? null;
    } catch (error) {
      ctx.logger.error({ err: error }, 'stream key lookup failed');
      return this.#refuse(session, 'database unavailable');
    }
    if (!name) return this.#refuse(session, 'unknown or revoked stream key');
    if (this.#origin.stream(name)) return this.#refuse(session, 'stream already live', name);
    const refusal = await this.#admissionRefusal(session, name);
    if (refusal) return this.#refuse(session, refusal, name);
    if (session.socket.destroyed) return;

    const input = `rtmp://${selfAddress(ctx.config.httpHost)}:${this.port}/${APP}/${session.streamName}?bridge=${this.#bridgeToken}`;
    // A recording starts reading now: by the time the bridge has probed and started and the stream
    // is placed, the RTMP server would hand a late reader the second GOP, not the first.
    const early = this.#origin.packageEarly(name, record, RtmpBridge.earlyPackagerSource(input));
    const router = await ctx.workers.next().createRouter({ mediaCodecs: MEDIA_CODECS, appData: { stream: name } });
    let bridge: RtmpBridge;
    try {
      bridge = await RtmpBridge.start({ router, stream: name, input, ladder, logger: ctx.logger });
    } catch (error) {
      if (early) this.#origin.dropEarlyPackaging(name);
      router.close();
      ctx.logger.error({ err: error, stream: name }, 'rtmp bridge could not start');
      return this.#refuse(session, `bridge failed: ${(error as Error).message}`, name);
    }
    // A publish that is not H.264 and AAC is encoded for HLS (packagerSources): not the early copy.
    if (early && !bridge.copiedAsIs) this.#origin.dropEarlyPackaging(name);
    const stream = new PublishedStream(name, router, bridge, ctx.logger);
    stream.producers.push(...bridge.producers);
    this.#bridges.set(session.id, bridge);
    bridge.once('closed', () => {
      this.#bridges.delete(session.id);
      // The bridge gave up (or the stream was ended from here): drop the RTMP publisher too.
      if (!session.socket.destroyed) session.close();
    });
    session.socket.once('close', () => stream.end('rtmp publisher left'));
    if (session.socket.destroyed) {
      if (early) this.#origin.dropEarlyPackaging(name);
      stream.end('rtmp publisher left');
      return;
    }
    try {
      await this.#origin.place(stream);
    } catch (error) {
      if (early) this.#origin.dropEarlyPackaging(name);
      const reason = error instanceof Problem && error.status === 409 ? 'stream already live' : 'placement failed';
      if (!(error instanceof Problem)) ctx.logger.error({ err: error, stream: name }, 'rtmp placement failed');
      return this.#refuse(session, reason, name);
    }
  }
}
