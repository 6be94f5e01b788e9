import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';

/**
 * A private certificate authority made with openssl at run time, and server certificates it signs,
 * for tests of HTTPS nodes: Node processes trust it through NODE_EXTRA_CA_CERTS, Chromium through
 * --ignore-certificate-errors-spki-list with the CA's key hash (spki), this process through
 * httpsFetch's `ca`.
 */
export interface TestCa {
  dir: string;
  certFile: string;
  keyFile: string;
  pem: string;
  /** base64 SHA-256 of the CA's SubjectPublicKeyInfo, what Chromium's flag takes. */
  spki: string;
}

export interface ServerCertificate {
  certFile: string;
  keyFile: string;
  serial: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });

export function makeTestCa(dir: string): TestCa {
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca.key');
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=Relaycast test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const pem = readFileSync(certFile, 'utf8');
  return { dir, certFile, keyFile, pem, spki: spkiHash(pem) };
}

export function spkiHash(pem: string): string {
  const key = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(key).digest('base64');
}

/**
 * A certificate for 127.0.0.1 and localhost, and for `hosts` besides, signed by `ca`, written with
 * the CA after it to `<name>.pem`, its key to `<name>.key`, in the CA's folder. Written as a
 * renewal would be: new files renamed over the old. An address in `hosts` goes in as an IP
 * subjectAltName, a name as a DNS one: a client checks an https:// URL's address against the IP
 * entries only (RFC 6125), never against the common name.
 */
export function issueCertificate(ca: TestCa, name: string, commonName = name, hosts: string[] = []): ServerCertificate {
  const certFile = join(ca.dir, `${name}.pem`);
  const keyFile = join(ca.dir, `${name}.key`);
  const csr = join(ca.dir, `${name}.csr`);
  const ext = join(ca.dir, `${name}.ext`);
  const altNames = ['127.0.0.1', 'localhost', ...hosts].map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`));
  writeFileSync(ext, `subjectAltName=${[...new Set(altNames)].join(',')}\nextendedKeyUsage=serverAuth\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${keyFile}.new`, '-out', csr, '-subj', `/CN=${commonName}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', `${certFile}.new`, '-days', '1', '-extfile', ext]);
  // The chain with the CA in it, as cert-manager's tls.crt holds its chain: Chromium's SPKI list
  // matches a certificate of the chain the server presents, and the CA's key stays the same
  // across renewals (the leaf's does not).
  writeFileSync(`${certFile}.new`, `${readFileSync(`${certFile}.new`, 'utf8').trim()}\n${ca.pem.trim()}\n`);
  renameSync(`${keyFile}.new`, keyFile);
  renameSync(`${certFile}.new`, certFile);
  return { certFile, keyFile, serial: new X509Certificate(readFileSync(certFile)).serialNumber };
}

/** The serial number of the certificate a TLS server at host:port presents now (a new connection). */
export function servedSerial(port: number, ca: TestCa, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ca: ca.pem, servername: 'localhost' }, () => {
      const serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
      socket.end();
      resolve(serial);
    });
    socket.setTimeout(5000, () => socket.destroy(new Error(`no TLS handshake from ${host}:${port} in 5 s`)));
    socket.on('error', reject);
  });
}

export interface HttpsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** A request over HTTPS trusting `ca` (this process's fetch trusts only the system's CAs). Redirects are not followed. */
export function httpsFetch(url: string, ca: TestCa, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpsResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', headers: init.headers, ca: ca.pem, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in 10 s`)));
    req.on('error', reject);
    req.end(init.body);
  });
}
