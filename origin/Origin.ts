import express, { type Router } from 'express';
import type { Gauge } from 'prom-client';
import { Problem } from '../core/errors.ts';
import type { Role, RoleContext, RoleLoad } from '../core/Role.ts';
import type { Database } from '../db/Database.ts';
import type { MediaContext } from '../media/WorkerPool.ts';
import { signallingRouter } from '../media/signalling.ts';
import { authorizeStream, type StreamAction, type StreamClaims } from '../core/tokens.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { reportNodeLost } from '../db/repositories/nodes.ts';
import { relayDepthsBelow } from '../db/repositories/relays.ts';
import { getStream, markStreamIdle, markStreamLive } from '../db/repositories/streams.ts';
import { authorizeInternal, RECORDINGS_PATH, STREAMS_PATH } from '../core/internalApi.ts';
import { producersBitrate } from '../media/producerBitrate.ts';
import { RelayServer, type RelayUpstream } from '../media/RelayServer.ts';
import type { Offer } from '../media/sdp.ts';
import { PublishedStream } from './PublishedStream.ts';
import { RtmpIngest } from './RtmpIngest.ts';
import { HlsPackaging } from './HlsPackaging.ts';
import { Recordings } from './Recordings.ts';
import { LocalRecordingStore, isRecordingKey } from '../media/record/RecordingStore.ts';
import { S3RecordingStore } from '../media/record/S3RecordingStore.ts';
import { RecordingUploads } from './RecordingUploads.ts';
import { answerHls, INTERNAL_HLS_PATH, isHlsFile, sendHls } from '../media/hls/hlsFiles.ts';
import type { PackagerSource } from '../media/hls/HlsPackager.ts';

/** What an origin needs: the database and the media workers. */
export type OriginContext = RoleContext & MediaContext & { db: Database };

/**
 * The origin role: takes WHIP publishers, records each stream's placement, and pipes streams to
 * the edges that ask through the internal relay API.
 */
export class Origin implements Role {
  readonly router: Router;
  readonly #ctx: OriginContext;
  readonly #streams = new Map<string, PublishedStream>();
  readonly #relayServer: RelayServer;
  #rtmp: RtmpIngest | undefined;
  readonly #hls: HlsPackaging;
  readonly #recordings: Recordings;
  readonly #store: LocalRecordingStore;
  readonly #uploads: RecordingUploads | undefined;
  /**
   * Placement releases under way, by publisher id: awaited by a WHIP DELETE (so that a client may
   * publish again as soon as it has its answer) and at shutdown (so none is cut off by the
   * database closing).
   */
  readonly #releasing = new Map<string, Promise<void>>();

  constructor(ctx: OriginContext) {
    this.#ctx = ctx;
    this.router = express.Router();
    this.router.use(
      signallingRouter(
        {
          authorize: (stream, token, action) => this.#authorize(stream, token, action),
          accept: (stream, offer) => this.#publish(stream, offer),
          end: async (session) => {
            session.close('deleted by client');
            await this.#releasing.get(session.id);
          },
        },
        { kind: 'whip', publicUrl: ctx.config.publicUrl, iceServers: ctx.config.iceServers, logger: ctx.logger, admission: ctx.admission },
      ),
    );
    this.#relayServer = new RelayServer({
      nodeId: ctx.config.nodeId,
      clusterSecret: ctx.clusterSecret,
      rtc: ctx.rtc,
      maxRelaysPerStream: ctx.config.originMaxRelays,
      position: { lat: ctx.config.lat, lon: ctx.config.lon },
      depthsBelow: (stream) => relayDepthsBelow(ctx.db.knex, stream),
      egress: { capacity: ctx.config.egressCapacity, sending: ctx.egressSent },
      metrics: ctx.metrics,
      // The registry declares the edge dead early if it is (app/NodeRegistry.ts).
      edgeLost: (nodeId, reason) =>
        void reportNodeLost(ctx.db.knex, { nodeId, reporterId: ctx.config.nodeId, reason }).catch((error) => ctx.logger.warn({ err: error, nodeId }, 'could not report a lost node')),
      upstream: (name) => {
        const stream = this.#streams.get(name);
        return stream && !stream.ended ? this.#upstream(stream) : undefined;
      },
      logger: ctx.logger,
    });
    this.router.use(this.#relayServer.router);
    this.#hls = new HlsPackaging({ mode: ctx.config.hls, lingerMs: ctx.config.hlsLingerMs, logger: ctx.logger });
    // HLS, for the edges (and the edges they feed): the stream's packager starts with the first request.
    this.router.get(`${INTERNAL_HLS_PATH}/:stream/:file`, async (req, res) => {
      authorizeInternal(req, this.#ctx.clusterSecret);
      const name = String(req.params.stream);
      const file = String(req.params.file);
      const stream = this.#streams.get(name);
      if (!stream || stream.ended) throw new Problem('stream-not-here', `stream ${name} is not live on this origin`);
      if (this.#hls.modeOf(name) === 'off') throw new Problem('not-found', `stream ${name} is not packaged for HLS (hls: off)`);
      if (!isHlsFile(file)) throw new Problem('not-found', `${file} is no HLS file`);
      sendHls(res, await this.#hls.serve(stream, (variants) => answerHls(variants, file, req.query)));
    });
    this.#store = new LocalRecordingStore(ctx.config.recordDir);
    const s3 = ctx.config.recordS3 ? new S3RecordingStore({ url: ctx.config.recordS3, endpoint: ctx.config.recordS3Endpoint, region: ctx.config.recordS3Region }) : undefined;
    this.#uploads = s3 && new RecordingUploads({ db: ctx.db.knex, nodeId: ctx.config.nodeId, local: this.#store, s3, logger: ctx.logger, metrics: ctx.metrics });
    this.#recordings = new Recordings({
      db: ctx.db.knex,
      nodeId: ctx.config.nodeId,
      store: this.#store,
      shared: s3,
      hls: this.#hls,
      recordByDefault: ctx.config.record === 'on',
      retentionDays: ctx.config.recordingRetentionDays,
      logger: ctx.logger,
      metrics: ctx.metrics,
    });
    // Recorded files, for a balancer serving a recording this node wrote (its store is its own disk).
    this.router.get(`${RECORDINGS_PATH}/*key`, async (req, res) => {
      authorizeInternal(req, this.#ctx.clusterSecret);
      const key = ([] as string[]).concat((req.params as { key: string | string[] }).key).join('/');
      if (!isRecordingKey(key)) throw new Problem('not-found', 'no such recorded file');
      const length = req.query.length === undefined ? undefined : Number(req.query.length);
      if (length !== undefined && !(Number.isInteger(length) && length >= 0)) throw new Problem('invalid-request', 'length must be a whole number of bytes');
      const data = await this.#store.read(key, length);
      if (!data) throw new Problem('not-found', 'no such recorded file on this node');
      res.type('application/octet-stream').send(data);
    });
    this.router.delete(`${STREAMS_PATH}/:name`, async (req, res) => {
      authorizeInternal(req, this.#ctx.clusterSecret);
      const stream = this.#streams.get(String(req.params.name));
      if (!stream) throw new Problem('stream-not-here', `stream ${String(req.params.name)} is not live on this origin`);
      stream.end('deleted by an operator');
      await this.#releasing.get(stream.publisher.id);
      res.status(204).end();
    });
  }

  async start(): Promise<void> {
    this.#ctx.metrics.ingestLayerSource = (gauge) => this.#layerBitrates(gauge);
    if (this.#ctx.config.rtmpPort > 0) this.#rtmp = await RtmpIngest.start(this.#ctx, this, this.#ctx.config.rtmpPort);
  }

  /**
   * An RTMP publish of stream `name` is being set up: if the stream is recorded (`setting`, else
   * --record), its packaging starts now, from `source`, so that the recording has the publish's
   * first frames (HlsPackaging.prestart). Returns whether it started.
   */
  packageEarly(name: string, setting: boolean | null, source: PackagerSource): boolean {
    if (!(setting ?? this.#ctx.config.record === 'on')) return false;
    this.#hls.prestart(name, source);
    return true;
  }

  /** The early packaging of `name` is not wanted after all (the publish was refused, or must be encoded). */
  dropEarlyPackaging(name: string): void {
    this.#hls.dropEarly(name);
  }

  /** The stream if it is live here. */
  stream(name: string): PublishedStream | undefined {
    return this.#streams.get(name);
  }

  async load(): Promise<RoleLoad> {
    let bitrateOut = 0;
    for (const stream of this.#streams.values()) bitrateOut += await stream.bitrateOut();
    this.#ctx.metrics.hlsPackagers.set(this.#hls.size);
    this.#ctx.metrics.hlsPackagedBytes.set(await this.#hls.bytes());
    this.#ctx.metrics.recordings.set(this.#recordings.size);
    return { viewers: 0, streams: this.#streams.size, bitrateOut };
  }

  /** Each simulcast layer's incoming bitrate, for /metrics (WHIP layers by rid; an RTMP ladder's by height). */
  async #layerBitrates(gauge: Gauge<'stream' | 'layer'>): Promise<void> {
    gauge.reset();
    for (const stream of this.#streams.values()) {
      for (const producer of stream.producers) {
        const encodings = producer.rtpParameters.encodings ?? [];
        if (encodings.length < 2) continue;
        const stats = await producer.getStats().catch(() => []);
        encodings.forEach((encoding, i) => {
          const received = stats.find((s) => (encoding.ssrc !== undefined ? s.ssrc === encoding.ssrc : s.rid === encoding.rid));
          gauge.set({ stream: stream.name, layer: encoding.rid ?? String(i) }, received?.bitrate ?? 0);
        });
      }
    }
  }

  /**
   * After this node was declared dead and came back, its streams' rows had been released: place
   * them again, or end the ones another origin took meanwhile.
   */
  async revive(): Promise<void> {
    for (const stream of this.#streams.values()) {
      const placed = await markStreamLive(this.#ctx.db.knex, {
        name: stream.name,
        originNodeId: this.#ctx.config.nodeId,
        ingestProtocol: stream.publisher.protocol,
        codecs: stream.codecs,
        publisherSession: stream.publisher.id,
        region: this.#ctx.config.region,
      });
      if (!placed) stream.end('taken over by another origin while this one was cut off');
      else this.#ctx.logger.info({ stream: stream.name }, 'stream placed again');
    }
  }

  async close(): Promise<void> {
    this.#hls.close();
    await this.#recordings.close();
    await this.#uploads?.close();
    for (const stream of this.#streams.values()) stream.end('origin shutting down');
    await this.#rtmp?.close();
    await Promise.all(this.#releasing.values());
  }

  #authorize(stream: string, token: string | undefined, action: StreamAction): Promise<StreamClaims> {
    return authorizeStream(token, { secret: this.#ctx.clusterSecret, stream, action });
  }

  async #publish(name: string, offer: Offer) {
    if (this.#streams.has(name)) throw new Problem('stream-already-live', `stream ${name} already has a publisher`);
    const { stream, session, answer } = await PublishedStream.publishWebRtc(this.#ctx.workers, name, offer, this.#ctx.rtc, this.#ctx.logger);
    await this.place(stream);
    return { session, answer };
  }

  /**
   * Records a stream that is ready to go live: its placement row (409 when it is live elsewhere,
   * and the stream is ended), the audit entry, and its release when it ends. WHIP and RTMP both
   * come through here.
   */
  async place(stream: PublishedStream): Promise<void> {
    const { db, logger, config } = this.#ctx;
    const { name } = stream;
    try {
      if (this.#streams.has(name)) throw new Problem('stream-already-live', `stream ${name} already has a publisher`);
      const placed = await markStreamLive(db.knex, {
        name,
        originNodeId: config.nodeId,
        ingestProtocol: stream.publisher.protocol,
        codecs: stream.codecs,
        publisherSession: stream.publisher.id,
        region: config.region,
      });
      if (!placed) throw new Problem('stream-already-live', `stream ${name} is live on another origin`);
    } catch (error) {
      stream.end('placement refused');
      throw error;
    }
    this.#streams.set(name, stream);
    stream.once('ended', (reason) => {
      this.#streams.delete(name);
      logger.info({ stream: name, reason }, 'stream ended');
      const id = stream.publisher.id;
      this.#releasing.set(id, this.#release(name, id, reason).finally(() => this.#releasing.delete(id)));
    });
    await recordAudit(db.knex, {
      actor: config.nodeId,
      action: 'stream.publish',
      target: name,
      detail: { protocol: stream.publisher.protocol, codecs: stream.codecs },
    }).catch((error) => logger.warn({ err: error }, 'audit write failed'));
    logger.info({ stream: name, protocol: stream.publisher.protocol, codecs: stream.codecs }, 'stream live');
    const row = await getStream(db.knex, name).catch(() => undefined); // the origin's own --hls and --record, then
    this.#hls.placed(stream, row?.hls ?? null);
    this.#recordings.placed(stream, row?.record ?? null);
  }

  async #release(name: string, session: string, reason: string): Promise<void> {
    const { db, logger, config } = this.#ctx;
    try {
      await markStreamIdle(db.knex, name, session, reason);
      await recordAudit(db.knex, { actor: config.nodeId, action: 'stream.end', target: name, detail: { reason } });
    } catch (error) {
      // The row stays live until this node's TTL expires or it shuts down; neither loses a stream.
      logger.error({ err: error, stream: name }, 'could not release the stream placement');
    }
  }

  /** A stream published here as the root of its relay tree (media/RelayServer.ts). */
  #upstream(stream: PublishedStream): RelayUpstream {
    return {
      treeKey: 0,
      path: [this.#ctx.config.nodeId],
      publisherSession: stream.publisher.id,
      openPipe: (peer, rtc, paused) => stream.openPipe(peer, rtc, paused),
      bitrate: () => producersBitrate(stream.producers),
      pipeRendition: (pipe, codec) => stream.pipeRendition(pipe, codec),
      // The publisher feeds the origin whether or not an edge is resumed.
      resumed: () => undefined,
      onRelease: (listener) => {
        const ended = (reason: string) => listener({ type: 'end', reason });
        stream.once('ended', ended);
        return () => stream.off('ended', ended);
      },
    };
  }
}
