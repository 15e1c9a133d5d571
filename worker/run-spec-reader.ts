// What a worker needs to know about a run, read from Redis: its spec (immutable, so cached with the parsed
// codebook) and its current state (read fresh: a run may be cancelled at any time).

import type { Redis } from 'ioredis';
import { parseCodebookText, type Codebook } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import { clusterKeys, parseRunSpec, RUN_STATES, type RunSpec, type RunState } from '../contracts/shard-queue.js';

export interface RunContext {
  readonly spec: RunSpec;
  readonly codebook: Codebook;
}

const CACHED_RUNS = 16;

export class RunSpecReader {
  private readonly cache = new Map<string, RunContext>();

  constructor(private readonly redis: Redis) {}

  async get(runId: string): Promise<RunContext> {
    const cached = this.cache.get(runId);
    if (cached !== undefined) return cached;
    const text = await this.redis.get(clusterKeys.runSpec(runId));
    if (text === null)
      throw new RescaleError(
        'RUN_NOT_FOUND',
        `run ${runId} has no spec in Redis (deleted, or Redis lost its data); submit the run again`,
      );
    const spec = parseRunSpec(text);
    const context = { spec, codebook: parseCodebookText(spec.codebookText, spec.codebookPath) };
    if (this.cache.size >= CACHED_RUNS) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(runId, context);
    return context;
  }

  /** The run's state, or null when the run is unknown. */
  async state(runId: string): Promise<RunState | null> {
    const state = await this.redis.hget(clusterKeys.run(runId), 'state');
    return state !== null && (RUN_STATES as readonly string[]).includes(state) ? (state as RunState) : null;
  }
}
