// Finishing a run: once every shard is done it merges the shard results into the output and its manifest through
// the run lifecycle (the same step as local mode); once every shard is done or failed the run fails until `retry`.

import { parseCodebookText } from '../../contracts/codebook.js';
import { errorMessage, isRescaleError } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import type { RunSpec } from '../../contracts/shard-queue.js';
import type { CoordinatorMetrics } from '../coordinator-metrics.js';
import type { FallbackService } from '../fallback-service.js';
import { outputLayout } from '../../storage/output-layout.js';
import { removeCoordinatorLock, writeCoordinatorLock } from '../../storage/output-lock.js';
import { mergeRun } from '../run-lifecycle.js';
import type { RunStore } from '../run-store.js';
import type { ActiveRun, RunTracker } from './run-tracker.js';

export class RunFinisher {
  private merges: Promise<unknown> = Promise.resolve();
  private readonly pendingMerges = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(
    private readonly store: RunStore,
    private readonly runs: RunTracker,
    private readonly fallbacks: FallbackService,
    private readonly metrics: CoordinatorMetrics,
    private readonly logger: Logger,
  ) {}

  /** All shards done → merge; all shards done or failed → the run fails (until `retry`). */
  async maybeFinish(run: ActiveRun): Promise<void> {
    const { runId, totalShards } = run.spec;
    if (run.done.size === totalShards) {
      if (await this.store.transition(runId, ['running'], 'merging')) this.startMerge(runId);
      return;
    }
    if (run.failed.size > 0 && run.done.size + run.failed.size === totalShards) {
      const error =
        `${run.failed.size} of ${totalShards} shards failed after all attempts; see "rescale status ` +
        `${runId}", fix the cause and run "rescale retry ${runId}"`;
      if (await this.store.transition(runId, ['running'], 'failed', { finishedAt: new Date().toISOString(), error })) {
        this.logger.log('error', 'run failed', { runId, failedShards: run.failed.size });
        await this.markOutput(run.spec, 'failed');
        this.runs.deactivate(runId);
      }
    }
  }

  /** Merges run one after another (each is CPU- and disk-bound), outside the event chain. */
  startMerge(runId: string): void {
    const merge = this.merges.then(() => this.merge(runId));
    this.merges = merge.catch(() => undefined);
    this.pendingMerges.add(merge);
    void merge.finally(() => this.pendingMerges.delete(merge));
  }

  /** Merges not started yet are skipped from now on (a restarted coordinator finds their runs merging). */
  stop(): void {
    this.stopped = true;
  }

  /** Settles once the merges in progress have. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.pendingMerges]);
  }

  private async merge(runId: string): Promise<void> {
    const run = this.runs.get(runId);
    if (run === undefined || this.stopped) return;
    const { spec, plan } = run;
    const logger = this.logger.child({ runId });
    const end = this.metrics.mergeSeconds.startTimer();
    try {
      const codebook = parseCodebookText(spec.codebookText, spec.codebookPath);
      const summary = await mergeRun({
        mode: 'cluster',
        codebook,
        plan,
        sequences: spec.sequences,
        dedupe: spec.dedupe ?? true,
        shardRows: spec.shardRows,
        threads: codebook.model.threads ?? 'auto',
        startedAt: new Date(spec.createdAt),
        engines: await this.store.engines(runId),
        shardDir: spec.resultDir,
        output: spec.output,
        manifestExtra: { run: { id: runId }, fallback: await this.fallbackSummary(spec, codebook.fallback !== null) },
        logger,
      });
      await this.store.transition(runId, ['merging'], 'succeeded', {
        finishedAt: new Date().toISOString(),
        manifest: summary.manifestPath,
        duplicates: String(summary.duplicates),
      });
      await removeCoordinatorLock(outputLayout(spec.output), runId);
      logger.log('info', 'run succeeded', {
        output: summary.output,
        rows: summary.rows,
        duplicates: summary.duplicates,
        seconds: Number(end().toFixed(3)),
      });
      await this.fallbacks
        .stop(runId, { purge: true })
        .catch((error: unknown) => logger.log('warn', 'fallback queue not removed', { error: errorMessage(error) }));
    } catch (error) {
      end();
      const message = isRescaleError(error) ? error.message : `merge failed: ${errorMessage(error)}`;
      logger.log('error', 'merge failed', { error: message });
      await this.store
        .transition(runId, ['merging'], 'failed', { finishedAt: new Date().toISOString(), error: message })
        .catch(() => undefined);
      await this.markOutput(spec, 'failed');
    } finally {
      this.runs.deactivate(runId);
    }
  }

  /** The output's lock says the run failed: not complete, and free for a resubmission or another run. */
  private async markOutput(spec: RunSpec, state: 'failed'): Promise<void> {
    await writeCoordinatorLock(outputLayout(spec.output), spec.runId, state).catch((error: unknown) =>
      this.logger.log('warn', 'output lock not updated', { runId: spec.runId, state, error: errorMessage(error) }),
    );
  }

  /** The manifest's `fallback`: off and why, or on with its files and what it did (as far as this process saw). */
  private async fallbackSummary(spec: RunSpec, enabledInCodebook: boolean): Promise<Record<string, unknown>> {
    const setting = spec.fallback;
    if (setting === undefined)
      return {
        active: false,
        reason: enabledInCodebook ? 'disabled with --no-fallback' : 'not enabled in the codebook',
      };
    if (!setting.active) return { active: false, reason: setting.reason };
    const stats = await this.fallbacks.stats(spec.runId).catch(() => null);
    return {
      active: true,
      mode: setting.mode,
      auditFile: setting.auditFile,
      cacheDir: setting.cacheDir,
      stats,
      statsScope: 'documents answered by this coordinator process; the audit file holds every call',
    };
  }
}
