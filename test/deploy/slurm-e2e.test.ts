// Runs deploy/slurm/test/e2e.sh: the shipped sbatch scripts on a real one-node SLURM cluster (a head job with Redis
// and the coordinator, a 2-task worker array), a corpus classified to completion with one worker cancelled
// mid-shard, and an output equal to local mode's. Needs root, like the smoke test.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { runShellScript, timingLines } from '../helpers/shell-script.js';

const e2eScript = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../deploy/slurm/test/e2e.sh');
// ~2-3 min on a loaded 2-core machine; a first run on a clean machine also apt-gets slurm-wlm and munge (~30 s).
const TIMEOUT_MS = 6 * 60_000;

const skip =
  process.env.RESCALE_SKIP_SLURM === '1'
    ? 'RESCALE_SKIP_SLURM=1: skipping the SLURM end-to-end test (unset it to run deploy/slurm/test/e2e.sh; needs root)'
    : false;

describe('deploy/slurm/test/e2e.sh', { skip }, () => {
  it(
    'classifies a corpus with the head job and a worker array, ' +
      'survives a preempted worker and a requeued head, and matches local mode',
    { timeout: TIMEOUT_MS + 45_000 },
    async (t) => {
      const { code, signal, timedOut, stdout, stderr } = await runShellScript(e2eScript, TIMEOUT_MS, 40_000);
      for (const line of timingLines(stdout)) t.diagnostic(line);
      assert.ok(!timedOut, `e2e.sh did not finish within ${TIMEOUT_MS} ms and was terminated\n${stderr}`);
      assert.equal(signal, null, `e2e.sh was killed by ${String(signal)}\n${stderr}`);
      assert.equal(code, 0, `e2e.sh exited ${String(code)}\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout}`);
      assert.match(stderr, /output equals local mode's/);
      assert.match(stderr, /all steps passed/);
    },
  );
});
