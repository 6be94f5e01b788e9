import { EventEmitter } from 'node:events';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import { ConfigError } from './errors.ts';

/**
 * How often the certificate and key files are looked at. cert-manager swaps a Secret's files by
 * symlink, certbot writes new files: a check of both files' identity (inode, size, mtime) every
 * second sees either, costs two stat calls, and a renewed certificate is served within a second.
 * (fs.watch misses a symlink swap of the directory a file is in.)
 */
const POLL_MS = 1000;

/**
 * A renewal writes the certificate and the key one after the other: a pair that does not match is
 * read again on the next checks, and rejected (logged, the old pair kept) only when it still does
 * not match after this long.
 */
const MISMATCH_GRACE_MS = 10_000;

export interface CertificatePair {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate (the first in the file). */
  leaf: X509Certificate;
}

export interface CertificateWatcherEvents {
  /** A new, valid pair was read from the files. */
  reloaded: [CertificatePair];
  /** The files changed but hold no valid pair; the current one stays. */
  rejected: [Error];
}

/** Reads a PEM certificate chain and its key, and checks that they belong together. */
export function readCertificatePair(certPath: string, keyPath: string): CertificatePair {
  const cert = readFileSync(certPath);
  const key = readFileSync(keyPath);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (error) {
    throw new TypeError(`${certPath} holds no PEM certificate (${(error as Error).message})`, { cause: error });
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new TypeError(`${keyPath} holds no PEM private key (${(error as Error).message})`, { cause: error });
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new TypeError(`${keyPath} is not the key of the certificate in ${certPath}`);
  return { cert, key, leaf };
}

/**
 * The TLS certificate and key of a node's HTTPS server, from two PEM files, read again when either
 * changes (renewals rewrite them in place), so that new connections get the new certificate
 * without a restart. A change that does not make a valid pair is rejected and the last good pair
 * kept.
 */
export class CertificateWatcher extends EventEmitter<CertificateWatcherEvents> {
  readonly #certPath: string;
  readonly #keyPath: string;
  #current: CertificatePair;
  #identity: string;
  #timer: NodeJS.Timeout | undefined;
  /** When the files were first seen as a pair that does not match, for the grace period. */
  #badSince: number | undefined;
  readonly #graceMs: number;

  /** `mismatchGraceMs`: MISMATCH_GRACE_MS, unless a test needs it shorter. */
  constructor(certPath: string, keyPath: string, options: { mismatchGraceMs?: number } = {}) {
    super();
    if (!certPath || !keyPath) throw new TypeError('both a certificate and a key file are needed');
    this.#certPath = certPath;
    this.#keyPath = keyPath;
    this.#graceMs = options.mismatchGraceMs ?? MISMATCH_GRACE_MS;
    try {
      this.#current = readCertificatePair(certPath, keyPath);
    } catch (error) {
      throw new ConfigError('tlsCert', (error as Error).message, { cause: error });
    }
    this.#identity = this.#readIdentity();
  }

  get current(): CertificatePair {
    return this.#current;
  }

  /** What a TLS server's setSecureContext() takes. */
  get secureContext(): SecureContextOptions {
    return { cert: this.#current.cert, key: this.#current.key };
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.check(), POLL_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Looks at the files once; reloads when they changed (the timer calls it every POLL_MS). */
  check(): void {
    const identity = this.#readIdentity();
    if (identity === this.#identity && this.#badSince === undefined) return;
    try {
      const pair = readCertificatePair(this.#certPath, this.#keyPath);
      this.#identity = identity;
      this.#badSince = undefined;
      if (pair.cert.equals(this.#current.cert) && pair.key.equals(this.#current.key)) return;
      this.#current = pair;
      this.emit('reloaded', pair);
    } catch (error) {
      const now = Date.now();
      this.#badSince ??= now;
      if (now - this.#badSince < this.#graceMs) return;
      // Given up on this version of the files: rejected once, looked at again when they change.
      this.#identity = identity;
      this.#badSince = undefined;
      this.emit('rejected', error as Error);
    }
  }

  /** The files' identity: a change of either file (rewritten, renamed over, relinked) changes it. */
  #readIdentity(): string {
    return [this.#certPath, this.#keyPath]
      .map((path) => {
        try {
          const s = statSync(path);
          return `${s.ino}:${s.size}:${s.mtimeMs}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  }
}
