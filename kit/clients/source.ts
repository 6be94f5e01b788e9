/**
 * The one synthetic source of the libwebrtc publisher: a moving gradient with noise, each frame
 * stamped with its capture time (stamp.ts), and a 440 Hz tone, as @roamhq/wrtc tracks.
 */
import wrtc from '@roamhq/wrtc';
import { stamp, wallMs } from './stamp.ts';

const { nonstandard } = wrtc as any;

export interface SourceOptions {
  width: number;
  height: number;
  fps: number;
}

export interface Source {
  videoTrack: any;
  audioTrack: any;
  /** Stops generating (and the tracks). */
  stop(): void;
}

export function startSource({ width, height, fps }: SourceOptions): Source {
  const video = new nonstandard.RTCVideoSource();
  const audio = new nonstandard.RTCAudioSource();
  const videoTrack = video.createTrack();
  const audioTrack = audio.createTrack();

  // Noise over a moving gradient: enough detail that the encoder uses its bitrate cap, and a
  // picture that changes every frame (so that the encoder sends real pictures). Precomputed noise
  // keeps the generator cheap.
  const size = width * height;
  const noise = new Uint8Array(size * 2);
  for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(Math.random() * 48);
  const frame = new Uint8ClampedArray(size * 1.5);
  // Frames and audio are paced by the clock, not by counting timer ticks: Node's timers fire late,
  // and a source that falls behind real time makes every receiver's playout (A/V sync included)
  // drift later and later. A late video frame is skipped, as a camera would.
  const t0 = performance.now();
  let n = 0;
  let videoTimer: NodeJS.Timeout | undefined;
  const drawFrame = () => {
    const offset = Math.floor(Math.random() * size);
    for (let y = 0; y < height; y++) {
      const base = (y + n * 2) & 0x7f;
      for (let x = 0; x < width; x++) frame[y * width + x] = 40 + base + ((x * 2) & 0x3f) + noise[offset + y * width + x]!;
    }
    frame.fill(128 + ((n >> 3) & 15), size, size * 1.25);
    frame.fill(128 - ((n >> 4) & 15), size * 1.25);
    stamp(frame, width, wallMs());
    video.onFrame({ width, height, data: frame });
  };
  const nextFrame = () => {
    const due = Math.floor(((performance.now() - t0) * fps) / 1000);
    if (due >= n) {
      n = due;
      drawFrame();
      n++;
    }
    videoTimer = setTimeout(nextFrame, Math.max(0, t0 + (n * 1000) / fps - performance.now()));
  };
  nextFrame();

  // 10 ms chunks of 48 kHz mono, as many as the clock says are due.
  const samples = new Int16Array(480);
  let phase = 0;
  let chunks = 0;
  const audioTimer = setInterval(() => {
    while (chunks * 10 <= performance.now() - t0) {
      for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((phase++ * 2 * Math.PI * 440) / 48000));
      audio.onData({ samples, sampleRate: 48000, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
      chunks++;
    }
  }, 5);

  return {
    videoTrack,
    audioTrack,
    stop() {
      clearTimeout(videoTimer);
      clearInterval(audioTimer);
      videoTrack.stop();
      audioTrack.stop();
    },
  };
}
