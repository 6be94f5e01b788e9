import type { Producer, ProducerStat } from 'mediasoup/types';

/**
 * Bits per second arriving on a producer (all its RTP streams), 0 if its worker cannot say. A node's
 * egress is counted from this: each producer's bitrate times the transports it is sent on, one
 * request to the worker per producer rather than one per viewer or relay (see ClusterNode's
 * LOAD_WAIT_MS for why those requests must stay few).
 */
export async function producerBitrate(producer: Producer): Promise<number> {
  const stats = await producer.getStats().catch(() => []);
  return stats.reduce((sum, s) => sum + (s.bitrate ?? 0), 0);
}

/** Bits per second arriving on all of a stream's producers: what one more relay of it carries. */
export async function producersBitrate(producers: readonly Producer[]): Promise<number> {
  let total = 0;
  for (const producer of producers) total += await producerBitrate(producer);
  return total;
}

const recentStats = new WeakMap<Producer, { at: number; stats: Promise<ProducerStat[]> }>();

/**
 * A producer's statistics, read at most once per `maxAgeMs` however many ask: an edge's viewers of
 * one stream share one producer per fan-out router, and each asks for its layers' bitrates (event
 * streams, layer selection by estimate).
 */
export function recentProducerStats(producer: Producer, maxAgeMs: number): Promise<ProducerStat[]> {
  const recent = recentStats.get(producer);
  if (recent && Date.now() - recent.at < maxAgeMs) return recent.stats;
  const stats = producer.getStats().catch((): ProducerStat[] => []);
  recentStats.set(producer, { at: Date.now(), stats });
  return stats;
}
