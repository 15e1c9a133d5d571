// The Batch API's state file: parsed through its schema, so a damaged file names its field instead of misleading
// collect.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../../contracts/errors.js';
import {
  batchStatePathFor,
  readBatchState,
  writeBatchState,
  type BatchRecord,
} from '../../../fallback/batch/batch-state.js';
import { withTempDir } from '../../../scripts/harness/parquet.js';

const record: BatchRecord = {
  tag: 't1',
  batchId: null,
  inputFile: '/tmp/out.fallback-batch-t1.jsonl',
  requests: 3,
  submittedAt: '2024-01-01T00:00:00Z',
  collectedAt: null,
  status: 'unknown',
  answered: 0,
  failed: 0,
  missing: 0,
};

describe('batch state file', () => {
  it('reads back what it wrote, and nothing before the first submit', async () => {
    await withTempDir(async (dir) => {
      const output = path.join(dir, 'out.parquet');
      assert.deepEqual(await readBatchState(output), []);
      await writeBatchState(output, [record]);
      assert.deepEqual(await readBatchState(output), [record]);
    });
  });

  it('names the field of a damaged record', async () => {
    await withTempDir(async (dir) => {
      const output = path.join(dir, 'out.parquet');
      await writeFile(batchStatePathFor(output), JSON.stringify([{ ...record, requests: 'three' }]));
      await assert.rejects(
        readBatchState(output),
        (error) => isRescaleError(error, 'INPUT_INVALID') && /field "0\.requests"/.test(error.message),
      );
    });
  });
});
