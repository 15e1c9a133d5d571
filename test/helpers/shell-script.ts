// Runs a test shell script (deploy/slurm/test/*.sh) in its own process group with a time limit, collecting its
// output; on timeout the whole group gets SIGTERM (the script's EXIT trap then stops its daemons), SIGKILL later.

import { spawn } from 'node:child_process';

export interface ScriptResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `bash script` with a time limit; `killGraceMs` is how long the script may clean up after SIGTERM. */
export function runShellScript(script: string, timeoutMs: number, killGraceMs = 30_000): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const signalGroup = (sig: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), killGraceMs);
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      resolve({ code, signal, timedOut, stdout, stderr });
    });
  });
}

/** The `TIMING name=ms` lines a script printed on stdout. */
export function timingLines(stdout: string): string[] {
  return stdout.split('\n').filter((line) => line.startsWith('TIMING '));
}
