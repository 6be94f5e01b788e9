import { once } from 'node:events';
import { createServer, type Server } from 'node:net';

/**
 * HAProxy's agent-check for an edge: a TCP port that answers each connection with one line, e.g.
 * `up ready 62%` (weight from load) or `up drain` (operator drain, or full), then closes. HAProxy
 * polls it every second and sends this edge its share of new requests accordingly.
 */
export class AgentCheck {
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  /** `state()` is asked at each poll: the node's load (0..1+), its viewer threshold, whether it drains. */
  static async start(port: number, host: string, state: () => { load: number; viewerThreshold: number; draining: boolean }): Promise<AgentCheck> {
    const server = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.end(`${AgentCheck.line(state())}\n`);
    });
    server.listen(port, host);
    await once(server, 'listening');
    return new AgentCheck(server);
  }

  /** The agent line for a state: weight falls as load nears the viewer threshold. */
  static line({ load, viewerThreshold, draining }: { load: number; viewerThreshold: number; draining: boolean }): string {
    if (draining || load >= viewerThreshold) return 'up drain';
    const weight = Math.max(1, Math.min(100, Math.round(100 * (1 - load / viewerThreshold))));
    return `up ready ${weight}%`;
  }

  get port(): number {
    const address = this.#server.address();
    return typeof address === 'object' && address ? address.port : 0;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
