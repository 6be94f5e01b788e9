import type { Knex } from 'knex';
import type { Request } from 'express';
import { z } from 'zod';
import type { Config } from '../core/config.ts';
import { Problem } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { signStreamToken, type StreamAction } from '../core/tokens.ts';
import { listAudit, recordAudit } from '../db/repositories/audit.ts';
import { listAdminTokens, newAdminToken, revokeAdminToken, storeAdminToken } from '../db/repositories/adminTokens.ts';
import { getNode, listNodes, setNodeDraining, type NodeRecord } from '../db/repositories/nodes.ts';
import { issueStreamKey, revokeStreamKeys } from '../db/repositories/streamKeys.ts';
import { deleteRecording, getRecording, listRecordings, recordingCursor, recordingLive, type RecordingRecord } from '../db/repositories/recordings.ts';
import { recordingUrls } from '../core/recordings.ts';
import { createStream, deleteStream, listStreamViews, updateStream, type StreamView } from '../db/repositories/streams.ts';
import { internalFetch, STREAMS_PATH } from '../core/internalApi.ts';
import * as s from './apiSchemas.ts';
import { actor, operation, pageOf, type Operation } from './apiOperations.ts';
import { webhookOperations } from './webhookApi.ts';
import type { RegionCapacity } from './capacity.ts';
import { openApiDocument } from './openapi.ts';
import { nodeLoad } from '../core/Role.ts';

/**
 * The admin REST API (/api/v1): streams with their keys and tokens, nodes and their drain,
 * admin tokens, the audit log, webhooks (balancer/webhookApi.ts), HAProxy. Every change is
 * audited under `admin:<token id>`.
 */

export interface AdminApiContext {
  db: Knex;
  config: Config;
  clusterSecret: string;
  logger: Logger;
  /** Reloads HAProxy now; undefined when this balancer runs none. */
  reloadHaproxy: (() => Promise<void>) | undefined;
  /** The registry changed (a drain): route with fresh data. */
  nodesChanged(): void;
  /** An admin token was revoked: stop believing cached checks. */
  tokensChanged(): void;
  /** Edges wanted per region. */
  capacity(): Promise<RegionCapacity[]>;
  /**
   * The RTMP address (rtmp://host:port/live) to publish this caller's stream to: the balancer's
   * HAProxy when it takes RTMP, else the origin the balancer would choose, if any takes RTMP.
   */
  rtmpIngest(req: Request, stream: string): Promise<string | undefined>;
}

/** Tokens handed out with a new stream (or a new key) last a day; the RTMP key does not expire. */
const STREAM_TOKEN_TTL_S = 24 * 3600;

/** How long the balancer waits for an origin to end a deleted stream's publish. */
const KICK_TIMEOUT_MS = 5000;

function nodeView(n: NodeRecord) {
  return {
    id: n.id,
    roles: n.roles,
    region: n.region,
    publicUrl: n.publicUrl,
    version: n.version,
    state: n.state,
    draining: n.draining,
    capacity: n.capacity,
    viewers: n.viewers,
    streams: n.streams,
    bitrateOut: n.bitrateOut,
    egressCapacity: n.egressCapacity,
    cpu: Number(n.cpu.toFixed(3)),
    load: Number(nodeLoad(n.viewers, n.capacity, n.cpu, n.bitrateOut, n.egressCapacity).toFixed(3)),
    startedAt: n.startedAt,
    heartbeatAt: n.heartbeatAt,
  };
}

/** The admin API's form of a stream's RTMP ladder: heights, "off", or null (the origin's default). */
type LadderSetting = number[] | 'off' | null;

/** As stored: heights highest first, [] for off, null for the origin's default. */
const storedLadder = (setting: LadderSetting): number[] | null => (setting === 'off' ? [] : setting && [...setting].sort((a, b) => b - a));
const shownLadder = (stored: number[] | null): LadderSetting => (stored && stored.length === 0 ? 'off' : stored);

/** A stream as the API shows it. */
const streamView = (view: StreamView) => ({ ...view, rtmpLadder: shownLadder(view.rtmpLadder) });

/** A recording as the API shows it, with where to play and export it. */
const recordingViewOf = (publicUrl: string) => (r: RecordingRecord) => ({
  id: r.id,
  stream: r.stream,
  startedAt: r.startedAt,
  endedAt: r.endedAt,
  live: recordingLive(r),
  duration: Number(r.duration.toFixed(3)),
  bytes: r.bytes,
  ...recordingUrls(publicUrl, r.id),
});

export function adminOperations(ctx: AdminApiContext): Operation[] {
  const { db, config } = ctx;
  const publicUrl = config.publicUrl;
  const recordingView = recordingViewOf(publicUrl);

  /**
   * Where to publish and play. RTMP goes to the balancer's HAProxy when it takes RTMP (one address
   * that outlives any origin), else to the origin nearest the caller (an encoder is set up where it
   * runs), or, when no origin with RTMP is up, to this host's RTMP port as before.
   */
  const urls = async (req: Request, name: string, streamKey: string) => ({
    rtmpUrl: `${(await ctx.rtmpIngest(req, name).catch(() => undefined)) ?? `rtmp://${new URL(publicUrl).hostname}:${config.rtmpPort || 1935}/live`}/${streamKey}`,
    whipUrl: `${publicUrl}/whip/${name}`,
    whepUrl: `${publicUrl}/whep/${name}`,
    playerUrl: `${publicUrl}/play/${name}`,
    hlsUrl: `${publicUrl}/hls/${name}/index.m3u8`,
  });
  const streamToken = (name: string, action: StreamAction, ttlSeconds = STREAM_TOKEN_TTL_S) =>
    signStreamToken(ctx.clusterSecret, { stream: name, action, ttlSeconds });
  const existing = async (name: string): Promise<StreamView> => {
    const [view] = await listStreamViews(db, { name });
    if (!view) throw new Problem('not-found', `no stream named ${name}`);
    return view;
  };
  const shown = async (name: string) => streamView(await existing(name));

  /** Ends a live stream on its origin: its publisher is disconnected, its relays and viewers end with it. */
  const kick = async (view: StreamView): Promise<boolean> => {
    if (!view.origin) return false;
    const origin = await getNode(db, view.origin.id);
    if (!origin || origin.state !== 'up') return false;
    try {
      const res = await internalFetch(origin.publicUrl, `${STREAMS_PATH}/${view.name}`, ctx.clusterSecret, {
        method: 'DELETE',
        signal: AbortSignal.timeout(KICK_TIMEOUT_MS),
      });
      return res.status === 204;
    } catch (error) {
      ctx.logger.warn({ err: error, stream: view.name, origin: origin.id }, 'could not reach the origin to end a deleted stream');
      return false;
    }
  };

  const operations: Operation[] = [
    operation({
      method: 'get',
      path: '/openapi.json',
      operationId: 'getOpenApi',
      tag: 'meta',
      summary: 'This document',
      scope: null,
      responses: { 200: { description: 'the OpenAPI 3.1 document' } },
      handle: async () => ({ status: 200, body: openApiDocument(operations, { version: config.version, serverUrl: publicUrl }) }),
    }),

    operation({
      method: 'post',
      path: '/streams',
      operationId: 'createStream',
      tag: 'streams',
      summary: 'Create a stream: its RTMP key, a publish and a play token, and its URLs',
      scope: 'write',
      body: s.createStreamBody,
      responses: { 201: { description: 'created; the key and tokens are shown once', schema: s.createdStream }, 409: { description: 'a stream with that name exists' } },
      handle: async ({ body, token, req }) => {
        if (
          !(await createStream(db, {
            name: body.name,
            private: body.private,
            rtmpLadder: storedLadder(body.rtmpLadder),
            hls: body.hls,
            record: body.record,
            recordingRetentionDays: body.recordingRetentionDays,
          }))
        ) {
          throw new Problem('stream-exists', `a stream named ${body.name} exists; rotate its key with POST /streams/${body.name}/key`);
        }
        const streamKey = await issueStreamKey(db, body.name);
        await recordAudit(db, { actor: actor(token), action: 'stream.create', target: body.name, detail: { private: body.private, rtmpLadder: body.rtmpLadder, hls: body.hls, record: body.record, recordingRetentionDays: body.recordingRetentionDays } });
        const [publishToken, playToken] = await Promise.all([streamToken(body.name, 'publish'), streamToken(body.name, 'play')]);
        return { status: 201, body: { ...(await shown(body.name)), streamKey, publishToken, playToken, ...(await urls(req, body.name, streamKey)) } };
      },
    }),
    operation({
      method: 'get',
      path: '/streams',
      operationId: 'listStreams',
      tag: 'streams',
      summary: 'List streams, live and idle, with their origin, edges and viewers (by name)',
      scope: 'read',
      query: s.streamQuery,
      responses: { 200: { description: 'a page of streams', schema: s.pageOf(s.streamView) } },
      handle: async ({ query }) => {
        const rows = await listStreamViews(db, { state: query.state, after: query.cursor, limit: query.limit + 1 });
        return { status: 200, body: pageOf(rows.map(streamView), query.limit, (v) => v.name) };
      },
    }),
    operation({
      method: 'get',
      path: '/streams/{name}',
      operationId: 'getStream',
      tag: 'streams',
      summary: 'One stream',
      scope: 'read',
      params: s.streamParams,
      responses: { 200: { description: 'the stream', schema: s.streamView }, 404: { description: 'no such stream' } },
      handle: async ({ params }) => ({ status: 200, body: await shown(params.name) }),
    }),
    operation({
      method: 'patch',
      path: '/streams/{name}',
      operationId: 'updateStream',
      tag: 'streams',
      summary: 'Make a stream private (play token needed) or public; set its RTMP ladder (from its next RTMP publish), its HLS packaging and recording (from its next publish), and how long its recordings are kept',
      scope: 'write',
      params: s.streamParams,
      body: s.updateStreamBody,
      responses: { 200: { description: 'the stream', schema: s.streamView }, 404: { description: 'no such stream' } },
      handle: async ({ params, body, token }) => {
        const settings = {
          private: body.private,
          rtmpLadder: body.rtmpLadder === undefined ? undefined : storedLadder(body.rtmpLadder),
          hls: body.hls,
          record: body.record,
          recordingRetentionDays: body.recordingRetentionDays,
        };
        if (!(await updateStream(db, params.name, settings))) throw new Problem('not-found', `no stream named ${params.name}`);
        await recordAudit(db, { actor: actor(token), action: 'stream.update', target: params.name, detail: body });
        return { status: 200, body: await shown(params.name) };
      },
    }),
    operation({
      method: 'delete',
      path: '/streams/{name}',
      operationId: 'deleteStream',
      tag: 'streams',
      summary: 'Delete a stream: its publisher and viewers are disconnected, its keys revoked',
      scope: 'write',
      params: s.streamParams,
      responses: { 204: { description: 'deleted' }, 404: { description: 'no such stream' } },
      handle: async ({ params, token }) => {
        const view = await existing(params.name);
        const kicked = view.state === 'live' ? await kick(view) : false;
        await deleteStream(db, params.name);
        await recordAudit(db, { actor: actor(token), action: 'stream.delete', target: params.name, detail: { wasLive: view.state === 'live', kicked } });
        return { status: 204 };
      },
    }),
    operation({
      method: 'get',
      path: '/streams/{name}/recordings',
      operationId: 'listRecordings',
      tag: 'recordings',
      summary: 'A stream\'s recordings that overlap a time range, oldest first',
      scope: 'read',
      params: s.streamParams,
      query: s.recordingQuery,
      responses: { 200: { description: 'one page of recordings', schema: s.pageOf(s.recordingView) } },
      handle: async ({ params, query }) => {
        const rows = await listRecordings(db, {
          stream: params.name,
          from: query.from ? new Date(query.from) : undefined,
          to: query.to ? new Date(query.to) : undefined,
          limit: query.limit + 1,
          after: query.cursor,
        }).catch((error: unknown) => {
          if (error instanceof TypeError) throw new Problem('invalid-request', `query.cursor: ${error.message}`);
          throw error;
        });
        const page = pageOf(rows, query.limit, recordingCursor);
        return { status: 200, body: { items: page.items.map(recordingView), next: page.next } };
      },
    }),
    operation({
      method: 'get',
      path: '/recordings/{id}',
      operationId: 'getRecording',
      tag: 'recordings',
      summary: 'One recording, with its playlist and export URLs',
      scope: 'read',
      params: s.recordingId,
      responses: { 200: { description: 'the recording', schema: s.recordingView }, 404: { description: 'no such recording' } },
      handle: async ({ params }) => {
        const recording = await getRecording(db, params.id);
        if (!recording) throw new Problem('not-found', 'no such recording');
        return { status: 200, body: recordingView(recording) };
      },
    }),
    operation({
      method: 'delete',
      path: '/recordings/{id}',
      operationId: 'deleteRecording',
      tag: 'recordings',
      summary: 'Delete a recording: it goes from the index at once, its files from their node\'s store at its next sweep (within a minute)',
      scope: 'write',
      params: s.recordingId,
      responses: { 204: { description: 'deleted' }, 404: { description: 'no such recording' } },
      handle: async ({ params, token }) => {
        const recording = await getRecording(db, params.id);
        if (!recording || !(await deleteRecording(db, params.id))) throw new Problem('not-found', 'no such recording');
        await recordAudit(db, {
          actor: actor(token),
          action: 'recording.delete',
          target: recording.stream,
          detail: { recording: recording.id, startedAt: recording.startedAt.toISOString(), duration: recording.duration, bytes: recording.bytes },
        });
        return { status: 204 };
      },
    }),
    operation({
      method: 'post',
      path: '/streams/{name}/key',
      operationId: 'rotateStreamKey',
      tag: 'streams',
      summary: 'Issue a new RTMP key (the old one stops working)',
      scope: 'write',
      params: s.streamParams,
      responses: { 201: { description: 'the new key; shown once', schema: s.streamKey }, 404: { description: 'no such stream' } },
      handle: async ({ params, token, req }) => {
        await existing(params.name);
        const streamKey = await issueStreamKey(db, params.name);
        await recordAudit(db, { actor: actor(token), action: 'stream.key.rotate', target: params.name });
        return { status: 201, body: { name: params.name, streamKey, ...(await urls(req, params.name, streamKey)) } };
      },
    }),
    operation({
      method: 'delete',
      path: '/streams/{name}/key',
      operationId: 'revokeStreamKey',
      tag: 'streams',
      summary: 'Revoke the RTMP key (no RTMP publish until a new one is issued)',
      scope: 'write',
      params: s.streamParams,
      responses: { 204: { description: 'revoked' }, 404: { description: 'no such stream' } },
      handle: async ({ params, token }) => {
        await existing(params.name);
        const revoked = await revokeStreamKeys(db, params.name);
        await recordAudit(db, { actor: actor(token), action: 'stream.key.revoke', target: params.name, detail: { revoked } });
        return { status: 204 };
      },
    }),
    operation({
      method: 'post',
      path: '/streams/{name}/tokens',
      operationId: 'createStreamToken',
      tag: 'streams',
      summary: 'Sign a publish (WHIP, RTMP), play (WHEP, HLS) or playback (its recordings) token for the stream',
      scope: 'write',
      params: s.streamParams,
      body: s.streamTokenBody,
      responses: { 201: { description: 'the token', schema: s.streamToken }, 404: { description: 'no such stream' } },
      handle: async ({ params, body, token }) => {
        await existing(params.name);
        const jwt = await streamToken(params.name, body.action, body.ttlSeconds);
        await recordAudit(db, { actor: actor(token), action: 'stream.token', target: params.name, detail: { action: body.action, ttlSeconds: body.ttlSeconds } });
        return { status: 201, body: { token: jwt, action: body.action, expiresAt: new Date(Date.now() + body.ttlSeconds * 1000) } };
      },
    }),

    operation({
      method: 'get',
      path: '/nodes',
      operationId: 'listNodes',
      tag: 'nodes',
      summary: 'List nodes with their role, region, load, health and drain (by id)',
      scope: 'read',
      query: s.nodeQuery,
      responses: { 200: { description: 'a page of nodes', schema: s.pageOf(s.nodeView) } },
      handle: async ({ query }) => {
        const rows = await listNodes(db, { role: query.role, region: query.region, state: query.state, after: query.cursor, limit: query.limit + 1 });
        return { status: 200, body: pageOf(rows.map(nodeView), query.limit, (n) => n.id) };
      },
    }),
    ...(['drain', 'undrain'] as const).map((action) =>
      operation({
        method: 'post',
        path: `/nodes/{id}/${action}`,
        operationId: `${action}Node`,
        tag: 'nodes',
        summary: action === 'drain' ? 'Drain a node: no new viewers or streams; the ones it has stay' : 'End a drain',
        scope: 'write',
        params: s.nodeParams,
        responses: { 200: { description: 'the node’s drain state', schema: s.drainState }, 404: { description: 'no such node' } },
        handle: async ({ params, token }) => {
          const draining = action === 'drain';
          if (!(await setNodeDraining(db, params.id, draining))) throw new Problem('not-found', `no node ${params.id}`);
          await recordAudit(db, { actor: actor(token), action: `node.${action}`, target: params.id });
          ctx.nodesChanged();
          return { status: 200, body: { id: params.id, draining } };
        },
      }),
    ),

    operation({
      method: 'get',
      path: '/capacity',
      operationId: 'getCapacity',
      tag: 'nodes',
      summary: 'Edges wanted per region, for an autoscaler (also on /metrics as relaycast_region_desired_edges)',
      scope: 'read',
      responses: { 200: { description: 'the plan per region', schema: s.capacity } },
      handle: async () => ({
        status: 200,
        body: {
          settings: { targetUtilisation: config.targetUtilisation, slackViewers: config.slackViewers, minEdgesPerRegion: config.minEdgesPerRegion },
          regions: await ctx.capacity(),
        },
      }),
    }),

    operation({
      method: 'get',
      path: '/audit',
      operationId: 'listAudit',
      tag: 'audit',
      summary: 'Who did what, when, and whether it was allowed (newest first)',
      scope: 'read',
      query: s.auditQuery,
      responses: { 200: { description: 'a page of audit entries', schema: s.pageOf(s.auditEntry) } },
      handle: async ({ query }) => {
        if (query.cursor !== undefined && !/^\d{1,18}$/.test(query.cursor)) throw new Problem('invalid-request', 'query.cursor: not a cursor of this list');
        const { limit, cursor, ...filter } = query;
        const rows = await listAudit(db, { ...filter, before: cursor, limit: limit + 1 });
        return { status: 200, body: pageOf(rows, limit, (e) => e.id) };
      },
    }),

    operation({
      method: 'get',
      path: '/tokens',
      operationId: 'listAdminTokens',
      tag: 'admin tokens',
      summary: 'List admin tokens (never their secrets)',
      scope: 'read',
      responses: { 200: { description: 'the tokens', schema: z.object({ items: z.array(s.adminToken) }) } },
      handle: async () => ({ status: 200, body: { items: await listAdminTokens(db) } }),
    }),
    operation({
      method: 'post',
      path: '/tokens',
      operationId: 'createAdminToken',
      tag: 'admin tokens',
      summary: 'Create an admin token with scopes',
      scope: 'write',
      body: s.createAdminTokenBody,
      responses: { 201: { description: 'the token; shown once', schema: s.createdAdminToken } },
      handle: async ({ body, token }) => {
        const secret = newAdminToken();
        // One transaction: a token whose audit row cannot be written is not kept either.
        const record = await db.transaction(async (trx) => {
          const stored = await storeAdminToken(trx, secret, body);
          await recordAudit(trx, { actor: actor(token), action: 'token.create', target: `admin:${stored!.id}`, detail: { label: body.label, scopes: body.scopes } });
          return stored;
        });
        return { status: 201, body: { ...record, token: secret } };
      },
    }),
    operation({
      method: 'delete',
      path: '/tokens/{id}',
      operationId: 'revokeAdminToken',
      tag: 'admin tokens',
      summary: 'Revoke an admin token',
      scope: 'write',
      params: s.tokenParams,
      responses: { 204: { description: 'revoked' }, 404: { description: 'no such live token' } },
      handle: async ({ params, token }) => {
        if (!(await revokeAdminToken(db, params.id))) throw new Problem('not-found', `no live admin token ${params.id}`);
        ctx.tokensChanged();
        await recordAudit(db, { actor: actor(token), action: 'token.revoke', target: `admin:${params.id}` });
        return { status: 204 };
      },
    }),

    ...webhookOperations(db),

    operation({
      method: 'post',
      path: '/haproxy/reload',
      operationId: 'reloadHaproxy',
      tag: 'haproxy',
      summary: 'Render the HAProxy configuration from the registry and reload HAProxy now',
      scope: 'write',
      responses: {
        204: { description: 'reloaded' },
        409: { description: 'this balancer runs no HAProxy' },
        502: { description: 'the reload failed (the rendered config was refused, or HAProxy did not answer); HAProxy runs the previous config' },
      },
      handle: async ({ token }) => {
        if (!ctx.reloadHaproxy) throw new Problem('no-haproxy', 'this balancer does not run HAProxy (set --haproxy-bin)');
        await ctx.reloadHaproxy().catch((error: unknown) => {
          throw new Problem('haproxy-reload-failed', (error as Error).message);
        });
        await recordAudit(db, { actor: actor(token), action: 'haproxy.reload' });
        return { status: 204 };
      },
    }),
  ];
  return operations;
}
