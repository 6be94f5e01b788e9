import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';

/**
 * Where recorded bytes go: files named by keys (`{recording}/{run}/{msn}.m4s`). The local store
 * is a directory (a volume in the containers and the Helm chart); its files are written as the
 * recorder goes, so that a crash keeps what was flushed. With S3 configured, the local directory
 * is the backlog: whole segments move to the bucket after (origin/RecordingUploads.ts).
 */

/** A file being written: bytes appended, synced to disk, closed. */
export interface AppendFile {
  append(data: Buffer): Promise<void>;
  /** Makes what was appended durable (fdatasync): a row that names these bytes is written after it. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** A store recorded files can be read from and deleted from: the local directory, or S3 (S3RecordingStore.ts). */
export interface RecordingStore {
  /** Its name in the index (`recording_segments.store`). */
  readonly kind: string;
  /** The file's first `length` bytes (all without), or undefined when there is no such file. */
  read(key: string, length?: number): Promise<Buffer | undefined>;
  /** Deletes a file; no error when it is gone already. */
  remove(key: string): Promise<void>;
}

/** The store a recorder writes to as it goes: always the local one (S3 gets whole segments after). */
export interface WritableRecordingStore extends RecordingStore {
  /** Writes a small file whole (an init segment), durably. */
  writeFile(key: string, data: Buffer): Promise<void>;
  /** Opens a file to append to (a segment being recorded). */
  append(key: string): Promise<AppendFile>;
}

/** Keys are made by the recorder; this refuses anything else (a key from a URL must not leave the directory). */
const KEY = /^[A-Za-z0-9_-]{1,64}(\/[A-Za-z0-9_.-]{1,64}){1,3}$/;

export function isRecordingKey(key: string): boolean {
  return KEY.test(key) && !key.split('/').some((part) => part === '.' || part === '..');
}

export class LocalRecordingStore implements WritableRecordingStore {
  readonly kind = 'local';
  readonly #root: string;

  constructor(root: string) {
    if (!root) throw new TypeError('a recording store needs a directory');
    this.#root = resolve(root);
  }

  get root(): string {
    return this.#root;
  }

  async writeFile(key: string, data: Buffer): Promise<void> {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    const temporary = `${path}.tmp`;
    const file = await open(temporary, 'w');
    try {
      await file.writeFile(data);
      await file.datasync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  }

  async append(key: string): Promise<AppendFile> {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    const file: FileHandle = await open(path, 'a');
    return {
      append: async (data) => {
        await file.write(data);
      },
      sync: () => file.datasync(),
      close: () => file.close(),
    };
  }

  async read(key: string, length?: number): Promise<Buffer | undefined> {
    const path = this.#path(key);
    try {
      if (length === undefined) return await readFile(path);
      const size = (await stat(path)).size;
      const file = await open(path, 'r');
      try {
        const buffer = Buffer.alloc(Math.min(length, size));
        await file.read(buffer, 0, buffer.length, 0);
        return buffer;
      } finally {
        await file.close();
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async remove(key: string): Promise<void> {
    await rm(this.#path(key), { force: true });
  }

  #path(key: string): string {
    if (!isRecordingKey(key)) throw new TypeError(`not a recording key: ${key}`);
    const path = join(this.#root, ...key.split('/'));
    if (!path.startsWith(this.#root + sep)) throw new TypeError(`not a recording key: ${key}`);
    return path;
  }
}
