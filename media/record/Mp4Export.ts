import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { VodSegment } from './VodPlaylist.ts';

/**
 * A recording's range as one MP4 with its index at the front (`-movflags +faststart`): a browser
 * scrubs it before it has all of it, ffprobe reads it. Each run's init segment and segments are
 * laid end to end (a fragmented MP4 of that run), and ffmpeg joins the runs with its concat
 * demuxer and remuxes them, copying the media: no re-encode, audio and video as recorded.
 *
 * faststart needs the whole file before its first byte (the index goes first): the export is
 * written to a temporary folder (about twice the range's size at the peak), then sent; an hour of
 * a 1 Mbit/s stream takes some 8 s before its first byte (bench/recording.ts). An aborted export
 * (`signal`: the client went away) stops its ffmpeg and deletes what it wrote.
 */

export interface ExportedMp4 {
  path: string;
  size: number;
  /** Deletes the temporary folder. */
  remove(): Promise<void>;
}

/** Reads a stored file, as far as `length` bytes (a segment's row says how far it was flushed). */
export type SegmentReader = (key: string, length?: number) => Promise<Buffer>;

export interface ExportSegment extends VodSegment {
  key: string;
  initKey: string;
  bytes: number;
}

/** How long ffmpeg may take to remux an export: an hour of 2 Mbit/s media (900 MB) copies in well under a minute. */
const REMUX_TIMEOUT_MS = 10 * 60_000;

export async function exportMp4(segments: ExportSegment[], read: SegmentReader, options: { ffmpeg?: string; signal?: AbortSignal } = {}): Promise<ExportedMp4> {
  if (segments.length === 0) throw new TypeError('nothing to export');
  const dir = await mkdtemp(join(tmpdir(), 'relaycast-export-'));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const runs: ExportSegment[][] = [];
    for (const segment of segments) {
      if (runs.at(-1)?.[0]?.run === segment.run) runs.at(-1)!.push(segment);
      else runs.push([segment]);
    }
    const inputs: string[] = [];
    for (const [i, run] of runs.entries()) {
      const path = join(dir, `run-${i}.mp4`);
      const out = createWriteStream(path);
      const put = async (data: Buffer) => {
        if (!out.write(data)) await once(out, 'drain');
      };
      await put(await read(run[0]!.initKey));
      for (const segment of run) {
        options.signal?.throwIfAborted();
        await put(await read(segment.key, segment.bytes));
      }
      out.end();
      await once(out, 'finish');
      inputs.push(path);
    }
    const list = join(dir, 'runs.txt');
    await writeFile(list, inputs.map((p) => `file '${p}'\n`).join(''));
    const output = join(dir, 'export.mp4');
    await remux(options.ffmpeg ?? 'ffmpeg', options.signal, ['-hide_banner', '-loglevel', 'error', '-f', 'concat', '-safe', '0', '-i', list, '-map', '0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', output]);
    for (const path of inputs) await rm(path, { force: true });
    return { path: output, size: (await stat(output)).size, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

function remux(ffmpeg: string, signal: AbortSignal | undefined, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    // Aborted (the client went away): SIGKILL, and the temporary folder goes with the error.
    const child = spawn(ffmpeg, args, { stdio: ['ignore', 'ignore', 'pipe'], signal, killSignal: 'SIGKILL' });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), REMUX_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`ffmpeg could not remux the export (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
  });
}
