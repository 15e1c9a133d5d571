// Prometheus metrics of the coordinator: shards by queue state and queue depth (read from BullMQ on scrape),
// live workers, documents done and their rate, shard completions, failures and stalls, event handling and merge
// times. Served by `rescale coordinator --metrics HOST:PORT`.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface CoordinatorGauges {
  /** Jobs per BullMQ state. */
  shardCounts(): Promise<Record<string, number>>;
  workerCount(): Promise<number>;
  /** Documents per second over the last minute, summed over running runs. */
  documentsPerSecond(): number;
  runsByState(): Record<string, number>;
}

export class CoordinatorMetrics {
  readonly registry = new Registry();
  readonly documents = new Counter({
    name: 'rescale_documents_done_total',
    help: 'Documents in shards recorded as finished',
    registers: [this.registry],
  });
  readonly completions = new Counter({
    name: 'rescale_shard_completions_total',
    help: 'Shards recorded as finished',
    registers: [this.registry],
  });
  readonly failures = new Counter({
    name: 'rescale_shard_failures_total',
    help: 'Shards that used up their attempts',
    registers: [this.registry],
  });
  readonly stalls = new Counter({
    name: 'rescale_shard_stalls_total',
    help: 'Shards requeued by the stall check (their worker died or froze)',
    registers: [this.registry],
  });
  readonly fallbackDocuments = new Counter({
    name: 'rescale_fallback_documents_total',
    help: 'Documents whose result came from the fallback model',
    registers: [this.registry],
  });
  readonly eventSeconds = new Histogram({
    name: 'rescale_coordinator_event_seconds',
    help: 'Time to handle one queue event (shard completion, failure) in the coordinator',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });
  readonly mergeSeconds = new Histogram({
    name: 'rescale_merge_seconds',
    help: 'Time to merge a run and write its manifest',
    buckets: [1, 5, 15, 60, 300, 1200],
    registers: [this.registry],
  });

  constructor(gauges: CoordinatorGauges) {
    collectDefaultMetrics({ register: this.registry, prefix: 'rescale_coordinator_' });
    new Gauge({
      name: 'rescale_shards',
      help: 'Shard jobs by queue state',
      labelNames: ['state'] as const,
      registers: [this.registry],
      async collect() {
        const counts = await gauges.shardCounts();
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'rescale_queue_depth',
      help: 'Shards waiting for a worker (waiting + delayed + prioritized)',
      registers: [this.registry],
      async collect() {
        const counts = await gauges.shardCounts();
        this.set((counts.waiting ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0));
      },
    });
    new Gauge({
      name: 'rescale_workers',
      help: 'Workers with a live registration',
      registers: [this.registry],
      async collect() {
        this.set(await gauges.workerCount());
      },
    });
    new Gauge({
      name: 'rescale_documents_per_second',
      help: 'Documents per second over the last minute, all running runs',
      registers: [this.registry],
      collect() {
        this.set(gauges.documentsPerSecond());
      },
    });
    new Gauge({
      name: 'rescale_runs',
      help: 'Runs the coordinator is tracking, by state',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(gauges.runsByState())) this.set({ state }, n);
      },
    });
  }
}
