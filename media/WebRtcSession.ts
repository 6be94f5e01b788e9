import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { InvalidSdpError } from '../core/errors.ts';
import type { Router, WebRtcTransport } from 'mediasoup/types';
import type { LocalTransport, Offer } from './sdp.ts';

/** Where media is received: the listen address, the addresses announced (core/announcedAddresses.ts), ports. */
export interface RtcListen {
  listenIp: string;
  /** What a relay's pipe announces. */
  announcedIp: string;
  /** What a WebRTC session's ICE candidates announce, best first. */
  candidateIps: string[];
  minPort: number;
  maxPort: number;
}

export interface WebRtcSessionEvents {
  /** The session ended, by DELETE, ICE/DTLS failure, timeout or its stream ending. */
  closed: [reason: string];
  /** DTLS is up: media flows from now on. */
  connected: [];
}

/**
 * How long a client has from its offer to a working DTLS connection. ICE and DTLS take well under
 * a second on a good network and a few over a bad one; a client that has not connected by then
 * has gone away, and its session would otherwise hold the stream key or a relay.
 */
const CONNECT_TIMEOUT_MS = 20_000;

/**
 * How long an ICE-disconnected session waits for the client to come back (network change, ICE
 * restart by PATCH) before it is ended. mediasoup reports `disconnected` once ICE consent has
 * lapsed, so the client has already been silent for a while by then.
 */
const DISCONNECTED_GRACE_MS = 10_000;

/**
 * One WHIP or WHEP client: its WebRTC transport and the HTTP session resource around it (id,
 * ETag for PATCH). mediasoup is ICE-lite, so the client's trickled candidates need no action.
 */
export class WebRtcSession extends EventEmitter<WebRtcSessionEvents> {
  /** Random, unguessable: it is the capability to PATCH and DELETE the session. */
  readonly id = randomBytes(18).toString('base64url');
  readonly protocol = 'whip' as const;
  readonly stream: string;
  readonly transport: WebRtcTransport;
  /** The client's current ICE username fragment; a PATCH with another one is an ICE restart. */
  remoteIceUfrag: string | undefined;
  /** The mids of the counter-offer the client has yet to answer (see offer()), or undefined. */
  #offered: Set<string> | undefined;
  #etag = WebRtcSession.#newEtag();
  #closed = false;
  #connected = false;
  #timer: NodeJS.Timeout | undefined;

  private constructor(stream: string, transport: WebRtcTransport) {
    super();
    this.stream = stream;
    this.transport = transport;
    transport.on('dtlsstatechange', (state) => {
      if (state === 'connected') {
        this.#connected = true;
        clearTimeout(this.#timer);
        this.emit('connected');
      } else if (state === 'failed' || state === 'closed') {
        this.close(`dtls ${state}`);
      }
    });
    transport.on('icestatechange', (state) => {
      if (state === 'disconnected') {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.close('ice disconnected'), DISCONNECTED_GRACE_MS);
      } else if ((state === 'connected' || state === 'completed') && this.#connected) {
        clearTimeout(this.#timer);
      }
    });
    transport.observer.once('close', () => this.close('transport closed'));
    this.#timer = setTimeout(() => this.close('connect timeout'), CONNECT_TIMEOUT_MS);
  }

  /**
   * `bwe` (default true): mediasoup's bandwidth estimation on the transport (a publisher's needs
   * it: its transport-cc feedback is what lets the browser raise its own bitrate). Since 3.32
   * mediasoup estimates toward every viewer, from receiver-report losses where nothing better was
   * negotiated, and its allocator then picks the viewer's layers, sending none at all when the
   * estimate drops below the lowest. A WHEP viewer without transport-cc gets `bwe: false`: its
   * layer is the edge's loss-driven choice alone (edge/LayerSelector.ts), as it was on 3.27.
   */
  static async create(router: Router, stream: string, listen: RtcListen, options: { bwe?: boolean } = {}): Promise<WebRtcSession> {
    const portRange = { min: listen.minPort, max: listen.maxPort };
    const transport = await router.createWebRtcTransport({
      // Per address a UDP candidate and an ICE-TCP one, the fallback for networks that block UDP;
      // mediasoup ranks them in this order (preferUdp puts every UDP one first).
      listenInfos: listen.candidateIps.flatMap((announcedAddress) => [
        { protocol: 'udp' as const, ip: listen.listenIp, announcedAddress, portRange },
        { protocol: 'tcp' as const, ip: listen.listenIp, announcedAddress, portRange },
      ]),
      preferUdp: true,
      enableBwe: options.bwe ?? true,
      // 1 Mbps to start with instead of mediasoup's 600 kbps: a viewer's first seconds look sharp.
      initialAvailableOutgoingBitrate: 1_000_000,
    });
    return new WebRtcSession(stream, transport);
  }

  /** DTLS is up (the `connected` event has been emitted). */
  get connected(): boolean {
    return this.#connected;
  }

  static #newEtag(): string {
    return `"${randomBytes(9).toString('base64url')}"`;
  }

  get etag(): string {
    return this.#etag;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get local(): LocalTransport {
    return {
      iceParameters: this.transport.iceParameters,
      iceCandidates: this.transport.iceCandidates,
      dtlsParameters: this.transport.dtlsParameters,
    };
  }

  /** The session made a counter-offer with these mids; it connects once the client answers (answer()). */
  offer(mids: string[]): void {
    this.#offered = new Set(mids);
  }

  /** A counter-offer waits for its answer. */
  get offering(): boolean {
    return this.#offered !== undefined;
  }

  /**
   * The client's answer to the counter-offer: every section it answers must be one offered, and it
   * must answer one at least; then DTLS goes ahead with its parameters.
   */
  async answer(answer: Offer): Promise<void> {
    const offered = this.#offered;
    if (!offered) throw new TypeError('this session made no counter-offer');
    const unknown = answer.sections.find((s) => !offered.has(s.mid));
    if (unknown) throw new InvalidSdpError(`the answer has a=mid:${unknown.mid}, which the offer did not`);
    if (!answer.sections.some((s) => !('unsupported' in s))) throw new InvalidSdpError('the answer rejects every section offered');
    // Taken before connecting: a second answer sent meanwhile is refused, not connected twice.
    this.#offered = undefined;
    try {
      await this.connect(answer);
    } catch (error) {
      this.#offered = offered;
      throw error;
    }
  }

  async connect(offer: Offer): Promise<void> {
    this.remoteIceUfrag = offer.iceUfrag;
    await this.transport.connect({ dtlsParameters: offer.dtlsParameters }).catch((error: unknown) => {
      // mediasoup refuses DTLS parameters parseOffer let through: the offer's fault, a 400.
      throw error instanceof TypeError ? new InvalidSdpError(`DTLS parameters: ${error.message}`) : error;
    });
  }

  /** New ICE credentials (the client asked for an ICE restart); the ETag changes with them. */
  async restartIce(): Promise<void> {
    await this.transport.restartIce();
    this.#etag = WebRtcSession.#newEtag();
  }

  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    if (!this.transport.closed) this.transport.close();
    this.emit('closed', reason);
  }
}
