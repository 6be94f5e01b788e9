import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';
import { VERSION } from './config.ts';
import { signWebhook } from './webhookSignature.ts';

/**
 * The one way Relaycast calls an operator's endpoint (event webhooks, admission): a signed JSON
 * POST over keep-alive connections, with a deadline, reading at most MAX_ANSWER_BYTES of the
 * answer. HTTPS checks the endpoint's certificate against the bundled roots plus a configured CA.
 */

/** An admission answer is a few dozen bytes and an event's is ignored; past 64 KiB it is not an answer. */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * Connections kept open per endpoint: enough for a join storm's admission calls or an outbox's
 * parallel streams, without opening hundreds of sockets to one server.
 */
const MAX_SOCKETS = 32;

export interface WebhookAnswer {
  status: number;
  body: string;
}

/** Why a call got no answer: its deadline passed, or the connection failed (refused, reset, TLS). */
export class WebhookCallError extends Error {
  readonly timedOut: boolean;
  constructor(message: string, timedOut: boolean) {
    super(message);
    this.name = 'WebhookCallError';
    this.timedOut = timedOut;
  }
}

export interface WebhookClientOptions {
  /** PEM CA certificates trusted besides the bundled roots (--webhook-ca-file). */
  caFile?: string;
}

export class WebhookClient {
  readonly #http = new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  readonly #https: HttpsAgent;

  constructor(options: WebhookClientOptions = {}) {
    const ca = options.caFile ? [...rootCertificates, readFileSync(options.caFile, 'utf8')] : undefined;
    this.#https = new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS, ca });
  }

  /**
   * POSTs `body` (JSON text) to `url`, signed with `secret` under `id`. Resolves with any HTTP
   * answer, whatever its status; rejects with a WebhookCallError when there is none in `timeoutMs`.
   */
  post(url: string, options: { id: string; secret: string; body: string; timeoutMs: number; headers?: Record<string, string> }): Promise<WebhookAnswer> {
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    const headers = {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(options.body)),
      'user-agent': `relaycast/${VERSION}`,
      ...options.headers,
      ...signWebhook(options.secret, options.id, options.body),
    };
    return new Promise((resolve, reject) => {
      const request = (secure ? httpsRequest : httpRequest)(target, { method: 'POST', headers, agent: secure ? this.#https : this.#http });
      const timer = setTimeout(() => request.destroy(new WebhookCallError(`no answer within ${options.timeoutMs} ms`, true)), options.timeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(error instanceof WebhookCallError ? error : new WebhookCallError(error.message, false));
      };
      request.on('error', fail);
      request.on('response', (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
        });
        response.on('error', fail);
        response.on('end', () => {
          clearTimeout(timer);
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
      });
      request.end(options.body);
    });
  }

  close(): void {
    this.#http.destroy();
    this.#https.destroy();
  }
}
