// Prometheus metrics of one cluster worker: documents and shards processed, their speed, model loads and
// fallback use. One registry per worker, served by `rescale worker --metrics HOST:PORT`.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type ShardOutcomeLabel = 'done' | 'skipped' | 'failed' | 'requeued' | 'cancelled';

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly documents = new Counter({
    name: 'rescale_worker_documents_total',
    help: 'Documents scored by this worker',
    registers: [this.registry],
  });
  readonly shards = new Counter({
    name: 'rescale_worker_shards_total',
    help: 'Shards handled by this worker, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly shardSeconds = new Histogram({
    name: 'rescale_worker_shard_seconds',
    help: 'Wall time of a scored shard',
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600],
    registers: [this.registry],
  });
  readonly documentsPerSecond = new Gauge({
    name: 'rescale_worker_documents_per_second',
    help: 'Speed of the last shard scored',
    registers: [this.registry],
  });
  readonly modelLoads = new Counter({
    name: 'rescale_worker_model_loads_total',
    help: 'Models loaded from disk (not reused from the cache)',
    registers: [this.registry],
  });
  readonly fallbackDocuments = new Counter({
    name: 'rescale_worker_fallback_documents_total',
    help: 'Documents whose result came from the fallback model',
    registers: [this.registry],
  });
  readonly busy = new Gauge({
    name: 'rescale_worker_busy',
    help: '1 while a shard is being processed',
    registers: [this.registry],
  });

  constructor(labels: { workerId: string }) {
    this.registry.setDefaultLabels({ worker: labels.workerId });
    collectDefaultMetrics({ register: this.registry, prefix: 'rescale_worker_' });
  }
}
