// What a run may do to its output before it touches anything: the destination must be a regular file on an ordinary
// filesystem, none of the output's files may be (or contain) an input, the codebook, the model or an adapter, and
// `--overwrite` deletes only files rescale wrote. Each refusal names the path and what to do (CONFIG_INVALID, exit 2).

import { lstat, readdir, readFile, realpath, rm, rmdir, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { RescaleError } from '../contracts/errors.js';
import { isMergeTempOf, type OutputLayout } from './output-layout.js';

/** The files a run reads and must never write: every corpus file and input, the codebook, the model, the adapters. */
export interface RunSources {
  readonly inputs: readonly string[];
  readonly corpusFiles: readonly string[];
  readonly codebook: string;
  readonly model: string;
  readonly adapters: readonly string[];
}

/** statfs magic numbers of kernel pseudo filesystems, where a "file" is not storage (writes hang or go nowhere). */
const PSEUDO_FILESYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'procfs'],
  [0x62656572, 'sysfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x62656570, 'configfs'],
  [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'],
  [0xde5e81e4, 'efivarfs'],
  [0x1cd1, 'devpts'],
  [0x19800202, 'mqueue'],
]);

/**
 * A path with every symlink of its existing part resolved: realpath of the deepest existing ancestor plus the rest,
 * so an output that does not exist yet still resolves to where it would be written.
 */
export async function resolveReal(file: string): Promise<string> {
  const absolute = path.resolve(file);
  try {
    return await realpath(absolute);
  } catch {
    const parent = path.dirname(absolute);
    if (parent === absolute) return absolute;
    return path.join(await resolveReal(parent), path.basename(absolute));
  }
}

function isInside(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

/**
 * Refuses, before anything is written, a destination that is a folder, a device, FIFO or socket, or on a kernel
 * pseudo filesystem (/proc, /sys), and an output whose results file, manifest, lock or parts folder is, or contains,
 * one of the run's sources. `option` names where the output came from (`--output`, or `output` in a submission).
 */
export async function checkOutputDestination(
  layout: OutputLayout,
  sources: RunSources,
  option = '--output',
): Promise<void> {
  const { output } = layout;
  const info = await stat(output).catch(() => undefined);
  if (info?.isDirectory() === true) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${option} ${output} is an existing folder; name the results file, e.g. ${path.join(output, 'results.parquet')}`,
    );
  }
  if (info !== undefined && !info.isFile()) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${option} ${output} is not a regular file (a device, FIFO or socket); name a file on a disk`,
    );
  }
  await checkFilesystem(output, option);
  const partsInfo = await lstat(layout.partsDir).catch(() => undefined);
  if (partsInfo !== undefined && !partsInfo.isDirectory()) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${layout.partsDir} (the parts folder of ${option} ${output}) exists and is not a folder; move it away or ` +
        `choose another ${option}`,
    );
  }

  const own = await Promise.all(
    [
      { what: 'results file', file: output },
      { what: 'parts folder', file: layout.partsDir },
      { what: 'manifest', file: layout.manifestFile },
      { what: 'lock file', file: layout.lockFile },
    ].map(async ({ what, file }) => ({ what, file, real: await resolveReal(file) })),
  );
  const named = [
    ...sources.corpusFiles.map((file) => ({ what: 'corpus file', file })),
    ...sources.inputs.map((file) => ({ what: 'input', file })),
    { what: 'codebook', file: sources.codebook },
    { what: 'model', file: sources.model },
    ...sources.adapters.map((file) => ({ what: 'adapter', file })),
  ];
  for (const source of named) {
    const exists = await lstat(source.file).then(
      () => true,
      () => false,
    );
    if (!exists) continue;
    const real = await resolveReal(source.file);
    for (const target of own) {
      if (real === target.real || isInside(real, target.real)) {
        const where = real === source.file ? '' : ` (${real})`;
        throw new RescaleError(
          'CONFIG_INVALID',
          `${option} ${output} would write over the ${source.what} ${source.file}${where}: it is the output's ` +
            `${target.what} ${target.file}${real === target.real ? '' : ' or lies inside it'}; nothing was touched. ` +
            `Choose an ${option} that is none of the run's inputs, codebook, model or adapters`,
        );
      }
    }
  }
}

async function checkFilesystem(output: string, option: string): Promise<void> {
  let existing = path.resolve(output);
  for (;;) {
    const found = await stat(existing).then(
      () => true,
      () => false,
    );
    if (found) break;
    const parent = path.dirname(existing);
    if (parent === existing) return;
    existing = parent;
  }
  const info = await statfs(existing).catch(() => undefined);
  const kind = info === undefined ? undefined : PSEUDO_FILESYSTEMS.get(Number(info.type));
  if (kind !== undefined) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${option} ${output} is on ${existing}, a ${kind} pseudo filesystem that stores nothing; name a file on a disk`,
    );
  }
}

/**
 * Removes an earlier run's results for `--overwrite`, but only what rescale wrote: the results file when its
 * manifest or parts folder is beside it, a manifest that parses as one, and a parts folder holding only
 * `plan.json` and `shards/*.arrow`. Anything else is refused by name before anything is deleted.
 */
export async function removeOwnOutput(layout: OutputLayout, option = '--output'): Promise<void> {
  const refuse = (file: string, why: string): never => {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--overwrite deletes only results rescale wrote, and ${file} ${why}; nothing was deleted. Move it away or ` +
        `choose another ${option}`,
    );
  };
  const outputExists = await exists(layout.output);
  const manifestExists = await exists(layout.manifestFile);
  const partsEntries = await readdir(layout.partsDir).catch(() => null);
  let shardEntries: string[] = [];

  if (manifestExists) {
    const text = await readFile(layout.manifestFile, 'utf8').catch(() => '');
    let merge: unknown;
    try {
      merge = (JSON.parse(text) as { merge?: unknown }).merge;
    } catch {
      merge = undefined;
    }
    if (typeof merge !== 'object' || merge === null) refuse(layout.manifestFile, 'is not a rescale run manifest');
  }
  if (partsEntries !== null) {
    const unexpected = partsEntries.find((name) => name !== 'plan.json' && name !== 'shards' && !name.endsWith('.tmp'));
    if (unexpected !== undefined) refuse(path.join(layout.partsDir, unexpected), 'is not a file rescale writes there');
    if (partsEntries.includes('shards')) {
      shardEntries = await readdir(layout.shardDir).catch(() => refuse(layout.shardDir, 'is not a folder'));
      const foreign = shardEntries.find((name) => !name.endsWith('.arrow') && !name.endsWith('.tmp'));
      if (foreign !== undefined) refuse(path.join(layout.shardDir, foreign), 'is not a shard result rescale wrote');
    }
  }
  if (outputExists && !manifestExists && partsEntries === null) {
    refuse(layout.output, `has no manifest or parts folder beside it (${layout.manifestFile})`);
  }

  await rm(layout.manifestFile, { force: true });
  if (outputExists) await unlink(layout.output);
  if (partsEntries !== null) {
    for (const name of shardEntries) await rm(path.join(layout.shardDir, name), { force: true });
    if (partsEntries.includes('shards')) await rmdir(layout.shardDir);
    for (const name of partsEntries) if (name !== 'shards') await rm(path.join(layout.partsDir, name), { force: true });
    await rmdir(layout.partsDir);
  }
}

/** Removes the temp files a killed merge of this output left beside it (call while holding the output's lock). */
export async function removeMergeTemps(layout: OutputLayout): Promise<string[]> {
  const dir = path.dirname(layout.output);
  const names = await readdir(dir).catch(() => [] as string[]);
  const temps = names.filter((name) => isMergeTempOf(layout.output, name)).map((name) => path.join(dir, name));
  for (const temp of temps) await rm(temp, { force: true });
  return temps;
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}
