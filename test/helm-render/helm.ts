import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';

/**
 * The real Helm, with no download at test time: the npm package @aws-cdk/asset-kubectl-v20 (a
 * devDependency, so `npm ci` installs it from the registry) ships Helm 3.8.1's official linux-amd64
 * binary inside lib/layer.zip. It is unpacked once into node_modules/.cache.
 */

const PACKAGE = '@aws-cdk/asset-kubectl-v20';

/** One stored or deflated file out of a zip archive (no zip64: the archive is 25 MB). */
function unzipEntry(zip: Buffer, name: string): Buffer {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip archive');
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('bad zip central directory');
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const localHeader = zip.readUInt32LE(at + 42);
    if (zip.toString('utf8', at + 46, at + 46 + nameLength) === name) {
      const dataStart = localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
      const data = zip.subarray(dataStart, dataStart + compressedSize);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return inflateRawSync(data);
      throw new Error(`zip method ${method} not supported`);
    }
    at += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`${name} not in the archive`);
}

/** Path of the helm binary, unpacked on first use. */
export function helmBinary(): string {
  const require = createRequire(import.meta.url);
  let packageJson: string;
  try {
    packageJson = require.resolve(`${PACKAGE}/package.json`);
  } catch {
    throw new Error(`${PACKAGE} is not installed: run npm ci (it is a devDependency that carries the helm binary)`);
  }
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string };
  const root = dirname(packageJson);
  const bin = join(root, '..', '..', '.cache', 'relaycast-helm', version, 'helm');
  if (!existsSync(bin)) {
    mkdirSync(dirname(bin), { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    writeFileSync(tmp, unzipEntry(readFileSync(join(root, 'lib', 'layer.zip')), 'helm/helm'));
    chmodSync(tmp, 0o755);
    renameSync(tmp, bin);
  }
  return bin;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with its state kept out of $HOME; never throws for a non-zero exit. */
export async function helm(args: string[], cacheDir: string): Promise<HelmResult> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: cacheDir,
    HELM_CACHE_HOME: join(cacheDir, 'cache'),
    HELM_CONFIG_HOME: join(cacheDir, 'config'),
    HELM_DATA_HOME: join(cacheDir, 'data'),
    KUBECONFIG: join(cacheDir, 'no-kubeconfig'),
  };
  try {
    const { stdout, stderr } = await promisify(execFile)(helmBinary(), args, { env, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number | string; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
  }
}
