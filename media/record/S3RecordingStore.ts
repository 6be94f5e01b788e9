import { DeleteObjectCommand, GetObjectCommand, NoSuchKey, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { isRecordingKey, type RecordingStore } from './RecordingStore.ts';

/**
 * Recorded files in S3-compatible object storage (AWS S3, MinIO, Ceph, R2…): `s3://bucket/prefix`
 * with an optional endpoint (path-style addressing then, which every S3 look-alike takes).
 * Credentials come from the AWS SDK's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a
 * profile, an instance or pod role). Whole files are uploaded (lib-storage's Upload: one PUT for
 * a segment, a multipart upload past PART_BYTES); the recorder never appends here.
 */

export interface S3Location {
  bucket: string;
  /** Key prefix, '' or ending in '/'. */
  prefix: string;
}

export interface S3RecordingStoreOptions {
  /** `s3://bucket` or `s3://bucket/prefix`. */
  url: string;
  /** An S3-compatible service's URL (path-style addressing); unset: AWS's own for the region. */
  endpoint?: string;
  region: string;
}

/** Parts of a multipart upload: S3's smallest part (5 MiB); a 2 s segment of a few Mbit/s is one PUT. */
const PART_BYTES = 5 * 1024 * 1024;

/**
 * How long one request may take: a segment is at most a few MB; past this the store counts as
 * unreachable for now (the uploads wait in the local backlog).
 */
const REQUEST_TIMEOUT_MS = 30_000;

export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!match) throw new TypeError(`not an s3://bucket[/prefix] URL: ${url}`);
  const prefix = (match[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket: match[1]!, prefix: prefix ? `${prefix}/` : '' };
}

export class S3RecordingStore implements RecordingStore {
  readonly kind = 's3';
  readonly #client: S3Client;
  readonly #location: S3Location;

  constructor(options: S3RecordingStoreOptions) {
    this.#location = parseS3Url(options.url);
    this.#client = new S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
      // Retries are the backlog's business (origin/RecordingUploads.ts), not the SDK's three.
      maxAttempts: 1,
      requestHandler: { requestTimeout: REQUEST_TIMEOUT_MS, connectionTimeout: 5000 },
    });
  }

  /** Uploads a whole file. */
  async upload(key: string, data: Buffer): Promise<void> {
    await new Upload({
      client: this.#client,
      params: { Bucket: this.#location.bucket, Key: this.#key(key), Body: data, ContentType: key.endsWith('.m4s') ? 'video/iso.segment' : 'video/mp4' },
      partSize: PART_BYTES,
      queueSize: 2,
    }).done();
  }

  async read(key: string, length?: number): Promise<Buffer | undefined> {
    try {
      const answer = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#location.bucket, Key: this.#key(key), ...(length !== undefined && length > 0 ? { Range: `bytes=0-${length - 1}` } : {}) }),
      );
      return Buffer.from(await answer.Body!.transformToByteArray());
    } catch (error) {
      if (error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey') return undefined;
      throw error;
    }
  }

  async remove(key: string): Promise<void> {
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.#location.bucket, Key: this.#key(key) }));
  }

  close(): void {
    this.#client.destroy();
  }

  #key(key: string): string {
    if (!isRecordingKey(key)) throw new TypeError(`not a recording key: ${key}`);
    return `${this.#location.prefix}${key}`;
  }
}
