import type { ScriptPage } from '../../kit/browser.ts';
import { waitFor } from '../../kit/processes.ts';

/** The web player page (/play/{stream}) as a test reads it: window.relaycastPlayer.stats(). */

export interface PageStats {
  state: string;
  stateText: string;
  framesDecoded: number;
  width: number;
  fps: number;
  bitrateKbps: number;
  rttMs: number | null;
  edge: string | null;
  sessions: number;
  reconnects: number;
  lastError: string | null;
  videoWidth: number;
  videoHeight: number;
}

export function playerStats(page: ScriptPage): Promise<PageStats> {
  return page.evaluate(() => ({ ...(window as any).relaycastPlayer.stats(), videoWidth: document.querySelector('video')!.videoWidth, videoHeight: document.querySelector('video')!.videoHeight }));
}

/**
 * Waits (bounded) until the page plays: state playing, frames decoded, a picture; with `after`,
 * in a later session than that one (it reconnected).
 */
export async function playing(page: ScriptPage, what: string, options: { timeoutMs?: number; afterSession?: number } = {}): Promise<PageStats> {
  let last: PageStats | undefined;
  try {
    await waitFor(
      what,
      async () => {
        last = await playerStats(page);
        return (
          last.state === 'playing' &&
          last.framesDecoded > 10 &&
          last.width > 0 &&
          last.videoWidth > 0 &&
          (options.afterSession === undefined || last.sessions > options.afterSession)
        );
      },
      options.timeoutMs ?? 30_000,
      250,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last player stats: ${JSON.stringify(last)}`, { cause: error });
  }
  return last!;
}
