import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The one metrics registry of a process, served as Prometheus text on `/metrics` by every role.
 * Everything is prefixed `relaycast_`; process and Node.js metrics come from prom-client.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly viewers = new Gauge({ name: 'relaycast_viewers', help: 'Viewers connected to this node', registers: [this.registry] });
  readonly streams = new Gauge({ name: 'relaycast_streams', help: 'Streams published on or relayed to this node', registers: [this.registry] });
  readonly egress = new Gauge({
    name: 'relaycast_egress_bytes_per_second',
    help: 'Media sent by this node to viewers and downstream edges: each stream\'s incoming bitrate times its receivers',
    registers: [this.registry],
  });
  readonly egressCapacity = new Gauge({
    name: 'relaycast_egress_capacity_bytes_per_second',
    help: 'What this node\'s network sends at most (--egress-capacity): past it, the node feeds no more edges and the balancer sends it no viewers',
    registers: [this.registry],
  });
  readonly relays = new Gauge({
    name: 'relaycast_relays',
    help: 'Stream relays: out = piped from this node to edges, in = pulled by this edge from upstream',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });

  readonly relayRefusals = new Counter({
    name: 'relaycast_relay_refusals_total',
    help: 'Relays this node refused to feed an edge for lack of room, by reason (limit: it feeds the stream to its most edges, --origin-max-relays or --edge-max-children; egress: it would send more than --egress-capacity)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly relayDemotions = new Counter({
    name: 'relaycast_relay_demotions_total',
    help: 'Relays an origin at --origin-max-relays asked to move below a newcomer nearer the way, to feed the newcomer in their place (media/treePaths.ts chooseDemotion)',
    registers: [this.registry],
  });
  readonly hlsPackagers = new Gauge({ name: 'relaycast_hls_packagers', help: 'Streams an origin packages for HLS now', registers: [this.registry] });
  readonly hlsPackagedBytes = new Gauge({
    name: 'relaycast_hls_packaged_bytes',
    help: 'Bytes an origin\'s HLS packagers hold: each variant\'s window of segments and recent parts',
    registers: [this.registry],
  });
  readonly hlsViewers = new Gauge({
    name: 'relaycast_hls_viewers',
    help: 'HLS viewers of an edge: distinct clients that reloaded a stream\'s playlist within the last 10 s',
    registers: [this.registry],
  });
  readonly hlsRequests = new Counter({
    name: 'relaycast_hls_requests_total',
    help: 'HLS requests an edge answered, by file kind (playlist, part, segment, init) and cache outcome (hit, coalesced: waited for a fetch under way, miss: fetched upstream)',
    labelNames: ['kind', 'cache'] as const,
    registers: [this.registry],
  });
  readonly hlsCacheBytes = new Gauge({ name: 'relaycast_hls_cache_bytes', help: 'Bytes an edge\'s HLS cache holds', registers: [this.registry] });
  readonly recordings = new Gauge({ name: 'relaycast_recordings_active', help: 'Streams an origin records now', registers: [this.registry] });
  readonly recordedSegments = new Counter({ name: 'relaycast_recorded_segments_total', help: 'Segments an origin recorded and indexed whole', registers: [this.registry] });
  readonly recordingFailures = new Counter({
    name: 'relaycast_recording_failures_total',
    help: 'Writes a recorder could not make, by where (store: the local disk; index: Postgres; upload: S3). Any is worth an alert: a store failure is a gap in a recording, an upload failure a growing backlog',
    labelNames: ['where'] as const,
    registers: [this.registry],
  });
  readonly recordingUploadBacklog = new Gauge({
    name: 'relaycast_recording_upload_backlog',
    help: 'Recorded segments an origin holds on local disk not yet in S3 (with --record-s3); one that grows means the store is away',
    registers: [this.registry],
  });
  readonly recordingStoreBytes = new Gauge({
    name: 'relaycast_recording_store_bytes',
    help: 'Bytes of recordings kept, by stream (the index\'s sums; the balancer reads them)',
    labelNames: ['stream'] as const,
    registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: 'relaycast_webhook_deliveries_total',
    help: 'Event webhook attempts a balancer made, by outcome: delivered (2xx), retried (to be tried again), failed (given up)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly webhookCallSeconds = new Histogram({
    name: 'relaycast_webhook_call_seconds',
    help: 'Time an event webhook endpoint took to answer (answers of any status)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly webhookLagSeconds = new Histogram({
    name: 'relaycast_webhook_lag_seconds',
    help: 'Time from an event\'s change to its delivery (first delivery of each event to each endpoint)',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
    registers: [this.registry],
  });
  readonly webhookOutboxPending = new Gauge({
    name: 'relaycast_webhook_outbox_pending',
    help: 'Event deliveries not made yet, to every endpoint (the outbox in Postgres; a balancer reads it)',
    registers: [this.registry],
  });
  readonly webhookOutboxOldestSeconds = new Gauge({
    name: 'relaycast_webhook_outbox_oldest_seconds',
    help: 'Age of the oldest event delivery not made yet (0: none): alert when it grows',
    registers: [this.registry],
  });
  readonly heartbeats = new Counter({
    name: 'relaycast_heartbeats_total',
    help: 'Registry heartbeats by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly nodesReaped = new Counter({
    name: 'relaycast_nodes_reaped_total',
    help: 'Dead nodes this node declared dead and cleaned up after',
    registers: [this.registry],
  });
  readonly nodeLossChecks = new Counter({
    name: 'relaycast_node_loss_checks_total',
    help: 'Probes of a node said to be lost (by: report = a peer reported it, hint = a client named it to the balancer); outcome: alive (it answered), unreachable (no answer, but it still heartbeats or another node declared it), dead (declared dead here)',
    labelNames: ['by', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly databaseUp = new Gauge({
    name: 'relaycast_database_up',
    help: '1 when the last registry round trip to the database succeeded',
    registers: [this.registry],
  });
  readonly tlsCertificateExpiry = new Gauge({
    name: 'relaycast_tls_certificate_expiry_timestamp_seconds',
    help: 'When the certificate this node serves HTTPS with expires (Unix time): alert well before it',
    registers: [this.registry],
  });
  readonly tlsReloads = new Counter({
    name: 'relaycast_tls_certificate_reloads_total',
    help: 'Certificate files that changed on disk: loaded (served to new connections) or rejected (no valid certificate and key; the last good pair stays)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly haproxyRestarts = new Counter({
    name: 'relaycast_haproxy_restarts_total',
    help: 'HAProxy started again after it exited by itself (a crash): the balancer supervises it',
    registers: [this.registry],
  });
  readonly haproxyReloads = new Counter({
    name: 'relaycast_haproxy_reloads_total',
    help: 'Hitless HAProxy reloads: the config\'s shape changed (a region, a bind), a runtime change failed, or an operator asked',
    registers: [this.registry],
  });
  readonly haproxyRejected = new Counter({
    name: 'relaycast_haproxy_configs_rejected_total',
    help: 'Rendered HAProxy configs that failed haproxy -c and were not loaded',
    registers: [this.registry],
  });
  readonly haproxyRuntimeChanges = new Counter({
    name: 'relaycast_haproxy_runtime_changes_total',
    help: 'Changes applied to the running HAProxy through its runtime API, without a reload, by kind (add-server, del-server, revive-server, set-server, map-edit, map-replace; node-map: entries of the /n/{node} map)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly haproxyRuntimeFailures = new Counter({
    name: 'relaycast_haproxy_runtime_failures_total',
    help: 'Runtime API changes HAProxy refused or did not finish; each is followed by a checked reload',
    registers: [this.registry],
  });
  readonly mediaWorkers = new Gauge({
    name: 'relaycast_media_workers',
    help: 'Running mediasoup workers',
    registers: [this.registry],
  });
  readonly mediaWorkerRestarts = new Counter({
    name: 'relaycast_media_worker_restarts_total',
    help: 'mediasoup workers that died and were replaced',
    registers: [this.registry],
  });

  readonly admissionSeconds = new Histogram({
    name: 'relaycast_admission_seconds',
    help: 'Calls to the admission endpoint, by action (publish, play) and outcome (allowed, refused, failed: no answer in time, down, or an answer outside the contract), from the request to its answer',
    labelNames: ['action', 'outcome'] as const,
    // From an endpoint beside the node (a few ms) to the longest --admission-timeout-ms.
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [this.registry],
  });
  readonly admissionDecisions = new Counter({
    name: 'relaycast_admission_decisions_total',
    help: 'Publishes and plays admitted or not, by action, outcome (allowed, refused, failed_allowed and failed_refused: the endpoint failed and --admission-on-failure answered) and source (endpoint: this join\'s call; cache: a decision or failure remembered, or a call already under way)',
    labelNames: ['action', 'outcome', 'source'] as const,
    registers: [this.registry],
  });

  readonly regionEdges = new Gauge({
    name: 'relaycast_region_edges',
    help: 'Edges up and taking viewers, per region (balancer)',
    labelNames: ['region'] as const,
    registers: [this.registry],
  });
  readonly regionDesiredEdges = new Gauge({
    name: 'relaycast_region_desired_edges',
    help: 'Edges the balancer wants per region, for an autoscaler (see GET /api/v1/capacity)',
    labelNames: ['region'] as const,
    registers: [this.registry],
  });
  readonly regionUtilisation = new Gauge({
    name: 'relaycast_region_utilisation',
    help: 'Viewer slots in use / on offer by the edges of a region (balancer)',
    labelNames: ['region'] as const,
    registers: [this.registry],
  });

  readonly viewerLayers = new Gauge({
    name: 'relaycast_viewer_layers',
    help: 'Viewers of simulcast streams on this edge by the spatial layer they receive (0 = lowest; none = no layer yet)',
    labelNames: ['layer'] as const,
    registers: [this.registry],
  });
  readonly layerSwitches = new Counter({
    name: 'relaycast_layer_switches_total',
    help: 'Changes of the spatial layer a viewer receives, by direction, selection mode (auto, pinned) and what drives automatic selection (estimate: mediasoup\'s bandwidth estimate from transport-cc; loss: the viewer\'s losses)',
    labelNames: ['direction', 'mode', 'control'] as const,
    registers: [this.registry],
  });
  readonly bweTraces = new Counter({
    name: 'relaycast_bwe_traces_total',
    help: 'mediasoup bandwidth-estimation trace events (transport "bwe" trace) received for estimated simulcast viewers, whose layers move on them (edge/LayerSelector.ts)',
    registers: [this.registry],
  });
  readonly viewerDownlink = new Histogram({
    name: 'relaycast_viewer_downlink_bps',
    help: 'Simulcast viewers\' downlinks, sampled each heartbeat: the bandwidth estimate where mediasoup has one, else the bitrate last delivered without loss',
    // From a 270p layer on a poor mobile link to 1080p with room to spare.
    buckets: [100e3, 200e3, 400e3, 700e3, 1e6, 1.5e6, 2.5e6, 4e6, 6e6, 10e6],
    registers: [this.registry],
  });

  /** Fills ingestLayerBitrate when /metrics is scraped; set by the origin role (one worker request per simulcast producer, only then). */
  ingestLayerSource: ((gauge: Gauge<'stream' | 'layer'>) => Promise<void>) | undefined;
  readonly ingestLayerBitrate: Gauge<'stream' | 'layer'> = new Gauge({
    name: 'relaycast_ingest_layer_bitrate_bps',
    help: 'Bits per second arriving on each layer of each simulcast stream published on this origin, by the layer\'s rid (an RTMP ladder names its layers by height: 720p)',
    labelNames: ['stream', 'layer'] as const,
    registers: [this.registry],
    collect: () => this.ingestLayerSource?.(this.ingestLayerBitrate),
  });

  constructor(labels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool
    // rejects them); the same counts stay available by type in nodejs_active_{handles,requests,resources}.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
    // The labelled counters the alert rules watch start at 0 (docker/helm/relaycast/files/relaycast-alerts.yml):
    // increase() sees an increment only against an earlier sample, so a series that first appears
    // at 1 (the first rejected certificate, the first failed upload) would never alert.
    for (const result of ['loaded', 'rejected']) this.tlsReloads.inc({ result }, 0);
    for (const where of ['store', 'index', 'upload']) this.recordingFailures.inc({ where }, 0);
    for (const reason of ['limit', 'egress']) this.relayRefusals.inc({ reason }, 0);
    for (const outcome of ['delivered', 'retried', 'failed']) this.webhookDeliveries.inc({ outcome }, 0);
  }
}
