// `npm run lock:platforms`: completes package-lock.json with node-llama-cpp's prebuilt-binary packages for the
// platforms this registry does not serve (macOS, Windows, riscv64 at 3.22). `npm install` leaves a package it cannot
// fetch out of the lock, and `npm ci` then refuses the lock ("missing from lock file"). An entry with `version`, `os`,
// `cpu` and `optional: true` (no `resolved`, no `integrity`) satisfies `npm ci` here, and on a machine with the public
// registry npm resolves it. Run after every node-llama-cpp upgrade:
//
//   npm install node-llama-cpp@X.Y.Z --save-exact && npm run lock:platforms
//
// Entries already in the lock (the packages npm could fetch) are left as npm wrote them.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const lockFile = path.join(root, 'package-lock.json');
const lock = JSON.parse(readFileSync(lockFile, 'utf8'));
const owner = lock.packages['node_modules/node-llama-cpp'];
if (owner === undefined) {
  console.error('lock:platforms: node-llama-cpp is not in package-lock.json; run `npm install` first');
  process.exit(1);
}

const OS = { mac: 'darwin', win: 'win32', linux: 'linux' };
const CPU = { x64: 'x64', arm64: 'arm64', armv7l: 'arm', riscv64: 'riscv64' };

/** `@node-llama-cpp/mac-arm64-metal` → { os: 'darwin', cpu: 'arm64' }, from the package naming scheme. */
function platformOf(name) {
  const [osPart, cpuPart] = name.replace('@node-llama-cpp/', '').split('-');
  const os = OS[osPart];
  const cpu = CPU[cpuPart];
  if (os === undefined || cpu === undefined) {
    throw new Error(`lock:platforms: cannot tell the platform of ${name}; add its os/cpu to this script`);
  }
  return { os, cpu };
}

const added = [];
for (const [name, version] of Object.entries(owner.optionalDependencies ?? {})) {
  const key = `node_modules/${name}`;
  const existing = lock.packages[key];
  if (existing !== undefined && existing.version === version) continue;
  const { os, cpu } = platformOf(name);
  lock.packages[key] = { version, cpu: [cpu], license: 'MIT', optional: true, os: [os] };
  added.push(`${name}@${version}`);
}

// npm keeps `packages` sorted by path; keep the file stable for review.
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
writeFileSync(lockFile, `${JSON.stringify(lock, null, 2)}\n`);
console.log(added.length === 0 ? 'lock:platforms: nothing to add' : `lock:platforms: added ${added.join(', ')}`);
