// Run state in Redis, so a restarted coordinator loses nothing: the run's spec and plan (written once), its state
// and timestamps, the set of finished shards, failed shards with their reasons, and the engines that scored it.

import type { Redis } from 'ioredis';
import { RescaleError } from '../contracts/errors.js';
import {
  clusterKeys,
  parseRunSpec,
  RUN_STATES,
  type EngineReport,
  type RunSpec,
  type RunState,
} from '../contracts/shard-queue.js';
import type { ShardPlan } from '../contracts/shard.js';
import { createHash } from 'node:crypto';
import { canonicalJson } from '../contracts/codebook.js';

export interface RunRecord {
  readonly runId: string;
  readonly state: RunState;
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly error: string | null;
  readonly manifest: string | null;
  /** Rows that copied an identical earlier document of their shard, counted by the merge; null before it. */
  readonly duplicates: number | null;
}

/**
 * Moves a run to a new state only from the states allowed, so two coordinators (or a restarted one) never merge
 * a run twice. KEYS[1] run hash; ARGV[1] new state; ARGV[2] allowed current states, comma separated;
 * ARGV[3..] field, value pairs set with the state. Returns 1 when moved, 0 when not allowed, -1 when no run.
 */
const TRANSITION_SCRIPT = `
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return -1 end
for allowed in string.gmatch(ARGV[2], '[^,]+') do
  if allowed == current then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
    return 1
  end
end
return 0
`;

export class RunStore {
  private readonly specs = new Map<string, RunSpec>();

  constructor(private readonly redis: Redis) {}

  /** Writes a new run (or resets one being overwritten): spec, plan, state `running`. */
  async create(spec: RunSpec, plan: ShardPlan, options: { reset: boolean }): Promise<void> {
    const { runId } = spec;
    const multi = this.redis.multi();
    if (options.reset)
      multi.del(
        clusterKeys.run(runId),
        clusterKeys.runDone(runId),
        clusterKeys.runFailed(runId),
        clusterKeys.runEngines(runId),
      );
    multi
      .set(clusterKeys.runSpec(runId), JSON.stringify(spec))
      .set(clusterKeys.runPlan(runId), JSON.stringify(plan))
      .hset(clusterKeys.run(runId), {
        state: 'running',
        createdAt: spec.createdAt,
        finishedAt: '',
        error: '',
        manifest: '',
        duplicates: '',
      })
      .zadd(clusterKeys.runs, Date.parse(spec.createdAt), runId);
    await multi.exec();
    this.specs.set(runId, spec);
  }

  async record(runId: string): Promise<RunRecord | null> {
    const fields = await this.redis.hgetall(clusterKeys.run(runId));
    const state = fields.state;
    if (state === undefined || !(RUN_STATES as readonly string[]).includes(state)) return null;
    return {
      runId,
      state: state as RunState,
      createdAt: fields.createdAt ?? '',
      finishedAt: nonEmpty(fields.finishedAt),
      error: nonEmpty(fields.error),
      manifest: nonEmpty(fields.manifest),
      duplicates: fields.duplicates === undefined || fields.duplicates === '' ? null : Number(fields.duplicates),
    };
  }

  async requireRecord(runId: string): Promise<RunRecord> {
    const record = await this.record(runId);
    if (record === null) throw new RescaleError('RUN_NOT_FOUND', `no run ${runId}; list runs with "rescale status"`);
    return record;
  }

  async spec(runId: string): Promise<RunSpec> {
    const cached = this.specs.get(runId);
    if (cached !== undefined) return cached;
    const text = await this.redis.get(clusterKeys.runSpec(runId));
    if (text === null) throw new RescaleError('RUN_NOT_FOUND', `run ${runId} has no spec in Redis; submit it again`);
    const spec = parseRunSpec(text);
    this.specs.set(runId, spec);
    return spec;
  }

  async plan(runId: string): Promise<ShardPlan> {
    const text = await this.redis.get(clusterKeys.runPlan(runId));
    if (text === null) throw new RescaleError('RUN_NOT_FOUND', `run ${runId} has no plan in Redis; submit it again`);
    return JSON.parse(text) as ShardPlan;
  }

  /** Run ids, newest first. */
  async list(limit: number): Promise<string[]> {
    return this.redis.zrange(clusterKeys.runs, '0', String(limit - 1), 'REV');
  }

  async runsIn(states: readonly RunState[]): Promise<string[]> {
    const ids = await this.redis.zrange(clusterKeys.runs, '0', '-1');
    const found = await Promise.all(
      ids.map(async (id) => ({ id, state: await this.redis.hget(clusterKeys.run(id), 'state') })),
    );
    return found.filter((r) => r.state !== null && (states as readonly string[]).includes(r.state)).map((r) => r.id);
  }

  /** Records a finished shard; true the first time. Clears a recorded failure of it. */
  async markDone(runId: string, shardId: string, engine: EngineReport | null): Promise<boolean> {
    const multi = this.redis
      .multi()
      .sadd(clusterKeys.runDone(runId), shardId)
      .hdel(clusterKeys.runFailed(runId), shardId);
    if (engine !== null) multi.hsetnx(clusterKeys.runEngines(runId), engineKey(engine), JSON.stringify(engine));
    const replies = await multi.exec();
    return replies?.[0]?.[1] === 1;
  }

  async unmarkDone(runId: string, shardIds: readonly string[]): Promise<void> {
    if (shardIds.length > 0) await this.redis.srem(clusterKeys.runDone(runId), ...shardIds);
  }

  async markFailed(runId: string, shardId: string, reason: string): Promise<void> {
    await this.redis.hset(clusterKeys.runFailed(runId), shardId, reason);
  }

  async clearFailed(runId: string, shardIds: readonly string[]): Promise<void> {
    if (shardIds.length > 0) await this.redis.hdel(clusterKeys.runFailed(runId), ...shardIds);
  }

  async doneIds(runId: string): Promise<Set<string>> {
    return new Set(await this.redis.smembers(clusterKeys.runDone(runId)));
  }

  async failed(runId: string): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(clusterKeys.runFailed(runId))));
  }

  async engines(runId: string): Promise<EngineReport[]> {
    const values = await this.redis.hvals(clusterKeys.runEngines(runId));
    return values
      .map((text) => JSON.parse(text) as EngineReport)
      .sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : 1));
  }

  /** Moves the run to `to` if it is in one of `from`; sets `fields` with it. */
  async transition(
    runId: string,
    from: readonly RunState[],
    to: RunState,
    fields: Readonly<Record<string, string>> = {},
  ): Promise<boolean> {
    const args = Object.entries(fields).flat();
    const result = await this.redis.eval(TRANSITION_SCRIPT, 1, clusterKeys.run(runId), to, from.join(','), ...args);
    return result === 1;
  }
}

function nonEmpty(value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value;
}

function engineKey(engine: EngineReport): string {
  return createHash('sha256').update(canonicalJson(engine)).digest('hex').slice(0, 16);
}
