/**
 * Product bugs the fuzzing found. Each has a regression test in fuzz.test.ts with its minimal
 * input, asserting the correct answer (a 4xx problem). While a bug is open (not `fixed`), a
 * property that meets it — recognised by the error the server logs for that request, never by the
 * input — counts the hit and goes on, so that the rest of the run still finds other bugs, and its
 * regression test is skipped. FUZZ_STRICT=1 makes every hit fail again. Fixed: set `fixed`.
 */

export interface KnownBug {
  id: string;
  /** One line: the input and the wrong answer. */
  summary: string;
  /** What goes wrong, and where. */
  title: string;
  /** Matches the server's "request failed" log line (error message and stack) for the request. */
  signature: RegExp;
  /** How it was fixed; a fixed bug is no longer tolerated by the properties. */
  fixed?: string;
}

export const KNOWN_BUGS: KnownBug[] = [
  {
    id: 'whip-produce-rejects-offer-parameters',
    fixed: 'parseOffer checks payload types, codec names, clock rates and rtcp-fb; produce() TypeErrors are 400s',
    summary: "POST /whip with 'a=rtpmap: opus/48000/2' or 'a=rtcp-fb:96  fir' is answered 500",
    title:
      'POST /whip: an offer whose RTP parameters mediasoup\'s produce() refuses is answered 500: producerParameters() only ' +
      'checks them with getProducerRtpParametersMapping(), then transport.produce() validates them further and throws a ' +
      'TypeError ("missing codec.payloadType" for "a=rtpmap: opus/48000/2", whose payload sdp-transform leaves as ""; ' +
      '"missing fb.type" for "a=rtcp-fb:96  fir") (media/sdp.ts producerParameters, origin/PublishedStream.ts)',
    signature: /WebRtcTransportImpl\.produce[\s\S]*PublishedStream/,
  },
  {
    id: 'whip-duplicate-ssrc',
    fixed: 'parseOffer refuses an SSRC announced twice in the offer or in one ssrc-group',
    summary: "POST /whip with one SSRC announced twice is answered 500",
    title:
      'POST /whip: an offer that announces one SSRC twice (audio and video with the same a=ssrc, or an RTX SSRC equal to ' +
      'another, e.g. "a=ssrc-group:FID 4230029238 4230029238") is answered 500: nothing checks that the SSRCs are distinct, ' +
      'and the worker refuses the second producer ("ssrc already exists in RTP listener") (media/sdp.ts producerParameters, ' +
      'origin/PublishedStream.ts)',
    signature: /^(RTX )?ssrc already exists in RTP listener/,
  },
  {
    id: 'whep-viewer-codecs-rejected-by-router',
    fixed: 'parseOffer refuses a zero clock rate; a fanout router mediasoup refuses is a 422',
    summary: "POST /whep with 'a=rtpmap:96 opus/0' is answered 500",
    title:
      'POST /whep: an offer with a codec mediasoup refuses as a router codec ("a=rtpmap:96 opus/0") is answered 500: ' +
      'receivableCodecs() passes the viewer\'s codecs unchecked to createRouter() in Relay.#createFanout, which throws ' +
      'UnsupportedError "media codec not supported" (media/sdp.ts receivableCodecs, edge/Relay.ts)',
    signature: /Relay\.#createFanout/,
  },
  {
    id: 'dtls-fingerprint-algorithm-unchecked',
    fixed: 'parseOffer checks the fingerprint algorithm and hash; connect() TypeErrors are 400s',
    summary: "POST /whip or /whep with 'a=fingerprint:sha-257 …' is answered 500",
    title:
      'POST /whip and /whep: an offer whose DTLS fingerprint algorithm is not one mediasoup knows ("a=fingerprint:sha-257 …", ' +
      'or "a=fingerprint: …" with none) is answered 500: parseOffer() takes any algorithm and transport.connect() throws ' +
      'TypeError "invalid FingerprintAlgorithm" (media/sdp.ts parseOffer, media/WebRtcSession.ts)',
    signature: /invalid FingerprintAlgorithm[\s\S]*WebRtcSession\.connect/,
  },
  {
    id: 'sdp-numbers-where-strings-expected',
    fixed: 'parseOffer turns codec names, fingerprint and rtcp-fb types into strings before use',
    summary: "POST /whip or /whep with 'a=fingerprint:256 …' or 'a=rtpmap:96 0/90000' is answered 500",
    title:
      'POST /whip and /whep: sdp-transform turns values that look like numbers into numbers, and media/sdp.ts calls string ' +
      'methods on them: "a=fingerprint:256 …" → TypeError "fingerprint.type.toLowerCase is not a function" in parseOffer(); ' +
      '"a=rtpmap:96 0/48000" (codec name "0") → "r.codec.toLowerCase is not a function" in producerParameters(); answered 500',
    signature: /is not a function[\s\S]*media\/sdp\.ts/,
  },
  {
    id: 'whep-join-races-relay-linger',
    fixed: 'a viewer being set up holds the relay (Relay.hold); a relay closing under it is a 503',
    summary: "POST /whep as the edge's relay lingers out is answered 500",
    title:
      'POST /whep: a viewer that joins while the stream\'s relay on the edge is lingering (no viewers) can get a 500 when ' +
      'the linger ends during its set-up: the timer is only cleared by relay.addViewer(), after consume() and connect(), so ' +
      'the relay closes its routers under the new session ("Channel request handler … not found [method:webRtcTransport.connect]", ' +
      'or "relay closed" from addViewer) (edge/Edge.ts #play, edge/Relay.ts)',
    signature: /Channel request handler with ID \S+ not found|^relay closed$/m,
  },
  {
    id: 'nul-byte-reaches-postgres',
    fixed: 'free-text fields of the admin API refuse NUL (400)',
    summary: "admin API strings with a NUL (POST /nodes/%00/drain, a token label) are answered 500",
    title:
      'Admin API: a string with a NUL character that passes validation reaches Postgres, which refuses it ' +
      '("invalid byte sequence for encoding UTF8: 0x00"), and the request is answered 500: POST /api/v1/nodes/%00/drain, ' +
      'POST /api/v1/tokens {"label":"a\\u0000b",…}, GET /api/v1/audit?action=%00, GET /api/v1/nodes?region=%00, ' +
      'GET /api/v1/streams?cursor=%00 (balancer/apiSchemas.ts: the z.string()s accept \\u0000)',
    signature: /invalid byte sequence for encoding \\?"UTF8\\?": 0x00/,
  },
  {
    id: 'admin-token-label-lone-surrogate',
    fixed: 'free text refuses lone surrogates; the token and its audit row are one transaction',
    summary: "POST /tokens with a lone surrogate in the label is answered 500 and leaves a token",
    title:
      'POST /api/v1/tokens {"label":"\\ud800","scopes":["read"]}: the token is stored (its label as U+FFFD), then the audit ' +
      'row\'s jsonb detail refuses the lone surrogate ("invalid input syntax for type json") and the request is answered 500 — ' +
      'with a usable admin token left behind whose secret nobody was shown (balancer/adminApi.ts createAdminToken: store and ' +
      'audit are not one transaction; apiSchemas.ts label accepts lone surrogates)',
    signature: /insert into \\?"audit\\?"[\s\S]*invalid input syntax for type json/,
  },
];

export const STRICT = process.env.FUZZ_STRICT === '1';

interface LogLine {
  level: number;
  time: number;
  msg?: string;
  err?: { message?: string; stack?: string };
}

/**
 * The known bug behind a 5xx answer, from the error the process logged for the request (sent at
 * `sentAt`): waits up to a second for the log line. Undefined for an unknown failure.
 */
export async function knownBugOf(output: () => string, sentAt: number): Promise<KnownBug | undefined> {
  if (STRICT) return undefined;
  for (let waited = 0; waited <= 1000; waited += 50) {
    const lines = output().slice(-200_000).split('\n').reverse();
    for (const text of lines) {
      if (!text.startsWith('{"level":50')) continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        continue;
      }
      if (line.time < sentAt - 50) break;
      if (line.msg !== 'request failed') continue;
      const error = `${line.err?.message ?? ''}\n${line.err?.stack ?? ''}`;
      return KNOWN_BUGS.find((b) => !b.fixed && b.signature.test(error));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

/** Whether a logged error line is a known bug's (the health checks leave those to the properties). */
export function isKnownBugLine(text: string): boolean {
  if (STRICT || !text.includes('"msg":"request failed"')) return false;
  try {
    const line = JSON.parse(text) as LogLine;
    const error = `${line.err?.message ?? ''}\n${line.err?.stack ?? ''}`;
    return KNOWN_BUGS.some((b) => !b.fixed && b.signature.test(error));
  } catch {
    return false;
  }
}
