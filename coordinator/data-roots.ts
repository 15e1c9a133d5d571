// The folders a submitted run may touch (`rescale coordinator --data-root`): its codebook, inputs, output (and the
// files beside it), models, adapters and fallback cache must resolve inside one of them, real paths with symlinks
// followed. A token lets its holder submit runs; the data roots keep those runs from reading or writing anything
// else the coordinator can (a password file as a "codebook", an output with "..", --overwrite on any file).

import { readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { RescaleError } from '../contracts/errors.js';

export class DataRoots {
  private constructor(
    /** Real paths; empty means any path is allowed (no --data-root given). */
    readonly roots: readonly string[],
  ) {}

  /** No restriction: every path the coordinator can reach (a coordinator started without --data-root). */
  static unrestricted(): DataRoots {
    return new DataRoots([]);
  }

  /** Each folder must exist; its real path is kept. */
  static async open(folders: readonly string[], option = '--data-root'): Promise<DataRoots> {
    const roots: string[] = [];
    for (const folder of folders) {
      let real: string;
      try {
        real = await realpath(path.resolve(folder));
        if (!(await stat(real)).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
      } catch (cause) {
        throw new RescaleError(
          'CONFIG_INVALID',
          `${option} ${folder} is not a folder the coordinator can open ` +
            `(${(cause as NodeJS.ErrnoException).code ?? String(cause)}); give an existing folder`,
        );
      }
      roots.push(real);
    }
    return new DataRoots(roots);
  }

  get restricted(): boolean {
    return this.roots.length > 0;
  }

  /**
   * Throws CONFIG_INVALID (gRPC INVALID_ARGUMENT) naming `what` and the path when `file` does not resolve inside a
   * root. A path that does not exist yet (an output) is judged by its nearest existing parent, resolved, plus the
   * rest; `..` is resolved before anything is looked up.
   */
  async check(file: string, what: string): Promise<void> {
    if (!this.restricted) return;
    const real = await resolveReal(path.resolve(file));
    if (this.roots.some((root) => real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep)))
      return;
    throw new RescaleError(
      'CONFIG_INVALID',
      `the ${what} ${file} is outside the coordinator's data roots (${this.roots.join(', ')})` +
        `${real !== path.resolve(file) ? ` (it resolves to ${real})` : ''}; put it under one of them, or ask the ` +
        "coordinator's operator to add a --data-root",
    );
  }

  /** The fixed part of an input before any glob character, which must itself be inside a root. */
  async checkInput(input: string): Promise<void> {
    const parts = input.split(path.sep);
    const fixed: string[] = [];
    for (const part of parts) {
      if (/[*?[\]{}]/.test(part)) break;
      fixed.push(part);
    }
    await this.check(fixed.join(path.sep) || path.sep, 'input');
  }
}

/**
 * The real path of `absolute`, or of its nearest existing ancestor joined with the missing rest; a dangling symlink
 * on the way is followed to where it points (a write there would land at its target).
 */
async function resolveReal(absolute: string, depth = 0): Promise<string> {
  const missing: string[] = [];
  let current = absolute;
  for (;;) {
    try {
      return path.join(await realpath(current), ...missing.reverse());
    } catch {
      const link = await readlink(current).catch(() => null);
      if (link !== null && depth < 40) {
        return resolveReal(path.join(path.resolve(path.dirname(current), link), ...missing.reverse()), depth + 1);
      }
      const parent = path.dirname(current);
      if (parent === current) return absolute;
      missing.push(path.basename(current));
      current = parent;
    }
  }
}
