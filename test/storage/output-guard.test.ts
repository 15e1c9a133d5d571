// The output checks on their own: an adapter (or any source) is protected like the corpus, whatever path leads to it;
// merge temp files are recognised by their exact shape; rescale's own results are recognised from their siblings.

import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../contracts/errors.js';
import { withTempDir } from '../../scripts/harness/parquet.js';
import { checkOutputDestination, type RunSources } from '../../storage/output-guard.js';
import { isMergeTempOf, isRescaleOutputName, outputLayout } from '../../storage/output-layout.js';

function sources(dir: string, adapters: string[] = []): RunSources {
  return {
    inputs: [],
    corpusFiles: [],
    codebook: path.join(dir, 'codebook.yaml'),
    model: path.join(dir, 'model.gguf'),
    adapters,
  };
}

describe('checkOutputDestination', () => {
  it('refuses an output that resolves to an adapter, through a symlinked folder, naming both', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'adapters'));
      const adapter = path.join(dir, 'adapters', 'lora.gguf');
      await writeFile(adapter, 'GGUF');
      await symlink(path.join(dir, 'adapters'), path.join(dir, 'via'));
      const output = path.join(dir, 'via', 'lora.gguf');
      await assert.rejects(
        checkOutputDestination(outputLayout(output), sources(dir, [adapter])),
        (error) =>
          isRescaleError(error, 'CONFIG_INVALID') &&
          error.message.includes(`--output ${output} would write over the adapter ${adapter}`),
      );
      // The same folder with another name is fine.
      await checkOutputDestination(outputLayout(path.join(dir, 'via', 'results.parquet')), sources(dir, [adapter]));
    });
  });

  it("refuses an output whose manifest would be the codebook (named 'x.manifest.json')", async () => {
    await withTempDir(async (dir) => {
      const codebook = path.join(dir, 'x.manifest.json');
      await writeFile(codebook, 'task: t');
      await assert.rejects(
        checkOutputDestination(outputLayout(path.join(dir, 'x')), { ...sources(dir), codebook }, 'output'),
        (error) => isRescaleError(error, 'CONFIG_INVALID') && /output's manifest/.test(error.message),
      );
    });
  });
});

describe('output names', () => {
  it('recognises only the temp files a merge of this output writes', () => {
    const output = '/data/results.parquet';
    assert.ok(isMergeTempOf(output, '.results.parquet.1234-0a1b2c3d.tmp'));
    assert.ok(isMergeTempOf(output, '.results.parquet.manifest.json.1234-0a1b2c3d.tmp'));
    assert.ok(!isMergeTempOf(output, '.results.parquet.notes.tmp'));
    assert.ok(!isMergeTempOf(output, '.other.parquet.1234-0a1b2c3d.tmp'));
    assert.ok(!isMergeTempOf(output, 'results.parquet'));
  });

  it('recognises a results file by its manifest, lock or parts folder beside it', () => {
    assert.ok(isRescaleOutputName('r.parquet', new Set(['r.parquet', 'r.parquet.manifest.json'])));
    assert.ok(isRescaleOutputName('r.parquet', new Set(['r.parquet', 'r.parquet.parts'])));
    assert.ok(!isRescaleOutputName('a.parquet', new Set(['a.parquet', 'r.parquet.parts'])));
  });
});
