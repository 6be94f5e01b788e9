import type { ChildProcess } from 'node:child_process';
import { stamp, wallMs } from '../../kit/clients/stamp.ts';
import { spawnTracked } from '../../kit/processes.ts';

/**
 * An RTMP publisher whose every frame carries its capture time in its pixels (kit/clients/stamp.ts,
 * as the WebRTC latency benchmark's publisher writes it): this process draws each raw frame, stamps
 * it with the wall clock at that moment, and pipes it into an ffmpeg that encodes it as an encoder
 * in a studio would (x264, `zerolatency`: no look-ahead, no B-frames; a key frame every 2 s, so
 * 2 s segments) and publishes over RTMP with a 440 Hz AAC tone. What a viewer reads back from a
 * decoded frame is then capture → display, encoder and RTMP included.
 *
 * The picture is noise over a moving gradient (precomputed, a second's worth cycled), so that the
 * encoder spends its bitrate as on camera pictures; the stamp's blocks are 32 px at 640 wide.
 * Frames are paced by the clock; a frame ffmpeg has no room for (two frames still waiting for it
 * on a starved machine) is skipped, as a camera's would be, and ffmpeg timestamps frames on arrival.
 */

export interface StampedPublisher {
  child: ChildProcess;
  /** Frames written, and skipped because ffmpeg had not taken the previous ones. */
  counts(): { written: number; skipped: number };
  /** ffmpeg's last words (errors only). */
  stderr(): string;
  stop(): void;
}

export const STAMPED_WIDTH = 640;
export const STAMPED_HEIGHT = 360;
const FPS = 30;
/** Video bitrate: a typical 360p live rendition. */
const VIDEO_KBPS = 1000;
/** Key-frame interval in frames: 2 s, as the brief's publisher (`-g 60`) and the packager's segments. */
const GOP = 2 * FPS;
/**
 * Frames that may wait in the pipe for ffmpeg: one being read and the next; a frame due while
 * more wait is skipped (a frame is 345 kB, more than the pipe holds, so Node's own backpressure
 * signal would say "full" for every frame).
 */
const QUEUED_FRAMES = 2;

export function startStampedRtmp(url: string): StampedPublisher {
  const child = spawnTracked('ffmpeg', [
    '-hide_banner', '-loglevel', 'error',
    '-use_wallclock_as_timestamps', '1', '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-video_size', `${STAMPED_WIDTH}x${STAMPED_HEIGHT}`, '-framerate', String(FPS), '-i', 'pipe:0',
    '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-map', '0:v', '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', String(GOP), '-keyint_min', String(GOP), '-pix_fmt', 'yuv420p',
    '-b:v', `${VIDEO_KBPS}k`, '-maxrate', `${VIDEO_KBPS}k`, '-bufsize', `${VIDEO_KBPS}k`, '-fps_mode', 'passthrough',
    '-c:a', 'aac', '-b:a', '96k',
    '-f', 'flv', url,
  ], { stdio: ['pipe', 'ignore', 'pipe'] });
  child.stdin!.on('error', () => undefined);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-2000)));

  const size = STAMPED_WIDTH * STAMPED_HEIGHT;
  const frames = Array.from({ length: FPS }, (_, n) => {
    const frame = Buffer.alloc(size * 1.5);
    for (let y = 0; y < STAMPED_HEIGHT; y++) {
      const base = (y + n * 4) & 0x7f;
      for (let x = 0; x < STAMPED_WIDTH; x++) frame[y * STAMPED_WIDTH + x] = 40 + base + ((x * 2) & 0x3f) + Math.floor(Math.random() * 48);
    }
    frame.fill(128 + (n & 15), size, size * 1.25);
    frame.fill(128 - (n & 15), size * 1.25);
    return frame;
  });
  let written = 0;
  let skipped = 0;
  const t0 = performance.now();
  let n = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const due = Math.floor(((performance.now() - t0) * FPS) / 1000);
    if (due >= n) {
      skipped += due - n;
      n = due;
      if (child.stdin!.writableLength >= QUEUED_FRAMES * frames[0]!.length) skipped++;
      else {
        const frame = Buffer.from(frames[n % FPS]!);
        stamp(new Uint8ClampedArray(frame.buffer, frame.byteOffset, size), STAMPED_WIDTH, wallMs());
        child.stdin!.write(frame);
        written++;
      }
      n++;
    }
    timer = setTimeout(tick, Math.max(0, t0 + (n * 1000) / FPS - performance.now()));
  };
  tick();
  child.once('exit', () => clearTimeout(timer));
  return {
    child,
    counts: () => ({ written, skipped }),
    stop() {
      clearTimeout(timer);
      child.kill('SIGKILL');
    },
    stderr: () => stderr,
  };
}
