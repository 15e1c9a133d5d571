// The lock file beside an output (`<output>.lock`): one run writes an output at a time. A local run holds it from
// planning to the end of the merge; the coordinator holds it for a cluster run across its own restarts and marks it
// cancelled or failed when the run stops, so an output whose run did not finish is never read as complete.

import { readFileSync } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import os from 'node:os';
import { RescaleError } from '../contracts/errors.js';
import { writeBytesAtomic } from './atomic-file.js';
import type { OutputLayout } from './output-layout.js';

export type LockState = 'running' | 'cancelled' | 'failed';

/** What `<output>.lock` holds. */
export interface OutputLockInfo {
  /** `local` for `rescale run` / `rescale merge`, `coordinator` for a cluster run. */
  readonly owner: 'local' | 'coordinator';
  readonly host: string;
  readonly pid: number;
  /** When the process holding the lock started (ISO): with the pid, it tells a live process from a reused pid. */
  readonly processStartedAt: string;
  readonly lockedAt: string;
  readonly runId?: string;
  readonly state: LockState;
}

/** How a lock looks from this process: its holder alive, gone, or on another host (cannot be checked from here). */
export type LockLiveness = 'live' | 'stale' | 'unknown';

const START_TOLERANCE_MS = 5_000;

const PROCESS_STARTED_AT = new Date(Date.now() - process.uptime() * 1000).toISOString();

/** This process as a lock holder. */
export function lockHolder(
  owner: OutputLockInfo['owner'],
  runId?: string,
  state: LockState = 'running',
): OutputLockInfo {
  return {
    owner,
    host: os.hostname(),
    pid: process.pid,
    processStartedAt: PROCESS_STARTED_AT,
    lockedAt: new Date().toISOString(),
    ...(runId !== undefined ? { runId } : {}),
    state,
  };
}

/** The lock file's content; null when there is none. A lock that does not parse is refused by name. */
export async function readOutputLock(layout: OutputLayout): Promise<OutputLockInfo | null> {
  let text: string;
  try {
    text = await readFile(layout.lockFile, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot read the lock file ${layout.lockFile}: ${String(cause)}`, {
      cause,
    });
  }
  try {
    const value = JSON.parse(text) as Partial<OutputLockInfo>;
    if (typeof value.host === 'string' && typeof value.pid === 'number' && typeof value.owner === 'string') {
      return {
        owner: value.owner === 'coordinator' ? 'coordinator' : 'local',
        host: value.host,
        pid: value.pid,
        processStartedAt: String(value.processStartedAt ?? ''),
        lockedAt: String(value.lockedAt ?? ''),
        ...(typeof value.runId === 'string' ? { runId: value.runId } : {}),
        state: value.state === 'cancelled' || value.state === 'failed' ? value.state : 'running',
      };
    }
  } catch {
    // reported below
  }
  throw new RescaleError(
    'CONFIG_INVALID',
    `${layout.lockFile} is not a rescale lock file; if no run is writing ${layout.output}, delete it and run again`,
  );
}

/**
 * Whether the process holding a lock is still there: on this host by its pid and start time (a reused pid started
 * later), elsewhere unknown.
 */
export function lockLiveness(info: OutputLockInfo): LockLiveness {
  if (info.host !== os.hostname()) return 'unknown';
  if (info.pid === process.pid) return info.processStartedAt === PROCESS_STARTED_AT ? 'live' : 'stale';
  try {
    process.kill(info.pid, 0);
  } catch (cause) {
    return (cause as NodeJS.ErrnoException).code === 'EPERM' ? 'live' : 'stale';
  }
  const started = linuxProcessStart(info.pid);
  const recorded = Date.parse(info.processStartedAt);
  if (started !== null && !Number.isNaN(recorded) && Math.abs(started - recorded) > START_TOLERANCE_MS) return 'stale';
  return 'live';
}

/** A process's start time from /proc (Linux); null elsewhere or when it cannot be read. */
function linuxProcessStart(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    const btimeLine = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((line) => line.startsWith('btime '));
    const bootSeconds = Number(btimeLine?.slice(6));
    if (!Number.isFinite(ticks) || !Number.isFinite(bootSeconds)) return null;
    return (bootSeconds + ticks / 100) * 1000; // USER_HZ is 100 on every Linux Node runs on
  } catch {
    return null;
  }
}

/** A sentence naming who holds a lock, for refusals. */
export function describeLock(info: OutputLockInfo): string {
  const who =
    info.owner === 'coordinator'
      ? `cluster run ${info.runId ?? '(unknown)'} (coordinator pid ${info.pid} on ${info.host}, ${info.state})`
      : `rescale process ${info.pid} on ${info.host} (started ${info.processStartedAt})`;
  return `${who}, locked at ${info.lockedAt}`;
}

/** A lock this process holds; `release` removes the lock file if it is still ours. */
export interface OutputLock extends AsyncDisposable {
  readonly info: OutputLockInfo;
  /** Whether a stale lock was replaced (for a warning). */
  readonly replaced: OutputLockInfo | null;
  release(): Promise<void>;
}

/**
 * Takes `<output>.lock` for a local run: created exclusively; an existing lock whose process is gone (same host, pid
 * dead or reused) or a cluster run's that was cancelled or failed is replaced; a live one, or one from another host,
 * is refused naming its holder (RUN_CONFLICT).
 */
export async function acquireOutputLock(layout: OutputLayout, option = '--output'): Promise<OutputLock> {
  const info = lockHolder('local');
  let replaced: OutputLockInfo | null = null;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    if (await createExclusive(layout.lockFile, info)) {
      const lock: OutputLock = {
        info,
        replaced,
        release: () => releaseIfOurs(layout, info),
        [Symbol.asyncDispose]: () => releaseIfOurs(layout, info),
      };
      return lock;
    }
    const existing = await readOutputLock(layout);
    if (existing === null) continue;
    const liveness = lockLiveness(existing);
    const takeOver =
      existing.owner === 'coordinator'
        ? existing.state !== 'running'
        : existing.state !== 'running' || liveness === 'stale';
    if (!takeOver) {
      const what =
        existing.owner === 'coordinator'
          ? `cancel that run ("rescale cancel ${existing.runId ?? ''}") or choose another ${option}; if its cluster ` +
            `and Redis are gone for good, delete ${layout.lockFile}`
          : liveness === 'unknown'
            ? `wait for it or choose another ${option}; if that process is gone, delete ${layout.lockFile}`
            : `wait for it to finish or choose another ${option}`;
      throw new RescaleError(
        'RUN_CONFLICT',
        `${option} ${layout.output} is being written by ${describeLock(existing)}; ${what}`,
      );
    }
    replaced = existing;
    await unlink(layout.lockFile).catch(() => undefined);
  }
  throw new RescaleError('RUN_CONFLICT', `another run keeps taking the lock ${layout.lockFile}; try again`);
}

/** Writes (or replaces) the lock as the coordinator's for a cluster run, with its state. */
export async function writeCoordinatorLock(layout: OutputLayout, runId: string, state: LockState): Promise<void> {
  await writeBytesAtomic(layout.lockFile, `${JSON.stringify(lockHolder('coordinator', runId, state), null, 2)}\n`);
}

/** Removes the coordinator's lock of `runId` (the run succeeded); another holder's lock is left alone. */
export async function removeCoordinatorLock(layout: OutputLayout, runId: string): Promise<void> {
  const existing = await readOutputLock(layout).catch(() => null);
  if (existing?.owner === 'coordinator' && existing.runId === runId)
    await unlink(layout.lockFile).catch(() => undefined);
}

async function createExclusive(file: string, info: OutputLockInfo): Promise<boolean> {
  let handle;
  try {
    handle = await open(file, 'wx');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw cause;
  }
  try {
    await handle.writeFile(`${JSON.stringify(info, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

async function releaseIfOurs(layout: OutputLayout, info: OutputLockInfo): Promise<void> {
  const existing = await readOutputLock(layout).catch(() => null);
  if (existing?.pid === info.pid && existing.host === info.host && existing.lockedAt === info.lockedAt) {
    await unlink(layout.lockFile).catch(() => undefined);
  }
}
