import { once } from 'node:events';
import { createServer as createHttpServer, request, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';

/**
 * A stand-in edge for HAProxy tests and benchmarks that need many edges and no media: an HTTP
 * server on 127.0.0.1 that answers every request 204 with `x-relaycast-node: <id>` (as a Relaycast
 * node does; `/healthz` for HAProxy's health check) and an agent-check port answering
 * `up ready 100%`. A path ending in `/slow` is answered after `slowMs`, to hold a connection open.
 */
export class FakeEdge {
  readonly id: string;
  readonly #http: HttpServer;
  readonly #agent: TcpServer;
  readonly #seen: { requests: number; firstAt?: number };

  private constructor(id: string, http: HttpServer, agent: TcpServer, seen: { requests: number; firstAt?: number }) {
    this.id = id;
    this.#http = http;
    this.#agent = agent;
    this.#seen = seen;
  }

  static async start(id: string, slowMs = 1500): Promise<FakeEdge> {
    if (typeof id !== 'string' || id.length === 0) throw new TypeError('id must be a non-empty string');
    const seen: { requests: number; firstAt?: number } = { requests: 0 };
    const http = createHttpServer((req, res) => {
      if (req.url !== '/healthz') {
        seen.requests++;
        seen.firstAt ??= performance.now();
      }
      const answer = () => {
        res.writeHead(204, { 'x-relaycast-node': id });
        res.end();
      };
      if (req.url?.endsWith('/slow')) setTimeout(answer, slowMs);
      else answer();
    });
    const agent = createTcpServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.end('up ready 100%\n');
    });
    http.listen(0, '127.0.0.1');
    agent.listen(0, '127.0.0.1');
    await Promise.all([once(http, 'listening'), once(agent, 'listening')]);
    return new FakeEdge(id, http, agent, seen);
  }

  /** Requests answered so far, health checks aside. */
  get requests(): number {
    return this.#seen.requests;
  }

  /** When this edge got its first request other than a health check (performance.now()). */
  get firstRequestAt(): number | undefined {
    return this.#seen.firstAt;
  }

  get port(): number {
    return (this.#http.address() as { port: number }).port;
  }

  get agentPort(): number {
    return (this.#agent.address() as { port: number }).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.#http.closeAllConnections();
    await Promise.all([new Promise((r) => this.#http.close(r)), new Promise((r) => this.#agent.close(r))]);
  }
}

/**
 * Which node answers a request for `path` sent through HAProxy at `port` (the `x-relaycast-node`
 * header of a 2xx answer), `null` for another status, `error:<code>` when the request failed.
 * A new connection each time (no keep-alive), from `source` when given.
 */
export function servedBy(port: number, path: string, options: { source?: string; method?: string; timeoutMs?: number } = {}): Promise<string | null> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', localAddress: options.source, timeout: options.timeoutMs ?? 3000, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode && res.statusCode < 300 ? String(res.headers['x-relaycast-node']) : null));
      },
    );
    req.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code}`));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
