/**
 * The fan-out baseline: a plain mediasoup broadcast with no Relaycast code, no database and no
 * control plane. The publisher's WebRtcTransport and producers on an ingest worker's router,
 * piped (Router.pipeToRouter) into a router on the fan-out worker, which holds a WebRtcTransport
 * and a consumer per track for each viewer: mediasoup's own way to spread a broadcast over
 * workers, and the same split as Relaycast's origin (ingest) and edge (fan-out, fed by a pipe).
 * With ingest and fan-out on one worker, the publisher's congestion control reads the fan-out
 * worker's delays as congestion on a busy machine and cuts its bitrate; the fan-out worker is the
 * one the benchmark compares with the edge's. Just enough WHIP/WHEP-like HTTP for the benchmark's
 * libwebrtc clients: POST an SDP offer to /whip/<stream> or /whep/<stream>, get an answer (201,
 * Location); DELETE the Location. /whip/<stream>?single puts the viewers on the ingest router
 * itself (one router, one hop: the latency benchmark's reference). GET /stats answers the process
 * ids and counts. POST /forward/<stream> with [{"kind","payloadType","port","rtcpPort"}] sends the
 * stream's tracks from the ingest router as plain RTP to those ports on 127.0.0.1 (what feeds
 * Janus's streaming mountpoint in the fan-out benchmark: the same publisher's stream, without
 * touching the fan-out worker).
 *
 * Kept as close to what Relaycast's media path does per viewer as a plain app would be (same
 * transport listen addresses, UDP and TCP; no RTX to viewers; the same key frame request delay on
 * the producer; a key frame request when a viewer connects), so that the comparison is of
 * everything around the media, not of media settings.
 *
 *   node --import tsx bench/baseline/server.ts --port 0 [--worker-bin path] [--min-port 30000 --max-port 32000]
 *       [--mediasoup <another mediasoup installation's package directory>]
 *   prints {"event":"listening","port":…,"mediasoup":"<version>","pid":…,"ingestWorkerPid":…,"fanoutWorkerPid":…} when ready
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type * as Mediasoup from 'mediasoup';
import type { Consumer, MediaKind, Producer, Router, RtpCapabilities, RtpCodecCapability, RtpParameters, RouterRtpCodecCapability, WebRtcTransport } from 'mediasoup/types';
import * as sdpTransform from 'sdp-transform';
import type { MediaDescription, SessionDescription } from 'sdp-transform';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'worker-bin': { type: 'string' },
    'listen-ip': { type: 'string', default: '127.0.0.1' },
    'min-port': { type: 'string', default: '30000' },
    'max-port': { type: 'string', default: '32000' },
    mediasoup: { type: 'string' },
  },
});
/**
 * The mediasoup library: the project's, or with --mediasoup the one installed in that directory
 * (another version, to compare versions on the same code; its worker must be of the same version,
 * --worker-bin, as the library and the worker speak a protocol that changes between versions).
 */
const mediasoup = (values.mediasoup ? createRequire(join(resolve(values.mediasoup), 'package.json'))('./') : await import('mediasoup')) as typeof Mediasoup;
const LISTEN_IP = values['listen-ip'];
const PORT_RANGE = { min: Number(values['min-port']), max: Number(values['max-port']) };
const KEY_FRAME_REQUEST_DELAY_MS = 350;

const ingestWorker = await mediasoup.createWorker({ workerBin: values['worker-bin'], logLevel: 'warn' });
const fanoutWorker = await mediasoup.createWorker({ workerBin: values['worker-bin'], logLevel: 'warn' });
for (const w of [ingestWorker, fanoutWorker]) w.on('died', () => process.exit(1));

interface Stream {
  /** The viewers' router (fan-out worker) and the producers piped into it. */
  router: Router;
  producers: Producer[];
  /** The publisher's router (ingest worker) and its producers. */
  ingest: Router;
  sources: Producer[];
  publisher: WebRtcTransport;
}
const streams = new Map<string, Stream>();
const sessions = new Map<string, { transport: WebRtcTransport; stream: string; viewer: boolean }>();
let viewers = 0;

async function createTransport(router: Router): Promise<WebRtcTransport> {
  return router.createWebRtcTransport({
    listenInfos: [
      { protocol: 'udp', ip: LISTEN_IP, portRange: PORT_RANGE },
      { protocol: 'tcp', ip: LISTEN_IP, portRange: PORT_RANGE },
    ],
    preferUdp: true,
    initialAvailableOutgoingBitrate: 1_000_000,
  });
}

// ---- minimal SDP --------------------------------------------------------------------------------

function fmtp(m: MediaDescription, pt: number): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const pair of m.fmtp?.find((f) => f.payload === pt)?.config.split(';') ?? []) {
    const [k, v] = pair.split('=').map((s) => s.trim());
    if (k && v !== undefined) out[k] = /^\d+$/.test(v) && k !== 'profile-level-id' ? Number(v) : v;
  }
  return out;
}

function feedback(m: MediaDescription, pt: number) {
  return (m.rtcpFb ?? []).filter((f) => String(f.payload) === String(pt) || f.payload === '*').map((f) => ({ type: f.type, parameter: f.subtype ?? '' }));
}

/** The offer's Opus or VP8 payload (the only codecs the benchmark sends). */
function mainCodec(m: MediaDescription) {
  return m.rtp.find((r) => /^(opus|vp8)$/i.test(r.codec));
}

function dtlsOf(session: SessionDescription) {
  const fp = session.fingerprint ?? session.media.find((m) => m.fingerprint)?.fingerprint;
  if (!fp) throw new Error('no fingerprint');
  return { role: 'client' as const, fingerprints: [{ algorithm: fp.type.toLowerCase() as 'sha-256', value: fp.hash }] };
}

function answer(offer: SessionDescription, transport: WebRtcTransport, sections: Map<string, { params: RtpParameters; send: boolean }>): string {
  const fp = transport.dtlsParameters.fingerprints.find((f) => f.algorithm === 'sha-256')!;
  const media = offer.media.map((m) => {
    const mid = String(m.mid);
    const s = sections.get(mid);
    if (!s) return { type: m.type, port: 0, protocol: m.protocol, payloads: String(m.payloads).split(' ')[0], mid, direction: 'inactive', rtp: [], fmtp: [] } as unknown as MediaDescription;
    const { params } = s;
    const out: MediaDescription = {
      type: m.type,
      port: 7,
      protocol: 'UDP/TLS/RTP/SAVPF',
      payloads: params.codecs.map((c) => c.payloadType).join(' '),
      connection: { version: 4, ip: '127.0.0.1' },
      mid,
      direction: s.send ? 'sendonly' : 'recvonly',
      iceUfrag: transport.iceParameters.usernameFragment,
      icePwd: transport.iceParameters.password,
      fingerprint: { type: fp.algorithm, hash: fp.value },
      setup: 'passive',
      rtcpMux: 'rtcp-mux',
      rtcpRsize: 'rtcp-rsize',
      ext: (params.headerExtensions ?? []).map((e) => ({ value: e.id, uri: e.uri })),
      candidates: transport.iceCandidates.map((c) => ({
        foundation: c.foundation, component: 1, transport: c.protocol, priority: c.priority, ip: c.address, port: c.port, type: c.type, ...(c.tcpType ? { tcptype: c.tcpType } : {}),
      })),
      endOfCandidates: 'end-of-candidates',
      rtp: params.codecs.map((c) => ({ payload: c.payloadType, codec: c.mimeType.split('/')[1]!, rate: c.clockRate, ...(c.channels && c.channels > 1 ? { encoding: c.channels } : {}) })),
      fmtp: params.codecs
        .map((c) => ({ payload: c.payloadType, config: Object.entries(c.parameters ?? {}).map(([k, v]) => `${k}=${v}`).join(';') }))
        .filter((f) => f.config),
      rtcpFb: params.codecs.flatMap((c) => (c.rtcpFeedback ?? []).map((f) => ({ payload: c.payloadType, type: f.type, ...(f.parameter ? { subtype: f.parameter } : {}) }))),
    };
    const ssrc = params.encodings?.[0]?.ssrc;
    if (s.send && ssrc !== undefined) out.ssrcs = [{ id: ssrc, attribute: 'cname', value: params.rtcp?.cname ?? 'baseline' }, { id: ssrc, attribute: 'msid', value: `baseline ${mid}` }];
    return out;
  });
  return sdpTransform.write({
    version: 0,
    origin: { username: '-', sessionId: Date.now(), sessionVersion: 2, netType: 'IN', ipVer: 4, address: '127.0.0.1' },
    name: '-',
    timing: { start: 0, stop: 0 },
    icelite: 'ice-lite',
    groups: [{ type: 'BUNDLE', mids: [...sections.keys()].join(' ') }],
    msidSemantic: { semantic: 'WMS', token: '*' },
    media,
  } as unknown as SessionDescription);
}

// ---- publish and play ---------------------------------------------------------------------------

/** `single`: viewers on the ingest router itself (one router, one worker, one hop): the latency baseline. */
async function publish(name: string, sdp: string, single = false): Promise<{ id: string; answer: string }> {
  if (streams.has(name)) throw Object.assign(new Error('already live'), { status: 409 });
  const offer = sdpTransform.parse(sdp);
  // The router takes what the publisher sends, with its payload types (the viewers are the same
  // libwebrtc and use the same ones, so consumers need no per-viewer mapping).
  const mediaCodecs: RouterRtpCodecCapability[] = [];
  for (const m of offer.media) {
    const c = mainCodec(m);
    if (!c) continue;
    const kind = m.type as MediaKind;
    mediaCodecs.push({ kind, mimeType: `${kind}/${c.codec}`, clockRate: c.rate ?? 90000, preferredPayloadType: c.payload, ...(kind === 'audio' ? { channels: 2 } : {}) } as RouterRtpCodecCapability);
  }
  const router = await ingestWorker.createRouter({ mediaCodecs });
  const fanout = single ? router : await fanoutWorker.createRouter({ mediaCodecs });
  const transport = await createTransport(router);
  await transport.connect({ dtlsParameters: dtlsOf(offer) });
  const stream: Stream = { router: fanout, producers: [], ingest: router, sources: [], publisher: transport };
  const sections = new Map<string, { params: RtpParameters; send: boolean }>();
  for (const m of offer.media) {
    const c = mainCodec(m);
    if (!c) continue;
    const kind = m.type as MediaKind;
    const rtx = m.rtp.find((r) => r.codec.toLowerCase() === 'rtx' && fmtp(m, r.payload).apt === c.payload);
    const group = m.ssrcGroups?.find((g) => g.semantics === 'FID')?.ssrcs.split(' ').map(Number);
    const ssrc = group?.[0] ?? Number(m.ssrcs?.[0]?.id);
    const known = new Set(router.rtpCapabilities.headerExtensions?.filter((e) => e.kind === kind).map((e) => e.uri));
    const params: RtpParameters = {
      mid: String(m.mid),
      codecs: [
        { mimeType: `${kind}/${c.codec}`, payloadType: c.payload, clockRate: c.rate ?? 90000, ...(kind === 'audio' ? { channels: c.encoding ?? 1 } : {}), parameters: fmtp(m, c.payload), rtcpFeedback: feedback(m, c.payload) },
        ...(rtx ? [{ mimeType: `${kind}/rtx`, payloadType: rtx.payload, clockRate: rtx.rate ?? 90000, parameters: { apt: c.payload }, rtcpFeedback: [] }] : []),
      ],
      headerExtensions: (m.ext ?? []).filter((e) => known.has(e.uri as never)).map((e) => ({ uri: e.uri as never, id: e.value })),
      encodings: [{ ssrc, ...(rtx && group?.[1] ? { rtx: { ssrc: group[1] } } : {}) }],
      rtcp: { cname: m.ssrcs?.find((s) => s.attribute === 'cname')?.value, reducedSize: true },
    };
    const producer = await transport.produce({ kind, rtpParameters: params, keyFrameRequestDelay: kind === 'video' ? KEY_FRAME_REQUEST_DELAY_MS : undefined });
    stream.sources.push(producer);
    if (single) {
      stream.producers.push(producer);
    } else {
      const { pipeProducer } = await router.pipeToRouter({ producerId: producer.id, router: fanout });
      stream.producers.push(pipeProducer!);
    }
    sections.set(String(m.mid), { params, send: false });
  }
  streams.set(name, stream);
  const id = randomBytes(12).toString('hex');
  sessions.set(id, { transport, stream: name, viewer: false });
  transport.observer.once('close', () => {
    sessions.delete(id);
    router.close();
    fanout.close();
    streams.delete(name);
  });
  return { id, answer: answer(offer, transport, sections) };
}

async function play(name: string, sdp: string): Promise<{ id: string; answer: string }> {
  const stream = streams.get(name);
  if (!stream) throw Object.assign(new Error('not live'), { status: 404 });
  const offer = sdpTransform.parse(sdp);
  const transport = await createTransport(stream.router);
  const sections = new Map<string, { params: RtpParameters; send: boolean }>();
  const consumers: Consumer[] = [];
  try {
    for (const m of offer.media) {
      const kind = m.type as MediaKind;
      const producer = stream.producers.find((p) => p.kind === kind);
      if (!producer) continue;
      const rtpCapabilities: RtpCapabilities = {
        codecs: m.rtp
          .filter((r) => /^(opus|vp8)$/i.test(r.codec))
          .map((r) => ({ kind, mimeType: `${kind}/${r.codec}`, preferredPayloadType: r.payload, clockRate: r.rate ?? 90000, ...(kind === 'audio' ? { channels: r.encoding ?? 2 } : {}), parameters: fmtp(m, r.payload), rtcpFeedback: feedback(m, r.payload) }) as RtpCodecCapability),
        headerExtensions: [],
      };
      if (!stream.router.canConsume({ producerId: producer.id, rtpCapabilities })) continue;
      const consumer = await transport.consume({ producerId: producer.id, rtpCapabilities, mid: String(m.mid), enableRtx: false });
      const pt = consumer.rtpParameters.codecs[0]!.payloadType;
      if (!m.rtp.some((r) => r.payload === pt)) throw new Error(`payload type ${pt} is not the viewer's`);
      consumers.push(consumer);
      sections.set(String(m.mid), { params: consumer.rtpParameters, send: true });
    }
    await transport.connect({ dtlsParameters: dtlsOf(offer) });
  } catch (error) {
    transport.close();
    throw error;
  }
  transport.on('dtlsstatechange', (state) => {
    if (state === 'connected') for (const c of consumers) if (c.kind === 'video') void c.requestKeyFrame().catch(() => undefined);
    if (state === 'failed' || state === 'closed') transport.close();
  });
  const id = randomBytes(12).toString('hex');
  sessions.set(id, { transport, stream: name, viewer: true });
  viewers++;
  transport.observer.once('close', () => {
    sessions.delete(id);
    viewers--;
  });
  return { id, answer: answer(offer, transport, sections) };
}

/** Where POST /forward/<stream> sends a track: plain RTP with this payload type to these ports on 127.0.0.1. */
interface ForwardTarget {
  kind: MediaKind;
  payloadType: number;
  port: number;
  rtcpPort: number;
}

/**
 * Sends the stream's tracks as plain RTP from its ingest router, each to its target's ports, as a tool feeding an RTP receiver does; a video key frame is asked for at
 * once (a new consumer forwards no video before one). They stop with the stream.
 */
async function forward(name: string, targets: ForwardTarget[]): Promise<void> {
  const stream = streams.get(name);
  if (!stream) throw Object.assign(new Error('not live'), { status: 404 });
  for (const target of targets) {
    const producer = stream.sources.find((p) => p.kind === target.kind);
    const codec = stream.ingest.rtpCapabilities.codecs?.find((c) => c.kind === target.kind && !/\/rtx$/i.test(c.mimeType));
    if (!producer || !codec) throw Object.assign(new Error(`no ${target.kind} track`), { status: 404 });
    const transport = await stream.ingest.createPlainTransport({ listenInfo: { protocol: 'udp', ip: LISTEN_IP }, rtcpMux: false, comedia: false });
    await transport.connect({ ip: '127.0.0.1', port: target.port, rtcpPort: target.rtcpPort });
    const consumer = await transport.consume({ producerId: producer.id, rtpCapabilities: { codecs: [{ ...codec, preferredPayloadType: target.payloadType }], headerExtensions: [] } });
    if (consumer.kind === 'video') await consumer.requestKeyFrame();
  }
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}

const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
  try {
    const url = new URL(req.url ?? '/', 'http://x');
    const [, kind, name] = url.pathname.split('/');
    if (req.method === 'POST' && (kind === 'whip' || kind === 'whep') && name) {
      const text = await body(req);
      const { id, answer: sdp } = kind === 'whip' ? await publish(name, text, url.searchParams.has('single')) : await play(name, text);
      res.writeHead(201, { 'content-type': 'application/sdp', location: `/session/${id}` }).end(sdp);
    } else if (req.method === 'POST' && kind === 'forward' && name) {
      await forward(name, JSON.parse(await body(req)) as ForwardTarget[]);
      res.writeHead(204).end();
    } else if (req.method === 'DELETE' && kind === 'session' && name) {
      sessions.get(name)?.transport.close();
      res.writeHead(200).end();
    } else if (req.method === 'GET' && kind === 'stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ pid: process.pid, ingestWorkerPid: ingestWorker.pid, fanoutWorkerPid: fanoutWorker.pid, viewers, streams: streams.size }));
    } else {
      res.writeHead(404).end();
    }
  } catch (error) {
    const status = (error as { status?: number }).status ?? 500;
    res.writeHead(status, { 'content-type': 'text/plain' }).end((error as Error).message);
  }
});
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(
    `${JSON.stringify({ event: 'listening', port: (server.address() as AddressInfo).port, mediasoup: mediasoup.version, pid: process.pid, ingestWorkerPid: ingestWorker.pid, fanoutWorkerPid: fanoutWorker.pid })}\n`,
  );
});
const stop = () => {
  server.close();
  ingestWorker.close();
  fanoutWorker.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
