/**
 * mediasoup's loss-based trap (issue 33; a measurement beside bench:layers, not part of it yet). A
 * Chromium viewer that takes the counter-offer plays on 2,000 kbit/s until the top layer, then
 * 400 kbit/s with 1 % loss toward it for 20 s (the loss puts mediasoup's LossBasedController in
 * its loss-limited state), then 2,000 kbit/s clean: a JSON line per run with ms to the top layer,
 * below it after the cut, and back on it after the restoring (`up`; null: not within 60 s).
 *
 *   node --import tsx bench/layers/lossTrap.ts [runs]        (root, ip netns, tc and nft, as paths)
 */
import { loadavg } from '../../kit/cpu.ts';
import { sleep } from '../../kit/stats.ts';
import { Progress } from '../lib/progress.ts';
import { LayersRig, SIMULCAST_STREAM } from './rig.ts';
import { closeViewer, openViewer, TOP_HEIGHT, waitForHeight } from './viewer.ts';

const runs = Number(process.argv[2] ?? 2);
const { rig, skipped } = await LayersRig.start(new Progress(1), true);
if (skipped) throw new Error(skipped);
try {
  for (let run = 1; run <= runs; run++) {
    const netns = rig.netns!;
    netns.shape({ rateKbit: 2000 });
    const page = await openViewer(rig.viewerBrowser!, rig.edge.url, SIMULCAST_STREAM, { counterOffer: true });
    try {
      const top = await waitForHeight(page, (h) => h === TOP_HEIGHT, 60_000);
      netns.shape({ rateKbit: 400, lossPercent: 1 });
      const down = await waitForHeight(page, (h) => h < TOP_HEIGHT, 20_000);
      await sleep(20_000 - (down ?? 20_000));
      netns.shape({ rateKbit: 2000 });
      const up = await waitForHeight(page, (h) => h === TOP_HEIGHT, 60_000);
      console.log(JSON.stringify({ run, top, down, up: up ?? null, load: loadavg() }));
    } finally {
      await closeViewer(page);
      netns.shape(undefined);
    }
  }
} finally {
  await rig.stop();
}
