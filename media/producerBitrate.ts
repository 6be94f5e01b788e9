import type { Producer } from 'mediasoup/types';

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
