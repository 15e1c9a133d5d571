// Benchmarks cluster mode around the model, with real processes (redis-server, `rescale coordinator`, workers):
//  1. a 1,000,000-row corpus in shards of 10,000 rows, 2 workers whose scorer answers instantly: plan + enqueue
//     time, coordinator CPU and event-handling time per shard, merge time, Redis memory per shard;
//  2. coordinator capacity in shard completions/s: a backlog of tiny shards completed while the coordinator was
//     down, recorded by a fresh coordinator; and the same live, with workers running;
//  3. the keyword fixture model with 2 real `rescale worker` processes on the first --model-rows rows, against
//     local mode on the same rows.
// Usage: npm run bench:cluster [-- --rows 1000000 --shard-rows 10000 --model-rows 20000 --capacity-shards 5000]
// Results: bench/results/cluster.{md,json}.

import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runLocalMode } from '../cli/local-mode.js';
import type { ControlClient } from '../cli/control-client.js';
import type { RunStatusMessage, SubmitRunRequest } from '../coordinator/control-proto.js';
import {
  client,
  clusterFixture,
  eventually,
  spawnTsx,
  startCoordinator,
  startWorker,
  writeCorpus,
  type ClusterFixture,
  type CoordinatorProcess,
  type ServiceProcess,
} from './harness/cluster.js';
import { redisCommand, startRedisServer, type RedisServerHandle } from './harness/redis-server.js';

const SCRIPTS = path.dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = path.join(SCRIPTS, '..', 'bench', 'results');
const INSTANT_WORKER = path.join(SCRIPTS, 'bench-cluster-worker.ts');

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'shard-rows': { type: 'string', default: '10000' },
    'model-rows': { type: 'string', default: '20000' },
    'model-shard-rows': { type: 'string', default: '2000' },
    'capacity-shards': { type: 'string', default: '5000' },
    workers: { type: 'string', default: '2' },
    'skip-local': { type: 'boolean', default: false },
  },
});
const ROWS = Number(values.rows);
const SHARD_ROWS = Number(values['shard-rows']);
const MODEL_ROWS = Number(values['model-rows']);
const MODEL_SHARD_ROWS = Number(values['model-shard-rows']);
const CAPACITY_SHARDS = Number(values['capacity-shards']);
const WORKERS = Number(values.workers);

function log(message: string): void {
  process.stderr.write(`[bench:cluster ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function usedMemory(redis: RedisServerHandle): Promise<number> {
  const info = String(await redisCommand(redis, 'INFO', 'memory'));
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

/** Prometheus text → metric name (with labels) → value. */
async function scrape(address: string): Promise<Map<string, number>> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const metrics = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    metrics.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return metrics;
}

function request(
  fixture: ClusterFixture,
  corpus: string,
  output: string,
  shardRows: number,
  limit = 0,
): SubmitRunRequest {
  return {
    codebook: fixture.codebook,
    inputs: [corpus],
    output,
    options: { shardRows, limit, sequences: 0, overwrite: false, noFallback: false, fallbackOffline: false },
  };
}

async function watchUntilDone(
  control: ControlClient,
  runId: string,
  onStatus: (status: RunStatusMessage) => void = () => undefined,
): Promise<RunStatusMessage> {
  const final = await control.watch(runId, onStatus, { intervalMs: 200 });
  if (final.state !== 'RUN_STATE_SUCCEEDED') throw new Error(`run ${runId} ended ${final.state}: ${final.error}`);
  return final;
}

function startInstantWorkers(redis: RedisServerHandle, prefix: string): Promise<ServiceProcess[]> {
  return Promise.all(
    Array.from({ length: WORKERS }, async (_, i) => {
      const name = `${prefix}${i + 1}`;
      const worker = spawnTsx(name, INSTANT_WORKER, ['--redis', redis.url, '--name', name]);
      await worker.waitForLog((l) => l.msg === 'worker ready', 60_000, 'ready worker');
      return worker;
    }),
  );
}

async function metricsAddress(service: ServiceProcess): Promise<string> {
  return String((await service.waitForLog((l) => l.msg === 'metrics listening', 30_000, 'metrics server')).address);
}

interface Results {
  readonly date: string;
  readonly machine: {
    readonly cpus: number;
    readonly cpuModel: string;
    readonly node: string;
    readonly loadAverageStart: number;
    readonly loadAverageEnd: number;
  };
  readonly corpus: { readonly rows: number; readonly shardRows: number; readonly shards: number };
  readonly instant: {
    readonly workers: number;
    readonly submitMs: number;
    readonly runMs: number;
    readonly mergeSeconds: number;
    readonly eventHandlingMeanMs: number;
    readonly coordinatorCpuMsPerShard: number;
    readonly redisBytesPerShardQueued: number;
    readonly redisBytesPerShardCompleted: number;
  };
  readonly capacity: {
    readonly shards: number;
    readonly redisBytesPerShardQueued: number;
    readonly redisBytesPerShardCompleted: number;
    readonly workerShardsPerSecond: number;
    readonly backlogRecorded: number;
    readonly backlogMs: number;
    readonly backlogCompletionsPerSecond: number;
    readonly liveShards: number;
    readonly liveCompletionsPerSecond: number;
    readonly liveEventHandlingMeanMs: number;
    readonly liveLagAfterLastCompletionMs: number;
  };
  readonly model: {
    readonly rows: number;
    readonly shardRows: number;
    readonly workers: number;
    readonly wallSeconds: number;
    readonly documentsPerSecond: number;
    readonly workerDocumentsPerSecond: readonly number[];
    readonly localSeconds: number | null;
    readonly localDocumentsPerSecond: number | null;
    readonly identicalToLocal: boolean | null;
  };
}

async function main(): Promise<void> {
  const loadStart = loadavg()[0] ?? 0;
  log(`corpus: ${ROWS} rows`);
  // DuckDB's default row groups (122,880 rows), which the planner splits into shards of at most --shard-rows.
  const fixture = await clusterFixture(ROWS, { rowGroupRows: 122_880 });
  const redis = await startRedisServer({ appendonly: true });
  const services: ServiceProcess[] = [];
  let coordinator: CoordinatorProcess | undefined;
  let control: ControlClient | undefined;
  try {
    coordinator = await startCoordinator(redis.url, fixture, ['--metrics', '127.0.0.1:0']);
    services.push(coordinator);
    let metrics = await metricsAddress(coordinator);
    control = client(coordinator, fixture);

    // 1. The full corpus with instant workers.
    const memory0 = await usedMemory(redis);
    const before = await scrape(metrics);
    let started = performance.now();
    const submitted = await control.submit(
      request(fixture, fixture.corpus, path.join(fixture.dir, 'instant', 'results.parquet'), SHARD_ROWS),
    );
    const submitMs = performance.now() - started;
    const shards = submitted.status?.shardsTotal ?? 0;
    const memory1 = await usedMemory(redis);
    log(`submitted ${shards} shards in ${submitMs.toFixed(0)} ms`);
    const instantWorkers = await startInstantWorkers(redis, 'instant-');
    services.push(...instantWorkers);
    started = performance.now();
    let atMerge: Map<string, number> | undefined;
    let scraping: Promise<void> | undefined;
    await watchUntilDone(control, submitted.runId, (status) => {
      if (status.state === 'RUN_STATE_MERGING' && scraping === undefined)
        scraping = scrape(metrics).then((m) => void (atMerge = m));
    });
    await scraping;
    const runMs = performance.now() - started;
    const succeeded = coordinator.logs().find((l) => l.msg === 'run succeeded' && l.runId === submitted.runId);
    const memory2 = await usedMemory(redis);
    const after = atMerge ?? (await scrape(metrics));
    const eventCount =
      (after.get('rescale_coordinator_event_seconds_count') ?? 0) -
      (before.get('rescale_coordinator_event_seconds_count') ?? 0);
    const eventSum =
      (after.get('rescale_coordinator_event_seconds_sum') ?? 0) -
      (before.get('rescale_coordinator_event_seconds_sum') ?? 0);
    const cpu =
      (after.get('rescale_coordinator_process_cpu_seconds_total') ?? 0) -
      (before.get('rescale_coordinator_process_cpu_seconds_total') ?? 0);
    await Promise.all(instantWorkers.map((w) => w.stop()));
    const instant = {
      workers: WORKERS,
      submitMs: Math.round(submitMs),
      runMs: Math.round(runMs),
      mergeSeconds: Number(succeeded?.seconds ?? NaN),
      eventHandlingMeanMs: eventCount > 0 ? (eventSum / eventCount) * 1000 : NaN,
      coordinatorCpuMsPerShard: (cpu * 1000) / shards,
      redisBytesPerShardQueued: Math.round((memory1 - memory0) / shards),
      redisBytesPerShardCompleted: Math.round((memory2 - memory0) / shards),
    };
    log(`instant run: ${JSON.stringify(instant)}`);

    // 2a. Capacity, backlog: tiny shards completed while no coordinator runs, then recorded by a new one.
    const capacityCorpus = await writeCorpus(path.join(fixture.dir, 'capacity.parquet'), CAPACITY_SHARDS * 10, {
      rowGroupRows: CAPACITY_SHARDS * 10,
    });
    // Marginal Redis memory of a shard: thousands of them, after BullMQ's scripts are loaded.
    const memoryBeforeBacklog = await usedMemory(redis);
    const backlogRun = await control.submit(
      request(fixture, capacityCorpus, path.join(fixture.dir, 'backlog', 'results.parquet'), 10),
    );
    const memoryQueued = await usedMemory(redis);
    control.close();
    await coordinator.stop();
    log(`backlog: ${backlogRun.status?.shardsTotal} shards queued; coordinator stopped`);
    const completedBefore = Number(await redisCommand(redis, 'ZCARD', 'rescale:shards:completed'));
    const backlogWorkers = await startInstantWorkers(redis, 'backlog-');
    started = performance.now();
    await eventually(
      async () =>
        Number(await redisCommand(redis, 'ZCARD', 'rescale:shards:completed')) - completedBefore >= CAPACITY_SHARDS
          ? true
          : undefined,
      1_800_000,
      'backlog completed',
      500,
    );
    const workerShardsPerSecond = CAPACITY_SHARDS / ((performance.now() - started) / 1000);
    log(`${WORKERS} instant workers: ${workerShardsPerSecond.toFixed(0)} shards/s`);
    const memoryCompleted = await usedMemory(redis);
    coordinator = await startCoordinator(redis.url, fixture, ['--metrics', '127.0.0.1:0']);
    services.push(coordinator);
    metrics = await metricsAddress(coordinator);
    const resumed = await coordinator.waitForLog((l) => l.msg === 'resumed runs from redis', 600_000, 'recovery');
    control = client(coordinator, fixture);
    await watchUntilDone(control, backlogRun.runId);
    const backlogRecorded = Number(resumed.shardsRecorded);
    const backlogMs = Number(resumed.ms);

    // 2b. Capacity, live: workers and coordinator together on tiny shards (another shard size, so new shard ids).
    const liveBefore = await scrape(metrics);
    const liveRun = await control.submit(
      request(fixture, capacityCorpus, path.join(fixture.dir, 'live', 'results.parquet'), 12),
    );
    const liveShards = liveRun.status?.shardsTotal ?? 0;
    started = performance.now();
    let lastCompletion = 0;
    await eventually(
      async () => {
        const completed =
          Number(await redisCommand(redis, 'ZCARD', 'rescale:shards:completed')) - completedBefore - CAPACITY_SHARDS;
        if (completed >= liveShards && lastCompletion === 0) lastCompletion = performance.now();
        const status = await control?.getRun(liveRun.runId);
        return status !== undefined && status.shardsDone >= liveShards ? true : undefined;
      },
      1_800_000,
      'live run recorded',
      50,
    );
    const liveRecordedAt = performance.now();
    const liveAfter = await scrape(metrics);
    await watchUntilDone(control, liveRun.runId);
    await Promise.all(backlogWorkers.map((w) => w.stop()));
    const liveEvents =
      (liveAfter.get('rescale_coordinator_event_seconds_count') ?? 0) -
      (liveBefore.get('rescale_coordinator_event_seconds_count') ?? 0);
    const liveEventSum =
      (liveAfter.get('rescale_coordinator_event_seconds_sum') ?? 0) -
      (liveBefore.get('rescale_coordinator_event_seconds_sum') ?? 0);
    const capacity = {
      shards: CAPACITY_SHARDS,
      redisBytesPerShardQueued: Math.round((memoryQueued - memoryBeforeBacklog) / CAPACITY_SHARDS),
      redisBytesPerShardCompleted: Math.round((memoryCompleted - memoryBeforeBacklog) / CAPACITY_SHARDS),
      workerShardsPerSecond: Math.round(workerShardsPerSecond),
      backlogRecorded,
      backlogMs,
      backlogCompletionsPerSecond: Math.round(backlogRecorded / (backlogMs / 1000)),
      liveShards,
      liveCompletionsPerSecond: Math.round(liveShards / ((liveRecordedAt - started) / 1000)),
      liveEventHandlingMeanMs: liveEvents > 0 ? (liveEventSum / liveEvents) * 1000 : NaN,
      liveLagAfterLastCompletionMs: Math.max(0, Math.round(liveRecordedAt - (lastCompletion || liveRecordedAt))),
    };
    log(`capacity: ${JSON.stringify(capacity)}`);

    // 3. The keyword model with real workers, and local mode on the same rows.
    const modelWorkers = await Promise.all(
      Array.from({ length: WORKERS }, (_, i) => startWorker(redis.url, `model-${i + 1}`)),
    );
    services.push(...modelWorkers);
    const modelOutput = path.join(fixture.dir, 'model', 'results.parquet');
    started = performance.now();
    const modelRun = await control.submit(request(fixture, fixture.corpus, modelOutput, MODEL_SHARD_ROWS, MODEL_ROWS));
    await watchUntilDone(control, modelRun.runId);
    const wallSeconds = (performance.now() - started) / 1000;
    await Promise.all(modelWorkers.map((w) => w.stop()));
    const workerDocumentsPerSecond = modelWorkers.map((w) => {
      const done = w.logs().filter((l) => l.msg === 'shard done');
      const rows = done.reduce((sum, l) => sum + Number(l.rows), 0);
      const seconds = done.reduce((sum, l) => sum + Number(l.seconds), 0);
      return seconds > 0 ? Number((rows / seconds).toFixed(1)) : 0;
    });
    let localSeconds: number | null = null;
    let identical: boolean | null = null;
    if (values['skip-local'] !== true) {
      log(`local mode on ${MODEL_ROWS} rows`);
      const localOutput = path.join(fixture.dir, 'local', 'results.parquet');
      started = performance.now();
      await runLocalMode({
        codebook: fixture.codebook,
        input: [fixture.corpus],
        output: localOutput,
        shardRows: MODEL_SHARD_ROWS,
        limit: MODEL_ROWS,
        env: {},
      });
      localSeconds = (performance.now() - started) / 1000;
      const { readFile } = await import('node:fs/promises');
      identical = (await readFile(localOutput)).equals(await readFile(modelOutput));
    }
    const model = {
      rows: MODEL_ROWS,
      shardRows: MODEL_SHARD_ROWS,
      workers: WORKERS,
      wallSeconds: Number(wallSeconds.toFixed(1)),
      documentsPerSecond: Number((MODEL_ROWS / wallSeconds).toFixed(1)),
      workerDocumentsPerSecond,
      localSeconds: localSeconds === null ? null : Number(localSeconds.toFixed(1)),
      localDocumentsPerSecond: localSeconds === null ? null : Number((MODEL_ROWS / localSeconds).toFixed(1)),
      identicalToLocal: identical,
    };
    log(`model: ${JSON.stringify(model)}`);

    const results: Results = {
      date: new Date().toISOString().slice(0, 10),
      machine: {
        cpus: availableParallelism(),
        cpuModel: cpus()[0]?.model ?? 'unknown',
        node: process.version,
        loadAverageStart: Number(loadStart.toFixed(1)),
        loadAverageEnd: Number((loadavg()[0] ?? 0).toFixed(1)),
      },
      corpus: { rows: ROWS, shardRows: SHARD_ROWS, shards },
      instant,
      capacity,
      model,
    };
    await mkdir(RESULTS_DIR, { recursive: true });
    await writeFile(path.join(RESULTS_DIR, 'cluster.json'), `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(path.join(RESULTS_DIR, 'cluster.md'), report(results));
    log(`wrote ${path.join(RESULTS_DIR, 'cluster.md')}`);
  } finally {
    control?.close();
    await Promise.all(services.map((s) => s.stop()));
    await redis.stop();
    await fixture.cleanup();
  }
}

function report(r: Results): string {
  const { instant: i, capacity: c, model: m } = r;
  const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;
  const identical = m.identicalToLocal === null ? 'not checked' : m.identicalToLocal ? 'yes' : '**no**';
  const fullMinutes = m.documentsPerSecond > 0 ? Math.round(r.corpus.rows / m.documentsPerSecond / 60) : '–';
  return `# Cluster mode benchmark

Generated by \`npm run bench:cluster\` on ${r.date}, Node ${r.machine.node}, ${r.machine.cpus} × ${r.machine.cpuModel}.
Real processes: redis-server (AOF everysec), \`rescale coordinator\`, ${i.workers} worker processes. Load average
${r.machine.loadAverageStart} at the start, ${r.machine.loadAverageEnd} at the end (above ${r.machine.cpus}, other \
jobs shared the cores and wall times are inflated).

## 1. ${r.corpus.rows.toLocaleString('en-US')} rows, ${r.corpus.shards} shards of \
${r.corpus.shardRows.toLocaleString('en-US')} rows, workers with an instant scorer

The workers read every row, "score" it at once and write real shard files; the coordinator plans, queues, follows
the queue and merges. Everything but the model.

| measure | value |
| --- | ---: |
| plan + enqueue (SubmitRun round trip) | ${i.submitMs} ms |
| whole run, workers started → merged | ${(i.runMs / 1000).toFixed(1)} s |
| merge (${r.corpus.rows.toLocaleString('en-US')} rows) + manifest | ${i.mergeSeconds.toFixed(1)} s |
| coordinator wall time per completion event (mean; includes waiting for the CPU the workers saturate, and for Redis) \
| ${i.eventHandlingMeanMs.toFixed(2)} ms |
| coordinator CPU per shard (planning, queueing, events; merge excluded) | ${i.coordinatorCpuMsPerShard.toFixed(1)} ms |
| Redis memory growth per shard of this run, queued / completed (includes fixed costs: BullMQ scripts, event stream) | \
${kb(i.redisBytesPerShardQueued)} / ${kb(i.redisBytesPerShardCompleted)} |
| Redis memory per shard, marginal (${c.shards} shards): queued (job + run state) | ${kb(c.redisBytesPerShardQueued)} |
| Redis memory per shard, marginal: completed (job kept a day with its result, event stream) | \
${kb(c.redisBytesPerShardCompleted)} |

## 2. Coordinator capacity (shard completions recorded per second)

| measure | value |
| --- | ---: |
| ${c.shards} tiny shards (10 rows) completed by ${i.workers} instant workers while the coordinator was down | \
${c.workerShardsPerSecond} shards/s (worker side) |
| a fresh coordinator records that backlog (reconciliation: state lookup, result, file check, Redis write per shard) | \
${c.backlogRecorded} in ${c.backlogMs} ms = **${c.backlogCompletionsPerSecond} completions/s** |
| live: ${c.liveShards} tiny shards, workers and coordinator together | ${c.liveCompletionsPerSecond} completions/s \
(limited by the workers on ${r.machine.cpus} cores) |
| coordinator wall time per completion event, live (events are handled one after another) | \
${c.liveEventHandlingMeanMs.toFixed(2)} ms (≈ ${Math.round(1000 / c.liveEventHandlingMeanMs)} completions/s) |
| lag between the last completion and the coordinator having it | ${c.liveLagAfterLastCompletionMs} ms |

1,000 GPU workers on shards of 10,000 rows at 100–1,000 docs/s each finish 10–100 shards per second in total,
well below what one coordinator records.

## 3. Keyword fixture model, ${m.rows.toLocaleString('en-US')} rows in shards of ${m.shardRows}

| mode | wall time | docs/s |
| --- | ---: | ---: |
| cluster, ${m.workers} \`rescale worker\` processes (submit → merged, model loads included) | ${m.wallSeconds} s | \
${m.documentsPerSecond} |
| per worker, while scoring | | ${m.workerDocumentsPerSecond.join(', ')} |
| local mode (\`runLocal\`, one process) | ${m.localSeconds ?? '–'} s | ${m.localDocumentsPerSecond ?? '–'} |

Output identical to local mode, byte for byte: ${identical}.
Scoring time grows linearly with rows; the full ${r.corpus.rows.toLocaleString('en-US')} rows would take about
${fullMinutes} min at this rate (\`--model-rows ${r.corpus.rows}\` runs it).
`;
}

await main();
