import { gzipSync } from 'node:zlib';
import fc from 'fast-check';

/**
 * Inputs every endpoint shares: path segments, header values (content types, encodings,
 * authorizations), all within what an HTTP client can send at all (Node refuses a header value
 * outside \t, 0x20–0x7e and 0x80–0xff, and a path outside 0x21–0xff).
 */

const headerChar = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
  { weight: 1, arbitrary: fc.constant(0x09) },
).map((c) => String.fromCharCode(c));

/** Any value Node lets a client send in a header. */
export const headerValue = fc.string({ unit: headerChar, maxLength: 60 });

const safeEncode = (s: string) => {
  try {
    return encodeURIComponent(s);
  } catch {
    return '%ED%A0%80'; // a lone surrogate, as UTF-8 would spell it
  }
};

/** A path segment: valid stream names, encoded unicode, raw characters, and the classics. */
export const pathSegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 70 }).map(safeEncode) },
  // Raw characters: printable ASCII only. Bytes 0x7f–0xff in a request target are refused by
  // Node's HTTP parser before the application sees the request (known finding, see fuzz.test.ts).
  { weight: 2, arbitrary: fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 20 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '%', '%zz', '%00', '%0A', '..', '.', '%2E%2E', '%2F', 'a%2Fb', '%C3%A9t%C3%A9', '%E0%A4%A', '%FF', 'x'.repeat(65), 'x'.repeat(8000),
      '?', '?x=1', '#frag', ';', 'a;b', '%20', '+', 'CON', '-', '_', '%5C', '\\', '~', '*', '%2A', '__proto__', 'constructor', '0', '00',
    ),
  },
);

/** Content types around `base`: itself, with parameters, case changes, neighbours, nonsense, none. */
export const contentType = (base: string): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant(base) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        `${base}; charset=utf-8`, `${base}; charset=UTF-16`, `${base}; charset=latin1`, `${base}; charset=koi8-r`, `${base}; charset=nope`,
        `${base}; charset=`, `${base};charset="utf-8"`, `${base}; foo=bar; foo=baz`, base.toUpperCase(), ` ${base} `, `${base},text/plain`,
        'text/plain', 'application/json', 'application/sdp', 'application/trickle-ice-sdpfrag', 'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x', 'application/merge-patch+json', 'application/sdp+json', '*/*', 'application/*', '', ';', '/', 'application/',
      ),
    },
    { weight: 1, arbitrary: headerValue },
    { weight: 1, arbitrary: headerValue.map((p) => `${base}; ${p}`) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );

export const contentEncoding: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 12, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-gzip', 'compress', 'zstd', 'gzip, gzip', 'GZIP', '') },
  { weight: 1, arbitrary: headerValue },
);

/** A body made to go with a gzip content encoding: real gzip of `text`, a gzip bomb, or garbage. */
export const gzipBodies = (text: string): Array<{ encoding: string; body: Uint8Array }> => [
  { encoding: 'gzip', body: gzipSync(text) },
  { encoding: 'gzip', body: gzipSync(Buffer.alloc(2 * 1024 * 1024, 'a')) },
  { encoding: 'gzip', body: gzipSync(text).subarray(0, 20) },
];

/** Authorization header values that are not a usable token. */
export const badAuthorization: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '', 'Bearer', 'Bearer ', 'Bearer  ', 'bearer x', 'Basic dXNlcjpwYXNz', 'Bearer a b', 'Token abc', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
    'Bearer eyJhbGciOiJIUzI1NiJ9.e30.AAAA', 'Bearer ' + 'a'.repeat(8000), 'Bearer \u00ff\u00fe',
  ),
  headerValue,
  headerValue.map((v) => `Bearer ${v}`),
);
