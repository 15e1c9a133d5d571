import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { writeFileAtomic } from '../../storage/atomic-file.js';
import { shardResultPath } from '../../storage/output-layout.js';
import { isShardComplete } from '../../storage/shard-result-file.js';
import { withTempDir } from '../../scripts/harness/parquet.js';

describe('writeFileAtomic', () => {
  it('leaves no final file and no temp file when writing fails midway', async () => {
    await withTempDir(async (dir) => {
      const target = shardResultPath(dir, 'abc');
      await assert.rejects(
        writeFileAtomic(target, async (handle) => {
          await handle.write(new Uint8Array(4096));
          throw new Error('disk full');
        }),
        /disk full/,
      );
      assert.equal(await isShardComplete(dir, 'abc'), false);
      assert.deepEqual(await readdir(dir), []);
    });
  });

  it('replaces an existing file only once the new content is complete', async () => {
    await withTempDir(async (dir) => {
      const target = path.join(dir, 'x.json');
      await writeFileAtomic(target, async (handle) => void (await handle.writeFile('old')));
      await assert.rejects(
        writeFileAtomic(target, async (handle) => {
          await handle.writeFile('half');
          throw new Error('crash');
        }),
      );
      assert.deepEqual(await readdir(dir), ['x.json']);
      assert.equal(await readFile(target, 'utf8'), 'old');
      await writeFileAtomic(target, async (handle) => void (await handle.writeFile('new')));
      assert.deepEqual(await readdir(dir), ['x.json']);
      assert.equal(await readFile(target, 'utf8'), 'new');
    });
  });
});
