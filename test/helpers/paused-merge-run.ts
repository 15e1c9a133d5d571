// A local run that stops between renaming its results into place and writing their manifest: it writes the file
// named by `ready` there and waits until it is killed. Argument: JSON { codebook, input, output, shardRows, ready }.

import { writeFile } from 'node:fs/promises';
import { runLocalMode } from '../../cli/local-mode.js';

const { codebook, input, output, shardRows, ready } = JSON.parse(process.argv[2] ?? '{}') as {
  codebook: string;
  input: string;
  output: string;
  shardRows: number;
  ready: string;
};

await runLocalMode({
  codebook,
  input: [input],
  output,
  shardRows,
  env: {},
  afterResultsRenamed: async () => {
    await writeFile(ready, `${process.pid}\n`);
    await new Promise<never>(() => setInterval(() => undefined, 60_000));
  },
});
