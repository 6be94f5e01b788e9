import type { ChildProcess } from 'node:child_process';
import { spawnTracked } from './processes.ts';

/**
 * What the recording tests and benchmark share: an ffmpeg RTMP publisher of a test picture and a
 * tone, and the admin API as a plain JSON client.
 */

export interface RtmpTestPublish {
  /** Seconds published (ffmpeg's -t); the caller may stop it sooner. */
  seconds: number;
  fps?: number;
  /**
   * x264's defaults (High profile, B-frames), as OBS and a new user send; `false`: no B-frames and
   * the veryfast preset, which the origin passes to WebRTC without its re-encode (a lighter load
   * on a machine that tests share).
   */
  bframes?: boolean;
  /** A constant video bitrate (kbit/s, x264's -b:v with a one-second buffer); default: x264's own rate control. */
  kbps?: number;
}

/** ffmpeg publishing testsrc2 640x360 with x264 (a key frame every 2 s) and AAC, in real time (-re), to `url`. */
export function publishTestRtmp(url: string, options: RtmpTestPublish): ChildProcess {
  const fps = options.fps ?? 30;
  const rate = options.kbps ? ['-b:v', `${options.kbps}k`, '-maxrate', `${options.kbps}k`, '-bufsize', `${options.kbps}k`] : [];
  const video = [...(options.bframes === false ? ['-c:v', 'libx264', '-preset', 'veryfast', '-bf', '0'] : ['-c:v', 'libx264']), ...rate];
  return spawnTracked(
    'ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-re'],
      ...['-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=${fps}`, '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'],
      ...[...video, '-g', String(2 * fps), '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', String(options.seconds), '-f', 'flv', url],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
}

export interface ApiAnswer {
  status: number;
  /** Whatever JSON the API answered: the caller knows the shape it asked for. */
  body: any;
}

/** The admin API at `baseUrl` (/api/v1) with an admin token: `api('POST', '/streams', {...})`. */
export function adminClient(baseUrl: string, token: string): (method: string, path: string, body?: unknown) => Promise<ApiAnswer> {
  return async (method, path, body) => {
    const res = await fetch(`${baseUrl}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}
