import express, { type Request, type Response, type Router } from 'express';
import { Problem } from '../core/errors.ts';
import { CORS } from '../core/http.ts';
import { iceServerLink, type IceServer } from '../core/iceServers.ts';
import type { Admission } from '../core/Admission.ts';
import { bearerToken, streamName, type StreamAction, type StreamClaims } from '../core/tokens.ts';
import type { Logger } from '../core/logger.ts';
import { buildSdpFrag, parseAnswer, parseOffer, parseSdpFrag, type Offer } from './sdp.ts';
import type { WebRtcSession } from './WebRtcSession.ts';

/**
 * The HTTP side of WHIP (RFC 9725) and WHEP, which share it: POST an SDP offer to
 * `/{whip|whep}/{stream}` → 201 with the answer, `Location` of the session and its `ETag`;
 * PATCH the session with a trickle-ice-sdpfrag (ICE restart included); DELETE it; OPTIONS for
 * CORS preflight. What differs — who may do it and what media the session carries — is the
 * handler's.
 *
 * A WHEP counter-offer (draft-ietf-wish-whep): a client that sends `Prefer: counter-offer` with
 * its offer may get 406 with the endpoint's own offer instead of an answer (`Preference-Applied:
 * counter-offer`, with `Location` and `ETag` as for a 201), and PATCHes the session with its SDP
 * answer (application/sdp) → 204. Clients that do not ask get the 201 as before.
 */

export interface SignallingHandler {
  /** Throws a 401/403 Problem unless `token` may `action` on `stream`; returns its claims (null: no token, a public stream). */
  authorize(stream: string, token: string | undefined, action: StreamAction): Promise<StreamClaims | null>;
  /**
   * Sets up a session for the offer and returns it with the SDP answer; or, when the client would
   * take one (`counterOffer`) and the handler has a better session to offer, with an SDP offer of
   * its own, in which case the session connects once the client's answer comes (session.answer).
   */
  accept(stream: string, offer: Offer, options: { counterOffer: boolean }): Promise<{ session: WebRtcSession; answer: string } | { session: WebRtcSession; counterOffer: string }>;
  /** Ends a session the client DELETEd; resolves once what it held is released. */
  end?(session: WebRtcSession): Promise<void>;
}

/**
 * A WHEP/WHIP protocol extension served under each session's URL (`<session>/<path>`), advertised
 * in the 201's `Link` header with its URN as the relation (draft-ietf-wish-whep, "Protocol
 * extensions").
 */
export interface SessionExtension {
  /** The Link relation: the extension's URN. */
  rel: string;
  /** The extension's URL is `<session>/<path>`. */
  path: string;
  /** More parameters for its Link (e.g. `events="…"`). */
  linkParams?: string;
  /** A request to `<session>/<path>`, once the session and the client's token were checked. */
  handle(session: WebRtcSession, req: Request, res: Response): Promise<void>;
  /**
   * A request to `<session>/<path>/<item>`. No token is checked: `item` is an unguessable id the
   * extension handed out, the capability itself (an EventSource cannot send a bearer token).
   */
  handleItem?(session: WebRtcSession, item: string, req: Request, res: Response): Promise<void>;
}

export interface SignallingOptions {
  kind: 'whip' | 'whep';
  publicUrl: string;
  /** STUN/TURN servers for `Link: rel="ice-server"`. */
  iceServers: IceServer[];
  logger: Logger;
  extensions?: SessionExtension[];
  /** Asked before a new session (a POST, not a PATCH or DELETE), after the token check. */
  admission?: Admission;
}

/**
 * An SDP offer is a few kilobytes (Chromium's, with every codec, about 6 KB). Anything near this
 * limit is not an offer; refusing it before parsing keeps a client from making us parse megabytes.
 */
const MAX_BODY = '64kb';

/** An extension's JSON request (a layer choice, a list of events) is a few dozen bytes. */
const MAX_JSON_BODY = '8kb';

/** The request body as text, after checking its type (415) and size (413, before reading it all). */
async function readBody(req: Request, res: Response, ...types: string[]): Promise<string> {
  const type = req.is(types);
  if (!type) {
    throw new Problem('unsupported-media-type', `the body must be ${types.join(' or ')}`, {
      headers: { [req.method === 'PATCH' ? 'Accept-Patch' : 'Accept-Post']: types.join(', ') },
    });
  }
  await new Promise<void>((resolve, reject) => express.text({ type, limit: MAX_BODY })(req, res, (e?: unknown) => (e ? reject(e) : resolve())));
  return typeof req.body === 'string' ? req.body : '';
}

/** RFC 7240: the client asked for a counter-offer (`Prefer: counter-offer`). */
function prefersCounterOffer(req: Request): boolean {
  return (req.get('prefer') ?? '').split(',').some((p) => p.split(';')[0]!.trim().toLowerCase() === 'counter-offer');
}

/** The request's JSON body (415 unless application/json, 413 over MAX_JSON_BODY, 400 if not JSON); undefined when empty. */
export async function readJson(req: Request, res: Response): Promise<unknown> {
  if (req.get('content-length') === '0' || (!req.get('content-type') && !req.get('transfer-encoding'))) return undefined;
  if (!req.is('application/json')) throw new Problem('unsupported-media-type', 'the body must be application/json', { headers: { 'Accept-Post': 'application/json' } });
  await new Promise<void>((resolve, reject) => express.json({ limit: MAX_JSON_BODY, strict: false })(req, res, (e?: unknown) => (e ? reject(e) : resolve())));
  return req.body as unknown;
}

/**
 * The path prefix the balancer's HAProxy reached this node under (X-Forwarded-Prefix: /n/{node},
 * --node-urls balancer), or undefined. The session URL is then that path, relative to the
 * balancer's address: the client comes back the same way. A client that forges the header only
 * misleads itself.
 */
function forwardedPrefix(req: Request): string | undefined {
  const prefix = req.get('x-forwarded-prefix');
  return prefix && /^\/n\/[A-Za-z0-9._:-]{1,64}$/.test(prefix) ? prefix : undefined;
}

export function signallingRouter(handler: SignallingHandler, options: SignallingOptions): Router {
  const { kind } = options;
  const action: StreamAction = kind === 'whip' ? 'publish' : 'play';
  const sessions = new Map<string, WebRtcSession>();
  const links = options.iceServers.map(iceServerLink);
  const router = express.Router();

  router.use(`/${kind}`, (_req, res, next) => {
    res.set(CORS);
    next();
  });

  const extensions = options.extensions ?? [];
  router.options([`/${kind}/:stream`, `/${kind}/:stream/:session`, `/${kind}/:stream/:session/:extension`, `/${kind}/:stream/:session/:extension/:item`], (_req, res) => {
    res.set('Accept-Post', 'application/sdp').status(204).end();
  });

  router.post(`/${kind}/:stream`, async (req: Request, res: Response) => {
    const received = performance.now();
    const stream = streamName(req.params.stream);
    const bearer = bearerToken(req.get('authorization'));
    const claims = await handler.authorize(stream, bearer, action);
    const body = await readBody(req, res, 'application/sdp');
    if (body.trim() === '') throw new Problem('empty-body', 'the body must be an SDP offer');

    const offer = parseOffer(body);
    // After the offer is read: a request that could not be served is not worth the operator's call.
    await options.admission?.admitRequest(req, { action, protocol: kind, stream, token: claims, bearer });
    const accepted = await handler.accept(stream, offer, { counterOffer: prefersCounterOffer(req) });
    const { session } = accepted;
    sessions.set(session.id, session);
    session.once('closed', (reason) => {
      sessions.delete(session.id);
      options.logger.info({ kind, stream, session: session.id, reason }, 'session ended');
    });
    // ms: from the request to the answer, the server's part of a join.
    options.logger.info({ kind, stream, session: session.id, ms: Math.round(performance.now() - received) }, 'session started');
    const sessionUrl = `${forwardedPrefix(req) ?? options.publicUrl}/${kind}/${stream}/${session.id}`;
    const sessionLinks = extensions.map((e) => `<${sessionUrl}/${e.path}>; rel="${e.rel}"${e.linkParams ? `; ${e.linkParams}` : ''}`);
    if (links.length + sessionLinks.length > 0) res.set('Link', [...links, ...sessionLinks].join(', '));
    res.set({ Location: sessionUrl, ETag: session.etag, Vary: 'Prefer' }).type('application/sdp');
    if ('counterOffer' in accepted) {
      res.status(406).set({ 'Preference-Applied': 'counter-offer', 'Accept-Patch': 'application/sdp, application/trickle-ice-sdpfrag' }).send(accepted.counterOffer);
    } else {
      res.status(201).set('Accept-Patch', 'application/trickle-ice-sdpfrag').send(accepted.answer);
    }
  });

  const sessionOf = async (req: Request): Promise<WebRtcSession> => {
    const stream = streamName(req.params.stream);
    const session = sessions.get(String(req.params.session));
    if (!session || session.stream !== stream) throw new Problem('not-found', 'no such session (it may have ended)');
    await handler.authorize(stream, bearerToken(req.get('authorization')), action);
    return session;
  };

  router.patch(`/${kind}/:stream/:session`, async (req: Request, res: Response) => {
    const session = await sessionOf(req);
    const ifMatch = req.get('if-match');
    if (!ifMatch) throw new Problem('precondition-required', 'PATCH needs If-Match with the session ETag (or * for an ICE restart)');
    if (ifMatch !== '*' && ifMatch !== session.etag) throw new Problem('precondition-failed', 'the ETag does not match the session');
    // An SDP answer only while the session's counter-offer waits for one.
    const body = await readBody(req, res, 'application/trickle-ice-sdpfrag', ...(session.offering ? ['application/sdp'] : []));
    if (req.is('application/sdp')) {
      if (body.trim() === '') throw new Problem('empty-body', 'the body must be an SDP answer');
      await session.answer(parseAnswer(body));
      res.status(204).end();
      return;
    }
    const frag = parseSdpFrag(body);
    if (frag.iceUfrag && frag.icePwd && frag.iceUfrag !== session.remoteIceUfrag) {
      // New client credentials: an ICE restart. Answer with ours, under a new ETag.
      session.remoteIceUfrag = frag.iceUfrag;
      await session.restartIce();
      const mid = /^a=mid:(\S+)/m.exec(body)?.[1] ?? '0';
      res.status(200).set('ETag', session.etag).type('application/trickle-ice-sdpfrag').send(buildSdpFrag(mid, session.local));
      return;
    }
    // Trickled candidates: mediasoup is ICE-lite and learns the client's address from its checks.
    res.status(204).end();
  });

  const extensionOf = (req: Request): SessionExtension => {
    const extension = extensions.find((e) => e.path === req.params.extension);
    if (!extension) throw new Problem('not-found', `no route for ${req.method} ${req.path}`);
    return extension;
  };

  router.all(`/${kind}/:stream/:session/:extension`, async (req: Request, res: Response) => {
    const extension = extensionOf(req);
    await extension.handle(await sessionOf(req), req, res);
  });

  router.all(`/${kind}/:stream/:session/:extension/:item`, async (req: Request, res: Response) => {
    const extension = extensionOf(req);
    const session = sessions.get(String(req.params.session));
    if (!extension.handleItem || !session || session.stream !== streamName(req.params.stream)) throw new Problem('not-found', 'no such session (it may have ended)');
    await extension.handleItem(session, String(req.params.item), req, res);
  });

  router.delete(`/${kind}/:stream/:session`, async (req: Request, res: Response) => {
    const session = await sessionOf(req);
    if (handler.end) await handler.end(session);
    else session.close('deleted by client');
    res.status(200).end();
  });

  return router;
}
