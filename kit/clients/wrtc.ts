/**
 * The Node-side WHIP publisher and WHEP viewers on libwebrtc (@roamhq/wrtc) that the tests and the
 * benchmarks use where a browser would be too heavy. Each runs as its own process (a load generator
 * apart from the servers it loads; a native crash in libwebrtc never takes a test runner or the
 * benchmark down with it), started through kit/wrtc.ts. It reports on stdout, one JSON object a
 * line, and takes commands on stdin, one a line (lines.ts).
 *
 *   publish --target <whip url> --token <token> [--target … --token …] [--kbps 600] [--width 320]
 *           [--height 180] [--fps 30] [--seconds 600]                                  (publish.ts)
 *   play --url <whep url> [--viewers 1] [--seconds 5] [--token t] [--phases] [--h264]
 *        [--counter-offer]                                                            (play.ts)
 *   view --url <whep url> [--token t] [--stamp] [--receive-only] [--video-only]
 *        [--counter-offer]                                                            (view.ts)
 *   view --url <Janus HTTP API url> --janus <mountpoint id>                  (view.ts, janus.ts)
 *
 * `publish` sends one synthetic source (source.ts: a moving gradient with noise, each frame
 * stamped with its capture time) to every target. `play` is the tests' viewer: a few viewers that
 * play for a while and report what they decoded (--phases: and how long each step to their first
 * frame took, phases.ts; --h264: receive-only, offering H.264). `view` is the benchmarks' load generator:
 * viewers added on command, their counters and latency stamps read on command. --counter-offer
 * (both): the viewers ask for a WHEP counter-offer and answer it (negotiate.ts), so that the edge
 * estimates their links (transport-cc) as it does the web player's with `counterOffer`.
 * Every command ends with a `done` line, or an `error` line and exit code 1.
 */
import { parseArgs } from 'node:util';
import { emit } from './lines.ts';
import { play } from './play.ts';
import { publish } from './publish.ts';
import { view } from './view.ts';

const USAGE =
  'usage: wrtc.ts publish --target <url> --token <t> … | play --url <url> [--viewers n] [--seconds s] [--phases] [--h264] [--counter-offer] | view --url <url> [--stamp] [--counter-offer] [--janus <mountpoint id>]';

const [mode, ...rest] = process.argv.slice(2);
try {
  const { values } = parseArgs({
    args: rest,
    options: {
      target: { type: 'string', multiple: true, default: [] },
      token: { type: 'string', multiple: true, default: [] },
      url: { type: 'string' },
      viewers: { type: 'string', default: '1' },
      kbps: { type: 'string', default: '600' },
      width: { type: 'string', default: '320' },
      height: { type: 'string', default: '180' },
      fps: { type: 'string', default: '30' },
      seconds: { type: 'string' },
      stamp: { type: 'boolean', default: false },
      'receive-only': { type: 'boolean', default: false },
      'video-only': { type: 'boolean', default: false },
      phases: { type: 'boolean', default: false },
      h264: { type: 'boolean', default: false },
      janus: { type: 'string' },
      'counter-offer': { type: 'boolean', default: false },
    },
  });
  if ((mode === 'play' || mode === 'view') && !values.url) throw new Error(USAGE);
  if (mode === 'publish') {
    if (values.target.length === 0) throw new Error(USAGE);
    await publish({
      targets: values.target,
      tokens: values.token,
      kbps: Number(values.kbps),
      width: Number(values.width),
      height: Number(values.height),
      fps: Number(values.fps),
      seconds: Number(values.seconds ?? 600),
    });
  } else if (mode === 'play') {
    await play({ url: values.url!, viewers: Number(values.viewers), seconds: Number(values.seconds ?? 5), token: values.token[0], phases: values.phases, h264: values.h264, counterOffer: values['counter-offer'] });
  } else if (mode === 'view') {
    const janus = values.janus === undefined ? undefined : Number(values.janus);
    if (janus !== undefined && (!Number.isInteger(janus) || values.stamp || values['video-only'])) throw new Error('view --janus <mountpoint id>: an integer id; its viewers are receive-only, audio and video');
    await view({ url: values.url!, token: values.token[0], stamp: values.stamp, receiveOnly: values['receive-only'] || janus !== undefined, videoOnly: values['video-only'], counterOffer: values['counter-offer'], janus });
  } else {
    throw new Error(USAGE);
  }
  emit('done');
} catch (error) {
  emit('error', { message: (error as Error).message });
  process.exitCode = 1;
}
// libwebrtc's threads can keep the process alive (or crash it) on teardown; we are done.
process.exit();
