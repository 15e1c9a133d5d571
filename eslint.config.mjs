// Lint for rescale: the checks tsc cannot make. Promises are awaited or handled, imports form no cycle, and the
// top-level folders keep their layering (contracts ← storage ← fallback ← worker ← coordinator ← cli, study beside
// the coordinator, gguf a leaf), so a boundary holds by tool rather than by review. Every rule is an error.

import { defineConfig } from 'eslint/config';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import importX from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

const TOOLING = ['scripts', 'test'];

/** What each source folder may not import (paths from the repository root); tests and scripts may import anything. */
const FORBIDDEN = {
  contracts: ['storage', 'fallback', 'worker', 'coordinator', 'study', 'cli', 'gguf'],
  storage: ['fallback', 'worker', 'coordinator', 'study', 'cli', 'gguf'],
  fallback: ['worker', 'coordinator', 'study', 'cli', 'gguf'],
  worker: ['coordinator', 'study', 'cli', 'gguf'],
  // The coordinator plans and merges; only the worker (or the CLI in local mode) loads models.
  coordinator: ['study', 'cli', 'gguf', 'worker/engine'],
  study: ['coordinator', 'cli', 'gguf'],
  cli: [],
  gguf: ['storage', 'fallback', 'worker', 'coordinator', 'study', 'cli'],
};

const WHY = {
  contracts: 'contracts/ is the shared core and imports no other folder',
  storage: 'storage/ imports only contracts/',
  fallback: 'fallback/ imports only contracts/ and storage/',
  worker: 'the worker never imports the coordinator, study tooling, the CLI or the fixture models',
  coordinator:
    'the coordinator imports contracts/, storage/, fallback/ and worker/ (never its model runtime worker/engine/)',
  study: 'study/ sits beside the coordinator: it imports contracts/, storage/, fallback/ and worker/',
  cli: '',
  gguf: 'gguf/ is a leaf: it imports only contracts/',
};

const zones = Object.entries(FORBIDDEN).flatMap(([target, from]) => [
  ...(from.length > 0 ? [{ target: `./${target}`, from: from.map((f) => `./${f}`), message: WHY[target] }] : []),
  {
    target: `./${target}`,
    from: TOOLING.map((f) => `./${f}`),
    message: 'only tests and scripts import test/ and scripts/',
  },
]);

// `import { env } from 'node:process'` would slip past the property rule below.
const processEnvImports = ['process', 'node:process'].map((name) => ({
  name,
  importNames: ['env'],
  message: 'read the environment only in contracts/environment.ts and pass the parsed Environment down',
}));

export default defineConfig(
  { ignores: ['dist/**', 'fixtures/**', 'out/**', '.cache/**', 'node_modules/**', 'bench/**', 'deploy/**'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    plugins: { 'import-x': importX },
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    settings: {
      // Without the TypeScript extensions and parser, import-x skips .ts files and sees no cycle at all.
      'import-x/extensions': ['.ts', '.js', '.mjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      // Imports name the emitted .js file; the resolver maps them to the .ts source.
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Prettier keeps code at 120 columns but never breaks a string or a comment: this rule holds those too.
      'max-len': ['error', { code: 120, ignoreUrls: true, ignoreRegExpLiterals: true }],
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's describe/it return promises the runner itself awaits.
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // `return promise` inside try skips the catch and runs finally before the work ends (a disposed model).
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      // Callers branch on RescaleError's code and retryable; a thrown string has neither.
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      'import-x/no-restricted-paths': ['error', { basePath: import.meta.dirname, zones }],
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message: 'read the environment only in contracts/environment.ts and pass the parsed Environment down',
        },
      ],
      'no-restricted-imports': ['error', { paths: processEnvImports }],
    },
  },
  {
    // no-restricted-paths sees only files; the runtime package is named here.
    files: ['coordinator/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...processEnvImports,
            { name: 'node-llama-cpp', message: 'the coordinator never loads the model runtime; the worker does' },
          ],
        },
      ],
    },
  },
  {
    // The one reader of the environment; tests and scripts are entry points of their own.
    files: ['contracts/environment.ts', ...TOOLING.map((f) => `${f}/**/*.ts`)],
    rules: { 'no-restricted-properties': 'off', 'no-restricted-imports': 'off' },
  },
);
