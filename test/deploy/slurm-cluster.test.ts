// Runs deploy/slurm/test/smoke.sh: a real one-node SLURM cluster (installed with apt-get on first use, so it
// needs root), a job array, signal delivery to a node child, a requeue, and a clean stop.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { runShellScript, timingLines } from '../helpers/shell-script.js';

const smokeScript = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../deploy/slurm/test/smoke.sh');
// The smoke itself takes ~30 s; a first run on a clean machine also apt-gets slurm-wlm and munge (~30 s).
const TIMEOUT_MS = 5 * 60_000;

const skip =
  process.env.RESCALE_SKIP_SLURM === '1'
    ? 'RESCALE_SKIP_SLURM=1: skipping the SLURM cluster smoke test ' +
      '(unset it to run deploy/slurm/test/smoke.sh; needs root)'
    : false;

describe('deploy/slurm/test/smoke.sh', { skip }, () => {
  it(
    'starts a one-node cluster, runs an array, delivers SIGTERM to a node child, requeues and stops cleanly',
    { timeout: TIMEOUT_MS + 30_000 },
    async (t) => {
      const { code, signal, timedOut, stdout, stderr } = await runShellScript(smokeScript, TIMEOUT_MS);
      for (const line of timingLines(stdout)) t.diagnostic(line);
      assert.ok(!timedOut, `smoke.sh did not finish within ${TIMEOUT_MS} ms and was terminated\n${stderr}`);
      assert.equal(signal, null, `smoke.sh was killed by ${String(signal)}\n${stderr}`);
      assert.equal(code, 0, `smoke.sh exited ${String(code)}\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout}`);
      assert.match(stderr, /all steps passed/);
    },
  );
});
