// The part of node-media-server 4.4 that Relaycast uses; the package ships no types.
declare module 'node-media-server' {
  import type { Socket } from 'node:net';

  export interface NmsSession {
    id: string;
    ip: string;
    streamApp: string;
    streamName: string;
    streamPath: string;
    streamQuery?: Record<string, string | string[] | undefined>;
    socket: Socket;
    /** The RTMP state; `connectCmdObj` is the client's connect command (app, tcUrl, flashVer…). */
    rtmp?: { connectCmdObj?: { flashVer?: unknown; [key: string]: unknown } };
    broadcast?: {
      publisher: NmsSession | null;
      /** `reconnecting`: the publisher left less than 30 s ago and the path waits for the next (its grace window). */
      getPublishStatus(): 'publishing' | 'reconnecting' | 'idle';
    };
    close(): void;
  }

  export interface NmsConfig {
    bind?: string;
    rtmp?: { port: number; chunk_size?: number; gop_cache?: boolean; ping?: number; ping_timeout?: number };
    store?: { path?: string };
  }

  export default class NodeMediaServer {
    constructor(config: NmsConfig, configPath?: string);
    /** Its JSON store; `options.signals` makes it hook SIGINT/SIGTERM on open. */
    store: { options: { signals: boolean } };
    on(event: 'prePublish' | 'postPublish' | 'donePublish' | 'prePlay' | 'postPlay' | 'donePlay', listener: (session: NmsSession) => void): void;
    run(): Promise<void>;
    stop(): Promise<void>;
  }
}

declare module 'node-media-server/src/core/logger.js' {
  const logger: {
    level: string;
    trace(message: string): void;
    debug(message: string): void;
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
    log(message: string, level?: string): void;
  };
  export default logger;
}
