import { z } from 'zod';
import { HLS_MODES } from '../core/config.ts';
import { LADDER_MAX_HEIGHT, LADDER_MAX_RUNGS, LADDER_MIN_HEIGHT, LADDER_MIN_RUNGS, LADDER_RULE, ladderProblem } from '../core/rtmpLadder.ts';
import { RECORDING_ID } from '../core/recordings.ts';
import { STREAM_ACTIONS, STREAM_NAME, STREAM_NAME_RULE } from '../core/tokens.ts';
import { ADMIN_SCOPES } from '../db/repositories/adminTokens.ts';

/**
 * The admin API's request and response shapes. Requests are checked against them; the OpenAPI
 * document (balancer/openapi.ts) is generated from them, so the two cannot drift apart.
 */

export const streamName = z.string().regex(STREAM_NAME, STREAM_NAME_RULE).meta({ example: 'my-show' });
const dateTime = z.iso.datetime();

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Free text from a client: Postgres refuses NUL in text and lone UTF-16 surrogates in jsonb (both
 * were 500s, found by fuzzing), so they are refused here with a 400.
 */
export const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((v) => !v.includes('\u0000') && !LONE_SURROGATE.test(v), 'must be valid Unicode text without NUL');
const nullableDateTime = dateTime.nullable();

/** Lists are pages: `limit` items after `cursor` (the `next` of the page before). */
const MAX_PAGE = 500;
export const page = {
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(100).describe(`items per page, 1 to ${MAX_PAGE}`),
  cursor: text(200).optional().describe('the `next` of the previous page'),
};
export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), next: z.string().nullable().describe('cursor of the next page; null on the last page') });

export const streamParams = z.object({ name: streamName }).strict();
export const nodeParams = z.object({ id: text(64) }).strict();
export const tokenParams = z.object({ id: z.string().regex(/^\d{1,18}$/, 'token ids are numbers') }).strict();

/**
 * A stream's RTMP ladder (core/rtmpLadder.ts): picture heights, `"off"`, or null for the origin's
 * `--rtmp-ladder`. It applies to the stream's next RTMP publish.
 */
export const rtmpLadder = z
  .union([
    z.literal('off'),
    z
      .array(z.number().int().min(LADDER_MIN_HEIGHT).max(LADDER_MAX_HEIGHT).multipleOf(2))
      .min(LADDER_MIN_RUNGS)
      .max(LADDER_MAX_RUNGS)
      .superRefine((heights, ctx) => {
        const problem = ladderProblem(heights);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
  ])
  .nullable()
  .describe(
    `simulcast layers the origin makes from an RTMP publish of this stream (its next publish): ${LADDER_RULE}; ` +
      'a larger input is scaled down, a smaller one is never scaled up; null: the origin\'s --rtmp-ladder',
  )
  .meta({ example: [720, 360, 180] });

/** A stream's HLS packaging (media/hls/), or null for the origins' --hls. */
export const hlsMode = z
  .enum(HLS_MODES)
  .nullable()
  .describe(
    'when the origin packages the stream for LL-HLS: on-demand (at the first HLS request, stopped after --hls-linger-ms without one), ' +
      'always (from the publish on: no wait for the first viewer), off (no HLS); null: the origin\'s --hls. It applies from the next publish',
  );

/** Whether a stream is recorded (media/record/), or null for the origins' --record. */
export const recordSetting = z
  .boolean()
  .nullable()
  .describe('whether the origin records the stream (from its next publish): true, false, or null for the origins\' --record');

/** Days a stream's recordings are kept, or null for --recording-retention-days. */
export const retentionSetting = z
  .number()
  .int()
  .min(0)
  .max(36_500)
  .nullable()
  .describe('days its recordings are kept (0: until deleted); null: the cluster\'s --recording-retention-days');

export const createStreamBody = z
  .object({
    name: streamName,
    private: z.boolean().default(false).describe('a private stream needs a play token to watch'),
    rtmpLadder: rtmpLadder.default(null),
    hls: hlsMode.default(null),
    record: recordSetting.default(null),
    recordingRetentionDays: retentionSetting.default(null),
  })
  .strict();

export const updateStreamBody = z
  .object({
    private: z.boolean().optional(),
    rtmpLadder: rtmpLadder.optional(),
    hls: hlsMode.optional(),
    record: recordSetting.optional(),
    recordingRetentionDays: retentionSetting.optional(),
  })
  .strict();

/** Stream tokens last an hour by default, a week at most: a leaked one should not last. */
export const streamTokenBody = z
  .object({
    action: z.enum(STREAM_ACTIONS),
    ttlSeconds: z.number().int().min(60).max(7 * 24 * 3600).default(3600),
  })
  .strict();

export const createAdminTokenBody = z
  .object({
    label: text(100),
    scopes: z.array(z.enum(ADMIN_SCOPES)).min(1).max(ADMIN_SCOPES.length),
    ttlSeconds: z.number().int().min(60).max(366 * 24 * 3600).optional().describe('unset: the token does not expire'),
  })
  .strict();

export const streamQuery = z.object({ state: z.enum(['live', 'idle']).optional(), ...page }).strict();
export const nodeQuery = z
  .object({
    role: z.enum(['origin', 'edge', 'balancer']).optional(),
    region: text(32).optional(),
    state: z.enum(['up', 'dead', 'gone']).optional(),
    ...page,
  })
  .strict();
export const auditQuery = z
  .object({
    action: text(64).optional(),
    actor: text(128).optional(),
    target: text(256).optional(),
    outcome: z.enum(['ok', 'denied', 'failed']).optional(),
    ...page,
  })
  .strict();

export const streamView = z.object({
  name: streamName,
  state: z.enum(['live', 'idle']),
  private: z.boolean(),
  rtmpLadder,
  hls: hlsMode,
  record: recordSetting,
  recordingRetentionDays: retentionSetting,
  origin: z.object({ id: z.string(), region: z.string() }).nullable(),
  ingestProtocol: z.enum(['whip', 'rtmp']).nullable(),
  edges: z.array(
    z.object({
      id: z.string(),
      region: z.string(),
      viewers: z.number().int(),
      parent: z.string().describe('the node this edge pulls the stream from: the origin, or another edge (relay tiers)'),
    }),
  ),
  hlsEdges: z.array(z.object({ id: z.string(), region: z.string(), viewers: z.number().int() })).describe('the edges serving it over HLS, with their HLS viewers'),
  viewers: z.number().int().describe('every viewer: WebRTC and HLS'),
  hlsViewers: z.number().int().describe('HLS viewers: distinct clients that reloaded its playlist within the last 10 s'),
  recorded: z.object({ recordings: z.number().int(), bytes: z.number().int() }).describe('its recordings kept, and their size'),
  createdAt: dateTime,
  startedAt: nullableDateTime,
  endedAt: nullableDateTime,
});

export const streamUrls = z.object({
  rtmpUrl: z.string().describe('RTMP publish URL with the stream key (OBS: server + key)'),
  whipUrl: z.url(),
  whepUrl: z.url(),
  playerUrl: z.url(),
  hlsUrl: z.url().describe('LL-HLS multivariant playlist (the balancer sends players to the nearest edge); a private stream needs ?token=<play token>'),
});

export const createdStream = streamView.extend({
  streamKey: z.string().describe('RTMP stream key; shown once'),
  publishToken: z.string().describe('JWT for WHIP, valid a day'),
  playToken: z.string().describe('JWT for WHEP (needed when the stream is private), valid a day'),
  ...streamUrls.shape,
});

export const streamKey = z.object({ name: streamName, streamKey: z.string(), ...streamUrls.shape });
export const streamToken = z.object({ token: z.string(), action: z.enum(STREAM_ACTIONS), expiresAt: dateTime });

export const recordingQuery = z
  .object({
    from: z.iso.datetime({ offset: true }).optional().describe('recordings that end after this time'),
    to: z.iso.datetime({ offset: true }).optional().describe('recordings that start before this time'),
    ...page,
  })
  .strict();

export const recordingId = z.object({ id: z.string().regex(RECORDING_ID, 'a recording id is 22 letters, digits, "_" or "-"') });

export const recordingView = z.object({
  id: z.string(),
  stream: streamName,
  startedAt: dateTime,
  endedAt: dateTime.describe('the end of its last media'),
  live: z.boolean().describe('still being recorded (its playlist is an EVENT playlist: a DVR window)'),
  duration: z.number().describe('seconds of media'),
  bytes: z.number().int(),
  playlistUrl: z.url().describe('HLS playlist of the whole recording (add from= and to= for a range); a private stream needs ?token=<playback token>'),
  exportUrl: z.url().describe('the recording (or from=/to= range) as one MP4, index first'),
});

export const nodeView = z.object({
  id: z.string(),
  roles: z.array(z.enum(['origin', 'edge', 'balancer'])),
  region: z.string(),
  publicUrl: z.string(),
  version: z.string(),
  state: z.enum(['up', 'dead', 'gone']).describe('health: up (heartbeating), dead (missed its heartbeats), gone (shut down)'),
  draining: z.boolean(),
  capacity: z.number().int(),
  viewers: z.number().int(),
  streams: z.number().int(),
  bitrateOut: z.number().describe('bits per second sent, to viewers and to edges it feeds'),
  egressCapacity: z.number().describe('bits per second its network sends at most (--egress-capacity)'),
  cpu: z.number().describe('share of one machine, 0..1'),
  load: z.number().describe('what the balancer ranks by: max(viewers / capacity, cpu, bitrateOut / egressCapacity)'),
  startedAt: dateTime,
  heartbeatAt: dateTime,
});

export const capacity = z.object({
  settings: z.object({ targetUtilisation: z.number(), slackViewers: z.number().int(), minEdgesPerRegion: z.number().int() }),
  regions: z.array(
    z.object({
      region: z.string(),
      edges: z.number().int().describe('edges up and taking viewers'),
      draining: z.number().int(),
      drainingBusy: z.number().int().describe('draining edges that still have viewers'),
      viewers: z.number().int(),
      demand: z.number().int().describe('viewer slots in use: load × capacity, summed'),
      capacity: z.number().int().describe('viewer slots on offer by the edges taking viewers'),
      utilisation: z.number(),
      wantedEdges: z.number().int(),
      desiredEdges: z.number().int().describe('what an autoscaler should run: wanted + draining edges not yet empty'),
      drainCandidates: z.array(z.string()).describe('when wanted < edges: the edges to drain first'),
    }),
  ),
});

export const drainState = z.object({ id: z.string(), draining: z.boolean() });

export const auditEntry = z.object({
  id: z.string(),
  at: dateTime,
  actor: z.string().describe('admin:<token id>, a node id, or the client address of a refused request'),
  action: z.string(),
  target: z.string().nullable(),
  outcome: z.enum(['ok', 'denied', 'failed']),
  detail: z.record(z.string(), z.unknown()).nullable(),
});

export const adminToken = z.object({
  id: z.string(),
  label: z.string().nullable(),
  scopes: z.array(z.enum(ADMIN_SCOPES)),
  createdAt: dateTime,
  expiresAt: nullableDateTime,
  revokedAt: nullableDateTime,
  lastUsedAt: nullableDateTime,
});

export const createdAdminToken = adminToken.extend({ token: z.string().describe('shown once') });

export const problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  instance: z.string().optional(),
});
