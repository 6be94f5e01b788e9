import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as sdpTransform from 'sdp-transform';
import type { RtpCodecParameters } from 'mediasoup/types';
import { generateRouterRtpCapabilities } from 'mediasoup/ortc';
import { MEDIA_CODECS } from '../media/codecs.ts';
import { canDecode } from '../media/h264.ts';
import {
  answerParameters,
  buildAnswer,
  buildCounterOffer,
  consumerCapabilities,
  isSupported,
  offeredCodecs,
  offersTransportCc,
  parseAnswer,
  parseOffer,
  producerParameters,
  receivableCodecs,
  type AcceptedSection,
  type LocalTransport,
  type OfferSection,
} from '../media/sdp.ts';

/**
 * media/sdp.ts against offers as real clients write them: synthetic ones for each rule, and the
 * golden offers recorded from clients we did not write (test/fixtures/sdp/, see its README).
 */

const ROUTER = generateRouterRtpCapabilities(MEDIA_CODECS);
const FINGERPRINT = 'sha-256 3E:51:8B:41:F2:ED:7E:9E:92:1B:54:D3:50:A0:F1:86:14:A6:CF:E0:E8:04:82:6E:F2:53:B5:29:CE:B0:59:BA';
const LOCAL: LocalTransport = {
  iceParameters: { usernameFragment: 'srvufrag', password: 'srvpassword0123456789', iceLite: true },
  iceCandidates: [{ foundation: 'udpcandidate', priority: 1076302079, address: '127.0.0.1', ip: '127.0.0.1', protocol: 'udp', port: 40000, type: 'host' }],
  dtlsParameters: { role: 'auto', fingerprints: [{ algorithm: 'sha-256', value: 'AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99' }] },
};

interface Codec {
  pt: number;
  name: string;
  rate?: number;
  channels?: number;
  fmtp?: string;
}
interface Section {
  kind: 'audio' | 'video';
  mid: string;
  direction: 'sendonly' | 'recvonly' | 'sendrecv';
  codecs: Codec[];
  port?: number;
  bundleOnly?: boolean;
  ssrc?: number;
}

const OPUS: Codec = { pt: 111, name: 'opus', rate: 48000, channels: 2, fmtp: 'minptime=10;useinbandfec=1' };
const VP8: Codec = { pt: 96, name: 'VP8' };
const h264 = (pt: number, profileLevelId: string, mode = 1): Codec => ({ pt, name: 'H264', fmtp: `level-asymmetry-allowed=1;packetization-mode=${mode};profile-level-id=${profileLevelId}` });

/** An offer in the shape browsers write (bundle, rtcp-mux, one fingerprint per section). */
function offer(sections: Section[]): string {
  const lines = ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', `a=group:BUNDLE ${sections.map((s) => s.mid).join(' ')}`];
  for (const s of sections) {
    lines.push(`m=${s.kind} ${s.port ?? 9} UDP/TLS/RTP/SAVPF ${s.codecs.map((c) => c.pt).join(' ')}`, 'c=IN IP4 0.0.0.0');
    if (s.bundleOnly) lines.push('a=bundle-only');
    lines.push('a=ice-ufrag:abcd', 'a=ice-pwd:abcdefghijklmnopqrstuvwx', `a=fingerprint:${FINGERPRINT}`, 'a=setup:actpass', `a=mid:${s.mid}`, `a=${s.direction}`, 'a=rtcp-mux');
    for (const c of s.codecs) {
      lines.push(`a=rtpmap:${c.pt} ${c.name}/${c.rate ?? 90000}${c.channels ? `/${c.channels}` : ''}`);
      if (c.fmtp) lines.push(`a=fmtp:${c.pt} ${c.fmtp}`);
      lines.push(`a=rtcp-fb:${c.pt} nack`);
    }
    if (s.direction !== 'recvonly') lines.push(`a=ssrc:${s.ssrc ?? (s.kind === 'audio' ? 1111 : 2222)} cname:test`);
  }
  return `${lines.join('\r\n')}\r\n`;
}

const sectionsOf = (text: string) => parseOffer(text).sections.filter(isSupported);
const h264Of = (profileLevelId: string): RtpCodecParameters => ({
  mimeType: 'video/H264',
  payloadType: 102,
  clockRate: 90000,
  parameters: { 'packetization-mode': 1, 'profile-level-id': profileLevelId, 'level-asymmetry-allowed': 1 },
});
const OPUS_STREAM: RtpCodecParameters = { mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 };
const profileIds = (codecs: Array<{ parameters?: Record<string, unknown> }>) => codecs.map((c) => c.parameters?.['profile-level-id']).filter(Boolean);

describe('media/h264: what a viewer decodes', () => {
  it('follows the profile hierarchy for streams without B-frames', () => {
    // [what the viewer offers, what the stream is, can it decode]
    const table: Array<[string, string, boolean]> = [
      ['42e01f', '42e01f', true], // Constrained Baseline everywhere
      ['42001f', '42e01f', true], // Baseline decodes Constrained Baseline
      ['4d001f', '42e01f', true],
      ['640c1f', '42e01f', true],
      ['42e01f', '42001f', false], // Baseline may use tools Constrained Baseline lacks
      ['42e01f', '4d001f', false],
      ['42e01f', '64001f', false], // Chromium 156 (Debian) and Firefox against x264's default
      ['4d001f', '64001f', false],
      ['640c1f', '64001f', true], // Safari and Chrome take a High stream (no B-frames here)
      ['640c1f', '4d001f', true],
      ['64001f', '4d001f', true],
      ['4d0032', '4d001f', true], // levels are not compared
    ];
    for (const [viewer, stream, expected] of table) assert.equal(canDecode(viewer, stream), expected, `${viewer} decodes ${stream}`);
  });

  it('reads a missing profile-level-id as libwebrtc does (Constrained Baseline), and an unknown one as nothing', () => {
    assert.equal(canDecode(undefined, '42e01f'), true);
    assert.equal(canDecode('zzzzzz', '42e01f'), false);
    assert.equal(canDecode('42e01f', 'f4001f'), false);
  });
});

describe('media/sdp: offers', () => {
  it('takes a bundle-only section (port 0, a=bundle-only, in the BUNDLE group) as live (RFC 8843)', () => {
    const text = offer([
      { kind: 'video', mid: 'video0', direction: 'sendonly', codecs: [VP8] },
      { kind: 'audio', mid: 'audio0', direction: 'sendonly', codecs: [OPUS], port: 0, bundleOnly: true },
    ]);
    const parsed = parseOffer(text);
    assert.deepEqual(parsed.sections.map((s) => [s.mid, isSupported(s)]), [['video0', true], ['audio0', true]]);
  });

  it('rejects a port-0 section that is not bundle-only, or bundle-only outside the BUNDLE group', () => {
    const plain = offer([
      { kind: 'video', mid: '0', direction: 'sendonly', codecs: [VP8] },
      { kind: 'audio', mid: '1', direction: 'sendonly', codecs: [OPUS], port: 0 },
    ]);
    assert.deepEqual(parseOffer(plain).sections.map(isSupported), [true, false]);
    const outside = offer([
      { kind: 'video', mid: '0', direction: 'sendonly', codecs: [VP8] },
      { kind: 'audio', mid: '1', direction: 'sendonly', codecs: [OPUS], port: 0, bundleOnly: true },
    ]).replace('a=group:BUNDLE 0 1', 'a=group:BUNDLE 0');
    assert.deepEqual(parseOffer(outside).sections.map(isSupported), [true, false]);
  });

  it('refuses an a=mid that is not a token of at most 8 characters (each packet carries it): malformed SDP, not a worker error', () => {
    for (const mid of ['abcdefghi', '!\u{10000}', 'a"b']) {
      const text = offer([{ kind: 'video', mid: '0', direction: 'sendonly', codecs: [VP8] }]).replaceAll('a=mid:0', `a=mid:${mid}`).replace('a=group:BUNDLE 0', `a=group:BUNDLE ${mid}`);
      assert.throws(() => parseOffer(text), (e: Error) => e.name === 'InvalidSdpError' && /a=mid must be 1 to 8 token characters/.test(e.message), mid);
    }
    assert.equal(parseOffer(offer([{ kind: 'video', mid: 'abcdefgh', direction: 'sendonly', codecs: [VP8] }])).sections[0]!.mid, 'abcdefgh');
  });

  it('lets a publisher send what every browser plays when it offers that too', () => {
    // Safari's order: High first, then Constrained Baseline.
    const [safari] = sectionsOf(offer([{ kind: 'video', mid: '0', direction: 'sendonly', codecs: [h264(98, '640c1f'), h264(100, '42e01f'), VP8] }]));
    assert.deepEqual(profileIds(producerParameters(safari!, ROUTER)!.codecs), ['42e01f']);
    // Only High on offer (OBS-like): taken as it is.
    const [high] = sectionsOf(offer([{ kind: 'video', mid: '0', direction: 'sendonly', codecs: [h264(98, '640c1f')] }]));
    assert.deepEqual(profileIds(producerParameters(high!, ROUTER)!.codecs), ['640c1f']);
    // VP9 first, VP8 second: VP8.
    const [vp9] = sectionsOf(offer([{ kind: 'video', mid: '0', direction: 'sendonly', codecs: [{ pt: 98, name: 'VP9', fmtp: 'profile-id=0' }, VP8] }]));
    assert.equal(producerParameters(vp9!, ROUTER)!.codecs[0]!.mimeType, 'video/VP8');
    // AV1 alone: passed through.
    const [av1] = sectionsOf(offer([{ kind: 'video', mid: '0', direction: 'sendonly', codecs: [{ pt: 45, name: 'AV1' }] }]));
    assert.equal(producerParameters(av1!, ROUTER)!.codecs[0]!.mimeType, 'video/AV1');
  });
});

describe('media/sdp: viewers', () => {
  // Chromium 156 as Debian builds it: no High profile.
  const chromium = () =>
    sectionsOf(
      offer([
        { kind: 'audio', mid: '0', direction: 'recvonly', codecs: [OPUS] },
        { kind: 'video', mid: '1', direction: 'recvonly', codecs: [VP8, h264(103, '42001f'), h264(107, '42e01f'), h264(109, '4d001f'), h264(39, '4d001f', 0)] },
      ]),
    );
  const safari = () => sectionsOf(offer([{ kind: 'video', mid: '0', direction: 'recvonly', codecs: [h264(98, '640c1f'), h264(100, '42e01f'), VP8] }]));

  it('routes an H.264 stream to the viewer\'s first codec that decodes it, under the stream\'s profile, and answers the viewer\'s own', () => {
    const video = chromium()[1]!;
    const main = receivableCodecs(video, [OPUS_STREAM, h264Of('4d001f')]);
    assert.deepEqual(main.map((c) => [c.mimeType, c.preferredPayloadType]), [['video/H264', 109]], 'only what the stream carries, of the section\'s kind');
    const cb = receivableCodecs(video, [h264Of('42e01f')]);
    assert.deepEqual(cb.filter((c) => c.mimeType === 'video/H264').map((c) => [c.preferredPayloadType, c.parameters?.['profile-level-id']]), [[103, '42e01f']], 'Baseline (its first) takes Constrained Baseline');
    assert.deepEqual(profileIds(receivableCodecs(video, [h264Of('64001f')])), [], 'no codec of it decodes High');

    const [safariVideo] = safari();
    const routed = receivableCodecs(safariVideo!, [h264Of('4d001f')]);
    assert.deepEqual(routed.map((c) => [c.preferredPayloadType, c.parameters?.['profile-level-id']]), [[98, '4d001f']]);
    assert.deepEqual(receivableCodecs(safariVideo!, [{ mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }]).map((c) => c.preferredPayloadType), [96], 'VP8 by name');
    const caps = consumerCapabilities(safariVideo!, [h264Of('4d001f')]);
    assert.deepEqual(profileIds(caps.codecs!), ['4d001f'], 'the consumer matches the router');
    const answered = answerParameters(safariVideo!, { codecs: [{ ...h264Of('4d001f'), payloadType: 98 }], encodings: [{ ssrc: 1 }] });
    assert.equal(answered.codecs[0]!.parameters!['profile-level-id'], '640c1f', 'the answer names what Safari offered');
  });

  it('sends a Firefox ESR 153 viewer VP8 on its own payload type, with its abs-send-time id, and takes no REMB (mediasoup would drop it)', () => {
    const text = readFileSync(new URL('./fixtures/sdp/firefox-esr153-whep-offer.sdp', import.meta.url), 'utf8');
    const video = sectionsOf(text).find((s) => s.kind === 'video')!;
    const caps = consumerCapabilities(video, [{ mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }]);
    assert.deepEqual(caps.codecs!.map((c) => [c.mimeType, c.preferredPayloadType]), [['video/VP8', 120]]);
    assert.deepEqual(caps.codecs![0]!.rtcpFeedback!.map((fb) => `${fb.type}${fb.parameter ? ` ${fb.parameter}` : ''}`), ['nack', 'nack pli', 'ccm fir', 'transport-cc']);
    assert.equal(caps.headerExtensions!.find((e) => /abs-send-time/.test(e.uri))?.preferredId, 4, "mediasoup's own id: the one extension a consumer keeps");
  });

  it('names the codecs of an offer for a 422', () => {
    assert.deepEqual(offeredCodecs(chromium()[1]!), [
      'video/VP8',
      'video/H264 Baseline (42001f)',
      'video/H264 Constrained Baseline (42e01f)',
      'video/H264 Main (4d001f)',
      'video/H264 Main (4d001f) packetization-mode 0',
    ]);
  });
});

describe('media/sdp: answers', () => {
  /** Answers a publisher's offer the way the origin does. */
  function answer(text: string): sdpTransform.SessionDescription {
    const parsed = parseOffer(text);
    const accepted = new Map<string, AcceptedSection>();
    for (const section of parsed.sections.filter(isSupported)) {
      const rtpParameters = producerParameters(section as OfferSection, ROUTER);
      if (rtpParameters) accepted.set(section.mid, { direction: 'recvonly', rtpParameters });
    }
    return sdpTransform.parse(buildAnswer(parsed, LOCAL, accepted, '1'));
  }

  it('gives every m-line, rejected or not, ICE credentials, a fingerprint and the DTLS role (webrtcbin checks each)', () => {
    const parsed = answer(
      offer([
        { kind: 'video', mid: 'video0', direction: 'sendonly', codecs: [VP8] },
        { kind: 'audio', mid: 'audio0', direction: 'sendonly', codecs: [{ pt: 0, name: 'PCMU', rate: 8000 }] },
        { kind: 'audio', mid: 'audio1', direction: 'sendonly', codecs: [OPUS], port: 0, bundleOnly: true, ssrc: 3333 },
      ]),
    );
    assert.deepEqual(parsed.media.map((m) => [m.mid, m.port === 0]), [['video0', false], ['audio0', true], ['audio1', false]], 'mids and order kept; PCMU rejected, bundle-only accepted');
    for (const m of parsed.media) {
      assert.ok(m.fingerprint?.hash, `m=${m.type} mid ${m.mid} has a fingerprint`);
      assert.ok(m.iceUfrag && m.icePwd, `m=${m.type} mid ${m.mid} has ICE credentials`);
      assert.equal(m.setup, 'passive');
    }
    assert.equal(parsed.groups?.[0]?.mids, 'video0 audio1', 'only accepted sections are bundled');
  });

  // Chromium's sendEncodings, and Firefox's (which also announces an SSRC and an RTX SSRC per layer).
  for (const fixture of ['chromium-simulcast-whip-offer.sdp', 'firefox-esr153-simulcast-whip-offer.sdp']) {
    it(`takes every simulcast layer a publisher offers (RFC 8853): rids in offer order, answered recv (${fixture})`, () => {
      const text = readFileSync(new URL(`./fixtures/sdp/${fixture}`, import.meta.url), 'utf8');
      const video = parseOffer(text).sections.filter(isSupported).find((s) => s.kind === 'video')!;
      assert.deepEqual(producerParameters(video, ROUTER)?.encodings?.map((e) => e.rid), ['q', 'h', 'f'], 'one encoding per layer, lowest first');
      const m = answer(text).media.find((s) => s.type === 'video')!;
      assert.deepEqual(m.rids?.map((r) => `${r.id} ${r.direction}`), ['q recv', 'h recv', 'f recv']);
      assert.deepEqual(m.simulcast, { dir1: 'recv', list1: 'q;h;f' });
    });
  }

  it('answers no simulcast unless offered', () => {
    assert.equal(answer(offer([{ kind: 'video', mid: '0', direction: 'sendonly', codecs: [VP8] }])).media[0]!.simulcast, undefined);
  });

  it('answers a Firefox ESR 153 publisher its own header-extension ids (the rid ones too) and VP8, its first choice', () => {
    const extensions = (fixture: string) =>
      answer(readFileSync(new URL(`./fixtures/sdp/${fixture}`, import.meta.url), 'utf8'))
        .media.find((s) => s.type === 'video')!
        .ext!.map((e) => `${e.value} ${e.uri.replace(/^.*[/:#]/, '')}`);
    // Firefox also offers toffset (5): mediasoup dropped it in 3.28, so the answer leaves it out.
    assert.deepEqual(extensions('firefox-esr153-whip-offer.sdp'), ['3 mid', '4 abs-send-time', '6 playout-delay', '7 draft-holmer-rmcat-transport-wide-cc-extensions-01']);
    assert.deepEqual(extensions('firefox-esr153-simulcast-whip-offer.sdp'), [
      '3 mid',
      '4 abs-send-time',
      '6 playout-delay',
      '7 draft-holmer-rmcat-transport-wide-cc-extensions-01',
      '8 dependency-descriptor-rtp-header-extension',
      '9 rtp-stream-id',
      '10 repaired-rtp-stream-id',
    ]);
  });
});

describe('media/sdp: counter-offers (WHEP)', () => {
  const TWCC = 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01';
  /** What an edge's consumers would be given for a recorded viewer offer made a counter-offer: its codecs, mediasoup's extension ids. */
  function counterOffer(fixture: string) {
    const parsed = parseOffer(readFileSync(new URL(`./fixtures/sdp/${fixture}`, import.meta.url), 'utf8'));
    const accepted = new Map<string, AcceptedSection>();
    let ssrc = 1000;
    for (const s of parsed.sections.filter(isSupported)) {
      const caps = consumerCapabilities(s, [OPUS_STREAM, { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }], ROUTER.headerExtensions);
      const codec = caps.codecs![0]!;
      accepted.set(s.mid, {
        direction: 'sendonly',
        rtpParameters: {
          mid: s.mid,
          codecs: [{ mimeType: codec.mimeType, payloadType: codec.preferredPayloadType!, clockRate: codec.clockRate, channels: codec.channels, parameters: codec.parameters, rtcpFeedback: codec.rtcpFeedback }],
          headerExtensions: caps.headerExtensions!.map((e) => ({ uri: e.uri, id: e.preferredId })),
          encodings: [{ ssrc: ssrc++ }],
        },
        msid: { stream: 'show', track: `t${s.mid}` },
      });
    }
    return { parsed, ...buildCounterOffer(parsed, LOCAL, accepted, '1') };
  }

  for (const fixture of ['chrome-whep-offer.sdp', 'firefox-esr153-whep-offer.sdp', 'safari-whep-offer.sdp']) {
    it(`${fixture}: offers transport-cc; the counter-offer keeps its sections, offers DTLS actpass, mediasoup's extension ids, and the probe stream`, () => {
      const { parsed, sdp, mids } = counterOffer(fixture);
      assert.ok(parsed.sections.filter(isSupported).some((s) => offersTransportCc(s)), 'the browser offers transport-cc');
      const out = sdpTransform.parse(sdp);
      assert.deepEqual(out.media.map((m) => String(m.mid)), [...parsed.sections.map((s) => s.mid), 'probator']);
      assert.deepEqual(mids, out.media.map((m) => String(m.mid)));
      assert.deepEqual(out.groups?.[0]?.mids.split(' '), mids, 'every section, the probes too, in the bundle');
      for (const m of out.media) assert.equal(m.setup, 'actpass', `mid ${m.mid}: the client picks its DTLS role`);
      const video = out.media.find((m) => m.type === 'video' && m.mid !== 'probator')!;
      const routerId = ROUTER.headerExtensions!.find((e) => e.kind === 'video' && e.uri === TWCC)!.preferredId;
      assert.deepEqual(video.ext?.find((e) => e.uri === TWCC)?.value, routerId, 'transport-wide-cc at mediasoup\'s id');
      assert.ok(video.rtcpFb?.some((fb) => fb.type === 'transport-cc'), 'transport-cc feedback offered');
      const probe = out.media.find((m) => m.mid === 'probator')!;
      assert.equal(probe.direction, 'sendonly');
      assert.deepEqual(probe.rtp.map((r) => r.payload), [127]);
      assert.ok(probe.ssrcs?.some((x) => x.id === 1234), 'the probes\' SSRC announced');
      assert.deepEqual(probe.ext, video.ext, 'the probes carry the video\'s extensions');
      // Our own offer reads back as a valid offer (no unknown mids, SSRCs once).
      assert.equal(parseOffer(sdp).sections.length, mids.length);
    });
  }

  it('reads an answer: setup active or passive decides the DTLS role; actpass or none is malformed', () => {
    const { sdp } = counterOffer('chrome-whep-offer.sdp');
    const answer = (setup: string) => sdp.replace(/a=setup:actpass/g, setup ? `a=setup:${setup}` : '').replace(/a=sendonly/g, 'a=recvonly').replace(/a=ice-lite\r\n/, '');
    assert.equal(parseAnswer(answer('active')).dtlsParameters.role, 'client');
    assert.equal(parseAnswer(answer('passive')).dtlsParameters.role, 'server');
    assert.throws(() => parseAnswer(answer('actpass')), /setup:active or passive/);
    assert.throws(() => parseAnswer(answer('')), /setup:active or passive/);
    assert.throws(() => parseAnswer('v=0\r\n'), /no media section|the answer/);
  });

  it('adds no probe stream where the bundle already uses its payload type (127) for another codec', () => {
    const parsed = parseOffer(readFileSync(new URL('./fixtures/sdp/chrome-whep-offer.sdp', import.meta.url), 'utf8'));
    const audio = parsed.sections.filter(isSupported).find((s) => s.kind === 'audio')!;
    const video = parsed.sections.filter(isSupported).find((s) => s.kind === 'video')!;
    const accepted = new Map<string, AcceptedSection>([
      [audio.mid, { direction: 'sendonly', rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 127, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 1 }] } }],
      [video.mid, { direction: 'sendonly', rtpParameters: { codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000 }], encodings: [{ ssrc: 2 }] } }],
    ]);
    const { mids } = buildCounterOffer(parsed, LOCAL, accepted, '1');
    assert.ok(!mids.includes('probator'), mids.join(' '));
  });
});

describe('media/sdp: golden offers from other clients (test/fixtures/sdp)', () => {
  const dir = new URL('./fixtures/sdp/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.sdp'));

  /**
   * What each client gets. Publishers: the codec the answer takes per kind (what every browser
   * plays when offered). Viewers: which H.264 streams they are sent as they are (Constrained
   * Baseline, Main, x264's default High), by the profiles they offer.
   */
  const expected: Record<string, { publishes: Record<string, string> } | { plays: string[] }> = {
    'chromium-whip-offer.sdp': { publishes: { audio: 'audio/opus', video: 'video/VP8' } },
    'chromium-simulcast-whip-offer.sdp': { publishes: { audio: 'audio/opus', video: 'video/VP8' } },
    'firefox-whip-offer.sdp': { publishes: { audio: 'audio/opus', video: 'video/VP8' } },
    'safari-whip-offer.sdp': { publishes: { audio: 'audio/opus', video: 'video/H264 42e01f' } }, // not its first choice, 640c1f
    'obs-whip-offer.sdp': { publishes: { audio: 'audio/opus', video: 'video/H264 42e01f' } },
    'gstreamer-simple-whip-client-offer.sdp': { publishes: { audio: 'audio/OPUS', video: 'video/VP8' } }, // audio bundle-only
    'chrome-whep-offer.sdp': { plays: ['42e01f', '4d001f', '64001f'] },
    'safari-whep-offer.sdp': { plays: ['42e01f', '4d001f', '64001f'] }, // through 640c1f
    'firefox-whep-offer.sdp': { plays: ['42e01f'] },
    // Debian's Firefox ESR 153, offline: no OpenH264 plugin, so no H.264 at all (VP8, VP9, AV1).
    'firefox-esr153-whip-offer.sdp': { publishes: { audio: 'audio/opus', video: 'video/VP8' } },
    'firefox-esr153-simulcast-whip-offer.sdp': { publishes: { audio: 'audio/opus', video: 'video/VP8' } },
    'firefox-esr153-whep-offer.sdp': { plays: [] },
  };

  it('has an expectation for every fixture', () => assert.deepEqual(files.filter((f) => !expected[f]), []));

  for (const file of files) {
    it(`${file}: takes what the client should get`, () => {
      const parsed = parseOffer(readFileSync(new URL(file, dir), 'utf8'));
      const want = expected[file]!;
      const sections = parsed.sections.filter(isSupported);
      if ('publishes' in want) {
        const got = Object.fromEntries(
          sections.map((s) => {
            const codec = producerParameters(s, ROUTER)?.codecs[0];
            return [s.kind, codec ? `${codec.mimeType}${codec.parameters?.['profile-level-id'] ? ` ${codec.parameters['profile-level-id']}` : ''}` : 'none'];
          }),
        );
        assert.deepEqual(got, want.publishes);
      } else {
        const video = sections.find((s) => s.kind === 'video')!;
        assert.deepEqual(['42e01f', '4d001f', '64001f'].filter((p) => receivableCodecs(video, [h264Of(p)]).length > 0), want.plays);
      }
    });
  }

  for (const file of files) {
    it(`${file}: parses, and the answer keeps its mids and order with a codec for each section we take`, () => {
      const text = readFileSync(new URL(file, dir), 'utf8');
      const parsed = parseOffer(text);
      const sending = parsed.sections.filter(isSupported).filter((s) => s.direction === 'sendonly' || s.direction === 'sendrecv');
      const accepted = new Map<string, AcceptedSection>();
      if (sending.length > 0) {
        for (const s of sending) {
          const rtpParameters = producerParameters(s, ROUTER);
          if (rtpParameters) accepted.set(s.mid, { direction: 'recvonly', rtpParameters });
        }
      } else {
        // A viewer, offered a Constrained Baseline stream with Opus: what every browser decodes,
        // with a VP8 rendition for one without H.264 (Debian's Firefox ESR offline: no OpenH264).
        for (const s of parsed.sections.filter(isSupported)) {
          const [codec] = receivableCodecs(s, [OPUS_STREAM, h264Of('42e01f'), { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }]);
          if (codec) accepted.set(s.mid, { direction: 'sendonly', rtpParameters: { codecs: [{ mimeType: codec.mimeType, payloadType: codec.preferredPayloadType!, clockRate: codec.clockRate, channels: codec.channels, parameters: codec.parameters }], encodings: [{ ssrc: 1 }] } });
        }
      }
      const kinds = new Set(parsed.sections.filter(isSupported).map((s) => s.kind));
      assert.deepEqual([...accepted.keys()].map((mid) => parsed.sections.find((s) => s.mid === mid)!.kind).sort(), [...kinds].sort(), 'a codec for every audio and video section');
      const out = sdpTransform.parse(buildAnswer(parsed, LOCAL, accepted, '1'));
      assert.deepEqual(out.media.map((m) => String(m.mid)), parsed.sections.map((s) => s.mid));
      for (const m of out.media) assert.ok(m.fingerprint && m.iceUfrag && m.setup, `mid ${m.mid}: transport attributes`);
    });
  }
});
