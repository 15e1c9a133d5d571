// `npm run fixtures`: generates every fixture model into fixtures/models/, skipping those whose recorded spec
// hash is unchanged. `--force` rebuilds all; names as arguments limit the run (e.g. `npm run fixtures -- small`).

import { relative } from 'node:path';
import { ensureFixtures, FIXTURE_NAMES, type FixtureName } from '../gguf/fixtures/fixture-catalog.js';
import { REPO_ROOT } from '../gguf/fixtures/vocab.js';

function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const requested = args.filter((arg) => arg !== '--force');
  const unknown = requested.filter((name) => !(FIXTURE_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new Error(`Unknown fixture ${unknown.join(', ')}; choose from: ${FIXTURE_NAMES.join(', ')}`);
  }
  const names = requested.length > 0 ? (requested as FixtureName[]) : FIXTURE_NAMES;
  const started = performance.now();
  await ensureFixtures(names, {
    force,
    onFixture: (result) => {
      const action = result.skipped ? 'up to date' : 'wrote';
      const seconds = (result.milliseconds / 1000).toFixed(2);
      console.log(
        `${action.padEnd(10)} ${relative(REPO_ROOT, result.path).padEnd(40)} ` +
          `${formatBytes(result.bytes).padStart(10)}  ${seconds}s`,
      );
      for (const note of result.notes) console.log(`           ${note}`);
    },
  });
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)}s`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
