import { readFileSync } from 'node:fs';
import fc from 'fast-check';

/**
 * Inputs for the SDP path: arbitrary text, SDP-shaped garbage (lines from an SDP grammar with
 * random values, any line endings, any number of sections), mutations of a real Chromium offer,
 * and trickle-ice-sdpfrag bodies for PATCH.
 */

/** Chromium's publish offer (Opus + VP8 with RTX), as recorded in test/fixtures. */
export const PUBLISH_OFFER = readFileSync(new URL('../fixtures/sdp/chromium-whip-offer.sdp', import.meta.url), 'utf8');

/** The same offer as a viewer sends it: recvonly, no SSRCs or track ids of its own. */
export const VIEW_OFFER = PUBLISH_OFFER.split('\r\n')
  .filter((l) => !/^a=(ssrc|ssrc-group|msid):/.test(l))
  .map((l) => (l === 'a=sendonly' ? 'a=recvonly' : l))
  .join('\r\n');

/**
 * The answer a client would PATCH to the edge's counter-offer `offer` (test/fuzz.test.ts): every
 * section received, the client's ICE credentials and fingerprint (those of VIEW_OFFER), DTLS
 * active, no SSRCs of the edge's.
 */
export function answerTo(offer: string): string {
  const fingerprint = /^a=fingerprint:.*$/m.exec(VIEW_OFFER)![0];
  return offer
    .split('\r\n')
    .filter((l) => !/^a=(ssrc|ssrc-group|msid|ice-lite|candidate|end-of-candidates)/.test(l))
    .map((l) =>
      l === 'a=sendonly' ? 'a=recvonly'
      : l === 'a=setup:actpass' ? 'a=setup:active'
      : l.startsWith('a=ice-ufrag:') ? `a=ice-ufrag:${OFFER_ICE_UFRAG}`
      : l.startsWith('a=ice-pwd:') ? `a=ice-pwd:${OFFER_ICE_PWD}`
      : l.startsWith('a=fingerprint:') ? fingerprint
      : l,
    )
    .join('\r\n');
}

export const OFFER_ICE_UFRAG = /a=ice-ufrag:(\S+)/.exec(PUBLISH_OFFER)![1]!;
export const OFFER_ICE_PWD = /a=ice-pwd:(\S+)/.exec(PUBLISH_OFFER)![1]!;

const hexDigit = fc.constantFrom(...'0123456789ABCDEFabcdef');

/** Numbers as an SDP parser meets them: small, huge, negative, fractional, not numbers at all. */
export const number: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 127 }).map(String) },
  { weight: 2, arbitrary: fc.integer().map(String) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map(String) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '0', '-1', '65535', '65536', '4294967295', '4294967296', '9007199254740993', '18446744073709551616',
      '9'.repeat(400), '1e309', '1e3', 'NaN', 'Infinity', '0x7f', '1.5', '-0', '', ' ', '٣', '１２', '00000000000000000096',
    ),
  },
);

/** Text tokens: plain, unicode (astral, combining, RTL), control characters, empty. */
export const token: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 12 }).map((s) => s.replace(/\s/g, '')) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 8 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '', '*', '-', '0', 'sha-256', 'actpass', 'opus', 'VP8', 'H264', 'rtx', 'cname', 'FID', 'send', 'recv', '\u0000', '\u202e',
      'a'.repeat(300), '💥', 'e\u0301', '\ud800', 'null', 'undefined', '__proto__', 'constructor', '%s%n', "' OR 1=1 --",
    ),
  },
);

const ip = fc.oneof(fc.ipV4(), fc.constantFrom('0.0.0.0', '::1', '2001:db8::1', '999.1.1.1', 'localhost', 'example.com', ''), token);
const codec = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('opus', 'VP8', 'VP9', 'H264', 'AV1', 'rtx', 'red', 'ulpfec', 'flexfec-03', 'telephone-event', 'CN', 'PCMU', 'G722', 'L16', 'H265', 'multiopus', 'OPUS', 'h264', 'vp8') },
  { weight: 1, arbitrary: token },
);
const fmtpKey = fc.oneof(
  fc.constantFrom('packetization-mode', 'profile-level-id', 'level-asymmetry-allowed', 'apt', 'minptime', 'useinbandfec', 'stereo', 'sprop-stereo', 'maxplaybackrate', 'x-google-start-bitrate', 'profile-id', 'usedtx', 'rtx-time'),
  token,
);
const fmtpValue = fc.oneof(number, token, fc.string({ unit: hexDigit, minLength: 6, maxLength: 6 }), fc.constantFrom('42e01f', '42001f', '4d001f', '640032', '42e0', 'zzzzzz', '1', '0'));
const fmtp = fc
  .array(fc.tuple(fmtpKey, fc.constantFrom('=', '', '==', ' = '), fmtpValue), { maxLength: 6 })
  .chain((pairs) => fc.constantFrom(';', '; ', ';;', ',', ' ').map((sep) => pairs.map(([k, eq, v]) => `${k}${eq}${v}`).join(sep)));
const fingerprintHash = fc.oneof(
  fc.array(fc.string({ unit: hexDigit, minLength: 2, maxLength: 2 }), { minLength: 32, maxLength: 32 }).map((b) => b.join(':')),
  fc.array(fc.string({ unit: hexDigit, minLength: 1, maxLength: 3 }), { maxLength: 70 }).map((b) => b.join(':')),
  token,
);
const algorithm = fc.oneof(fc.constantFrom('sha-256', 'SHA-256', 'sha-1', 'sha-224', 'sha-384', 'sha-512', 'md5', 'md2', 'sha-3', '', 'SHA256'), token);
const mediaType = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('audio', 'video') }, { weight: 1, arbitrary: fc.constantFrom('application', 'text', 'message', 'AUDIO', '') }, { weight: 1, arbitrary: token });
const protocol = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('UDP/TLS/RTP/SAVPF', 'RTP/SAVPF', 'UDP/DTLS/SCTP', 'RTP/AVP', 'TCP/DTLS/RTP/SAVPF', 'SAVPF', 'UDP/TLS/RTP/SAVP') },
  { weight: 1, arbitrary: token },
);
const payloads = fc.array(number, { maxLength: 12 }).map((p) => p.join(' '));
const direction = fc.constantFrom('a=sendonly', 'a=recvonly', 'a=sendrecv', 'a=inactive');
const extUri = fc.oneof(
  fc.constantFrom(
    'urn:ietf:params:rtp-hdrext:sdes:mid',
    'urn:ietf:params:rtp-hdrext:ssrc-audio-level',
    'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
    'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
    'urn:3gpp:video-orientation',
    'urn:ietf:params:rtp-hdrext:toffset',
    'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
  ),
  token,
);

const t = (parts: TemplateStringsArray, ...values: Array<fc.Arbitrary<string>>): fc.Arbitrary<string> =>
  fc.tuple(...values).map((vs) => parts.reduce((out, part, i) => out + part + (i < vs.length ? vs[i] : ''), ''));

/** One line of an SDP grammar, every value random. */
export const sdpLine: fc.Arbitrary<string> = fc.oneof(
  t`v=${number}`,
  t`o=${token} ${number} ${number} IN IP4 ${ip}`,
  t`s=${token}`,
  t`t=${number} ${number}`,
  t`c=IN ${fc.constantFrom('IP4', 'IP6', 'IPX')} ${ip}`,
  t`b=AS:${number}`,
  t`m=${mediaType} ${number} ${protocol} ${payloads}`,
  t`a=rtpmap:${number} ${codec}/${number}`,
  t`a=rtpmap:${number} ${codec}/${number}/${number}`,
  t`a=fmtp:${number} ${fmtp}`,
  t`a=rtcp-fb:${number} ${fc.constantFrom('nack', 'nack pli', 'ccm fir', 'goog-remb', 'transport-cc', '')}`,
  t`a=rtcp-fb:* ${token}`,
  t`a=ice-ufrag:${token}`,
  t`a=ice-pwd:${token}`,
  t`a=ice-options:${token}`,
  t`a=fingerprint:${algorithm} ${fingerprintHash}`,
  t`a=setup:${fc.oneof(fc.constantFrom('actpass', 'active', 'passive', 'holdconn', ''), token)}`,
  t`a=mid:${token}`,
  t`a=msid:${token} ${token}`,
  t`a=ssrc:${number} cname:${token}`,
  t`a=ssrc:${number} msid:${token} ${token}`,
  t`a=ssrc:${number} ${token}`,
  t`a=ssrc-group:${fc.constantFrom('FID', 'SIM', 'FEC-FR', '')} ${payloads}`,
  t`a=rid:${token} ${fc.constantFrom('send', 'recv', '', 'sendrecv')}`,
  t`a=rid:${token} send pt=${payloads}`,
  t`a=simulcast:${fc.constantFrom('send', 'recv', '')} ${token}`,
  t`a=extmap:${number} ${extUri}`,
  t`a=extmap:${number}/${token} ${extUri}`,
  t`a=group:BUNDLE ${fc.array(token, { maxLength: 5 }).map((m) => m.join(' '))}`,
  t`a=candidate:${number} ${number} ${fc.constantFrom('udp', 'tcp', 'UDP', 'sctp')} ${number} ${ip} ${number} typ ${fc.constantFrom('host', 'srflx', 'relay', 'prflx', '')}`,
  t`a=rtcp:${number} IN IP4 ${ip}`,
  t`a=sctp-port:${number}`,
  t`a=msid-semantic: WMS ${token}`,
  direction,
  fc.constantFrom('a=rtcp-mux', 'a=rtcp-rsize', 'a=ice-lite', 'a=end-of-candidates', 'a=extmap-allow-mixed', 'a=', '=', '', 'a=rtpmap:', 'a=fmtp:', 'a=ssrc:', 'a=candidate:'),
  t`a=${token}:${token}`,
  t`${fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzAZ0=')}=${token}`,
  fc.string({ unit: 'grapheme', maxLength: 40 }),
);

const EOLS = ['\r\n', '\n', '\r', '\r\r\n', '\n\r', '\r\n\r\n', ' \r\n', '\u2028', '\u0000\r\n'];

/** Joins lines with one line ending, or a mix of them (mostly CRLF and LF, as real clients do). */
function joinLines(lines: string[], eols: number[], mixed: boolean, trailing: boolean): string {
  if (lines.length === 0) return '';
  const eolAt = (i: number) => EOLS[mixed ? eols[i % eols.length]! % EOLS.length : eols[0]! % 2]!;
  return lines.map((l, i) => l + (i < lines.length - 1 || trailing ? eolAt(i) : '')).join('');
}

const eolChoice = fc.record({
  eols: fc.array(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1) }, { weight: 1, arbitrary: fc.nat(EOLS.length - 1) }), { minLength: 1, maxLength: 8 }),
  mixed: fc.boolean(),
  trailing: fc.boolean(),
});

/** SDP-shaped garbage: an optional v=0, session lines, 0–20 media sections of random lines. */
export const sdpShaped: fc.Arbitrary<string> = fc
  .record({
    version: fc.oneof({ weight: 5, arbitrary: fc.constant('v=0') }, { weight: 1, arbitrary: t`v=${number}` }, { weight: 1, arbitrary: fc.constant('') }),
    session: fc.array(sdpLine, { maxLength: 12 }),
    sections: fc.array(fc.tuple(t`m=${mediaType} ${number} ${protocol} ${payloads}`, fc.array(sdpLine, { maxLength: 20 })), { maxLength: 20 }),
    eol: eolChoice,
  })
  .map(({ version, session, sections, eol }) =>
    joinLines([...(version ? [version] : []), ...session, ...sections.flatMap(([m, lines]) => [m, ...lines])], eol.eols, eol.mixed, eol.trailing),
  );

/**
 * SDP that gets past the first checks (v=0, a fingerprint, ICE credentials, a mid per section),
 * with random codecs, fmtp, SSRCs, RIDs, extensions and directions: the offers that reach
 * mediasoup.
 */
export const sdpSkeleton = (dir: 'sendonly' | 'recvonly'): fc.Arbitrary<string> =>
  fc
    .record({
      sections: fc.array(
        fc.record({
          kind: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('audio', 'video') }, { weight: 1, arbitrary: mediaType }),
          protocol: fc.oneof({ weight: 5, arbitrary: fc.constant('UDP/TLS/RTP/SAVPF') }, { weight: 1, arbitrary: protocol }),
          port: fc.oneof({ weight: 5, arbitrary: fc.constant('9') }, { weight: 1, arbitrary: number }),
          codecs: fc.array(
            fc.record({ pt: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 96, max: 127 }).map(String) }, { weight: 1, arbitrary: number }), codec, rate: fc.oneof(fc.constantFrom('48000', '90000', '8000'), number), channels: fc.option(fc.oneof(fc.constantFrom('2', '1'), number)), fmtp: fc.option(fmtp) }),
            { maxLength: 5 },
          ),
          direction: fc.oneof({ weight: 5, arbitrary: fc.constant(`a=${dir}`) }, { weight: 1, arbitrary: direction }, { weight: 1, arbitrary: fc.constant('') }),
          ssrcs: fc.array(number, { maxLength: 3 }),
          fid: fc.option(fc.tuple(number, number)),
          rids: fc.array(token, { maxLength: 3 }),
          extra: fc.array(sdpLine, { maxLength: 6 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
      setup: fc.oneof({ weight: 5, arbitrary: fc.constant('actpass') }, { weight: 1, arbitrary: fc.constantFrom('active', 'passive', 'holdconn', '') }),
      algorithm: fc.oneof({ weight: 5, arbitrary: fc.constant('sha-256') }, { weight: 1, arbitrary: algorithm }),
      hash: fc.oneof({ weight: 3, arbitrary: fc.constant(/a=fingerprint:\S+ (\S+)/.exec(PUBLISH_OFFER)![1]!) }, { weight: 1, arbitrary: fingerprintHash }),
      eol: eolChoice,
    })
    .map(({ sections, setup, algorithm, hash, eol }) => {
      const lines = ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', `a=group:BUNDLE ${sections.map((_, i) => i).join(' ')}`];
      sections.forEach((s, i) => {
        lines.push(`m=${s.kind} ${s.port} ${s.protocol} ${s.codecs.map((c) => c.pt).join(' ')}`, 'c=IN IP4 0.0.0.0');
        lines.push(`a=ice-ufrag:${OFFER_ICE_UFRAG}`, `a=ice-pwd:${OFFER_ICE_PWD}`, `a=fingerprint:${algorithm} ${hash}`, `a=setup:${setup}`, `a=mid:${i}`, 'a=rtcp-mux');
        if (s.direction) lines.push(s.direction);
        for (const c of s.codecs) {
          lines.push(`a=rtpmap:${c.pt} ${c.codec}/${c.rate}${c.channels ? `/${c.channels}` : ''}`);
          if (c.fmtp !== null) lines.push(`a=fmtp:${c.pt} ${c.fmtp}`);
        }
        if (s.fid) lines.push(`a=ssrc-group:FID ${s.fid[0]} ${s.fid[1]}`);
        for (const ssrc of s.ssrcs) lines.push(`a=ssrc:${ssrc} cname:fuzz`);
        for (const rid of s.rids) lines.push(`a=rid:${rid} send`);
        if (s.rids.length > 0) lines.push(`a=simulcast:send ${s.rids.join(';')}`);
        lines.push(...s.extra);
      });
      return joinLines(lines, eol.eols, eol.mixed, true);
    });

type Mutation =
  | { op: 'delete' | 'duplicate'; at: number }
  | { op: 'swap'; at: number; to: number }
  | { op: 'replace' | 'insert'; at: number; line: string }
  | { op: 'token'; at: number; index: number; value: string }
  | { op: 'truncate'; at: number }
  | { op: 'char'; at: number; value: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('swap' as const), at: fc.nat(), to: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('replace' as const, 'insert' as const), at: fc.nat(), line: sdpLine }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('token' as const), at: fc.nat(), index: fc.nat(8), value: fc.oneof(number, token) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('char' as const), at: fc.nat(), value: fc.string({ unit: 'binary', minLength: 1, maxLength: 2 }) }) },
);

function mutate(base: string, mutations: Mutation[]): string {
  let lines = base.split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let text: string | undefined;
  for (const m of mutations) {
    if (text !== undefined) {
      // Character-level mutations work on the text; later line mutations split it again.
      lines = text.split('\r\n');
      text = undefined;
    }
    const at = lines.length === 0 ? 0 : m.at % lines.length;
    switch (m.op) {
      case 'delete':
        lines.splice(at, 1);
        break;
      case 'duplicate':
        lines.splice(at, 0, lines[at] ?? '');
        break;
      case 'swap': {
        const to = lines.length === 0 ? 0 : m.to % lines.length;
        [lines[at], lines[to]] = [lines[to] ?? '', lines[at] ?? ''];
        break;
      }
      case 'replace':
        lines[at] = m.line;
        break;
      case 'insert':
        lines.splice(at, 0, m.line);
        break;
      case 'token': {
        // The line's values: what sits between ' ', ':', '/', '=' and ';'.
        const parts = (lines[at] ?? '').split(/([ :/=;])/);
        const values = parts.map((_, i) => i).filter((i) => i % 2 === 0 && i > 0);
        if (values.length === 0) break;
        parts[values[m.index % values.length]!] = m.value;
        lines[at] = parts.join('');
        break;
      }
      case 'truncate': {
        const whole = `${lines.join('\r\n')}\r\n`;
        text = whole.slice(0, m.at % (whole.length + 1));
        break;
      }
      case 'char': {
        const whole = `${lines.join('\r\n')}\r\n`;
        const i = m.at % whole.length;
        text = whole.slice(0, i) + m.value + whole.slice(i + 1);
        break;
      }
    }
  }
  return text ?? `${lines.join('\r\n')}\r\n`;
}

/** The real offer with 1–6 mutations: lines dropped, doubled, swapped, replaced, values changed, cut. */
export const mutatedOffer = (base: string): fc.Arbitrary<string> =>
  fc.array(mutation, { minLength: 1, maxLength: 6 }).map((mutations) => mutate(base, mutations));

/** Any of the above, plus plain text and bytes; bodies as strings or raw bytes (invalid UTF-8). */
export const sdpBody = (base: string, dir: 'sendonly' | 'recvonly'): fc.Arbitrary<string | Uint8Array> =>
  fc.oneof(
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map((s) => `v=0\r\n${s}`) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.concat([Buffer.from('v=0\r\n'), b])) },
    { weight: 5, arbitrary: sdpShaped },
    { weight: 5, arbitrary: sdpSkeleton(dir) },
    { weight: 8, arbitrary: mutatedOffer(base) },
  );

/** A trickle-ice-sdpfrag body (RFC 8840): candidates, credentials, mids, and garbage between. */
export const sdpFrag: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        ufrag: fc.option(fc.oneof(fc.constant(OFFER_ICE_UFRAG), token)),
        pwd: fc.option(fc.oneof(fc.constant(OFFER_ICE_PWD), token)),
        lines: fc.array(
          fc.oneof(
            t`a=candidate:${number} ${number} ${fc.constantFrom('udp', 'tcp')} ${number} ${ip} ${number} typ ${fc.constantFrom('host', 'srflx', 'relay')}`,
            t`m=${mediaType} ${number} ${protocol} ${payloads}`,
            t`a=mid:${token}`,
            fc.constantFrom('a=end-of-candidates', 'a=ice-options:trickle', 'm=audio 9 UDP/TLS/RTP/SAVPF 0', 'a=mid:0', 'a=mid:1'),
            sdpLine,
          ),
          { maxLength: 10 },
        ),
        eol: eolChoice,
      })
      .map(({ ufrag, pwd, lines, eol }) =>
        joinLines([...(ufrag !== null ? [`a=ice-ufrag:${ufrag}`] : []), ...(pwd !== null ? [`a=ice-pwd:${pwd}`] : []), ...lines], eol.eols, eol.mixed, eol.trailing),
      ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }) },
  { weight: 1, arbitrary: sdpShaped },
);
