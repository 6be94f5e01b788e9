import { once } from 'node:events';
import type { RequestListener } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { CertificateWatcher } from './CertificateWatcher.ts';
import { Problem } from './errors.ts';
import { endWithProblem } from './http.ts';

/** The first byte of every TLS connection: a handshake record. */
const TLS_HANDSHAKE = 0x16;

/**
 * How long a connection may stay silent before its first byte tells TLS from plain HTTP. Browsers
 * and HTTP clients speak first, at once; a connection that says nothing is dropped, as Node's own
 * server drops one that sends no request headers in time.
 */
const FIRST_BYTE_TIMEOUT_MS = 10_000;

export interface TlsListenerOptions {
  /** The certificate and key, watched for renewals (started by listen()). */
  certificates: CertificateWatcher;
  /** What serves the requests (the express app). */
  handler: RequestListener;
}

/**
 * A node's HTTPS port: Node's HTTPS server (HTTP/1.1) behind a listener that looks at each
 * connection's first byte. A TLS handshake goes to the HTTPS server; anything else is plain HTTP
 * sent to the wrong port, and gets a 400 problem (`https-required`, naming the https:// URL) on
 * the same connection instead of a TLS alert the client shows as an unreadable failure or a hang.
 * The certificate is read again when its files change (CertificateWatcher) and new connections
 * get it; connections already open keep theirs.
 *
 * HTTP/2: express 5 does not run on node:http2's compatibility layer (its request object breaks
 * there: a TypeError in IncomingMessage._read on the first request with a body), so a node speaks
 * HTTP/1.1. Terminating TLS at HAProxy gives browsers HTTP/2 (docs/operating/https.md).
 */
export class TlsListener {
  readonly https: HttpsServer;
  readonly certificates: CertificateWatcher;
  readonly #front: NetServer;

  constructor(options: TlsListenerOptions) {
    this.certificates = options.certificates;
    this.https = createHttpsServer({ ...this.certificates.secureContext }, options.handler);
    this.certificates.on('reloaded', () => this.https.setSecureContext(this.certificates.secureContext));
    this.#front = createNetServer({ pauseOnConnect: true }, (socket) => this.#sort(socket));
  }

  get address(): AddressInfo | null {
    const address = this.#front.address();
    return typeof address === 'object' ? address : null;
  }

  async listen(port: number, host: string): Promise<void> {
    this.#front.listen(port, host);
    await once(this.#front, 'listening');
    this.certificates.start();
  }

  /** Stops taking connections; the HTTPS server's own close() ends the ones it has. */
  close(): void {
    this.certificates.stop();
    this.#front.close();
  }

  #sort(socket: Socket): void {
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.once('readable', () => {
      const first: Buffer | null = socket.read(1);
      if (!first) {
        socket.destroy();
        return;
      }
      socket.unshift(first);
      socket.setTimeout(0);
      socket.removeAllListeners('error');
      if (first[0] === TLS_HANDSHAKE) {
        this.https.emit('connection', socket);
        return;
      }
      const local = `${socket.localAddress?.includes(':') ? `[${socket.localAddress}]` : socket.localAddress}:${socket.localPort}`;
      socket.on('error', () => socket.destroy());
      endWithProblem(socket, new Problem('https-required', `this port speaks HTTPS only: use https://${local}/`));
    });
  }
}
