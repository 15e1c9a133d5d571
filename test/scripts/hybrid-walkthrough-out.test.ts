// scripts/hybrid-walkthrough.ts clears --out before a fresh study: only a missing or empty folder, or one an earlier
// walk-through wrote. Anything else (a file, a folder of other files, even one holding a crowd.yaml) is refused and
// left as it was.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runHybridWalkthrough } from '../../scripts/hybrid-walkthrough.js';

describe('the hybrid walk-through --out', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-walkthrough-out-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // A data folder without TweetEval: a run that gets past clearing --out stops at the corpus.
  const options = (outDir: string) => ({ outDir, dataDir: path.join(dir, 'no-data'), sample: 4, heldOut: 4, seed: 1 });

  it('refuses a file and leaves it in place', async () => {
    const file = path.join(dir, 'notes.txt');
    await writeFile(file, 'my notes\n');
    await assert.rejects(runHybridWalkthrough(options(file)), (e: Error) => {
      assert.match(e.message, /--out .*notes\.txt is not a folder/);
      return true;
    });
    assert.equal(await readFile(file, 'utf8'), 'my notes\n');
  });

  it("refuses a folder of the user's that holds a crowd.yaml, and keeps its files", async () => {
    const study = path.join(dir, 'my-study');
    await mkdir(study);
    await writeFile(path.join(study, 'crowd.yaml'), 'labellers: []\n');
    await writeFile(path.join(study, 'corpus.parquet'), 'data');
    await assert.rejects(runHybridWalkthrough(options(study)), /--out .*my-study holds other files/);
    assert.equal(await readFile(path.join(study, 'corpus.parquet'), 'utf8'), 'data');
  });

  it('clears a folder an earlier walk-through marked', async () => {
    const earlier = path.join(dir, 'earlier');
    await mkdir(earlier);
    await writeFile(path.join(earlier, '.hybrid-walkthrough'), '');
    await writeFile(path.join(earlier, 'stale.txt'), 'old');
    // Past the clearing, the run stops at the missing TweetEval data.
    await assert.rejects(runHybridWalkthrough(options(earlier)), (e: Error) => !/--out/.test(e.message));
    await assert.rejects(readFile(path.join(earlier, 'stale.txt')), { code: 'ENOENT' });
  });
});
