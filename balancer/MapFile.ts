import { closeSync, copyFileSync, openSync, readSync } from 'node:fs';

/**
 * A map file HAProxy reads (`key value` lines) that the balancer keeps on disk and never in its
 * memory: the geo map built from the GeoIP database (GeoMap writes it from its child process;
 * 38 MB, 1.4 million lines for 100 regions). It is copied where HAProxy reads it by the kernel
 * (copyTo), and sent through HAProxy's runtime API as payloads of whole lines read from the file
 * a block at a time (payloads): held as bytes, and split into entries to send, it cost the
 * balancer's node process its 38 MB and several hundred MB of garbage until a full GC.
 *
 * The file is not changed once a MapFile names it (a new build writes a new file), so the same
 * MapFile is the same map: renders compare them by identity (sameMap).
 */

/** How much of the file is read at a time: payloads are cut from this block (a few hundred of 8 KiB each). */
const READ_BYTES = 1 << 20;
const NEWLINE = 0x0a;
const HASH = 0x23;

export class MapFile {
  readonly path: string;
  /** The file's size in bytes. */
  readonly bytes: number;
  /** Lines that map a key (what HAProxy holds once it is loaded). */
  readonly entries: number;

  constructor(path: string, bytes: number, entries: number) {
    if (typeof path !== 'string' || !path) throw new TypeError('path must be a file path');
    if (!Number.isInteger(bytes) || bytes < 0 || !Number.isInteger(entries) || entries < 0) throw new TypeError('bytes and entries are counts');
    this.path = path;
    this.bytes = bytes;
    this.entries = entries;
  }

  /** Writes the map to `to` (copy_file_range: the bytes never pass through this process). */
  copyTo(to: string): void {
    copyFileSync(this.path, to);
  }

  /**
   * The map's lines as payloads of at most `limit` bytes each (whole lines joined by newlines,
   * without the last one), comments and blank lines left out (a blank line would end a payload of
   * HAProxy's CLI early). Each payload is a view of a block reused for the next ones: to be sent
   * before the next is asked for.
   */
  *payloads(limit: number): Generator<Buffer> {
    if (!Number.isInteger(limit) || limit < 1) throw new TypeError(`payload limit ${limit} is not a byte count`);
    const fd = openSync(this.path, 'r');
    try {
      const block = Buffer.allocUnsafeSlow(Math.max(READ_BYTES, limit + 1));
      let held = 0;
      let position = 0;
      for (;;) {
        const read = readSync(fd, block, held, block.length - held, position);
        position += read;
        held += read;
        if (held === 0) return;
        // The block's whole lines; at the end of the file, a last line without its newline too.
        const end = read === 0 ? held : block.lastIndexOf(NEWLINE, held - 1) + 1;
        if (end === 0 && held === block.length) throw new TypeError(`${this.path}: a line longer than ${block.length} bytes`);
        let from = -1;
        let to = -1;
        for (let start = 0; start < end; ) {
          let next = block.indexOf(NEWLINE, start);
          if (next < 0 || next >= end) next = end;
          const lineEnd = next;
          if (isEntry(block, start, lineEnd)) {
            if (lineEnd - start > limit) throw new TypeError(`${this.path}: a line of ${lineEnd - start} bytes, more than a payload's ${limit}`);
            if (from >= 0 && lineEnd - from > limit) {
              yield block.subarray(from, to);
              from = -1;
            }
            if (from < 0) from = start;
            to = lineEnd;
          } else if (from >= 0) {
            // A comment or blank line between entries: the payload ends before it.
            yield block.subarray(from, to);
            from = -1;
          }
          start = next + 1;
        }
        if (from >= 0) yield block.subarray(from, to);
        if (read === 0) return;
        block.copy(block, 0, end, held);
        held -= end;
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** Whether the line block[start, end) maps a key: not blank (spaces, tabs, CR), not a # comment. */
function isEntry(block: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const byte = block[i]!;
    if (byte === 0x20 || byte === 0x09 || byte === 0x0d) continue;
    return byte !== HASH;
  }
  return false;
}
