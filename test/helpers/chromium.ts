// Debian's headless chromium for tests that must see a page rendered: found on PATH, installed with apt when
// missing (root only), or reported as unavailable with the reason so the test can skip saying why.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome'];
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function which(name: string): string | null {
  const result = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() || null : null;
}

let found: Promise<{ path: string } | { reason: string }> | undefined;

/** The chromium binary, installing Debian's package first if needed; a reason when that is impossible. */
export function findChromium(): Promise<{ path: string } | { reason: string }> {
  found ??= (async () => {
    for (const name of CANDIDATES) {
      const p = which(name);
      if (p !== null) return { path: p };
    }
    if (process.getuid?.() !== 0)
      return { reason: 'chromium is not installed and the tests do not run as root; apt-get install chromium' };
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8', env, timeout: 600_000 });
    const install =
      update.status === 0
        ? spawnSync('apt-get', ['install', '-y', '-qq', 'chromium'], { encoding: 'utf8', env, timeout: 1_200_000 })
        : update;
    const p = which('chromium');
    if (p !== null) return { path: p };
    const tail = (install.stderr || install.stdout || String(install.error ?? ''))
      .trim()
      .split('\n')
      .slice(-2)
      .join(' ');
    return { reason: `apt-get could not install chromium: ${tail}` };
  })();
  return found;
}

function run(binary: string, args: readonly string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      binary,
      [...args],
      { timeout: timeoutMs, maxBuffer: 64 << 20, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error) reject(Object.assign(error, { stderr }));
        else resolve({ stdout, stderr });
      },
    );
  });
}

/** Renders a local HTML file headless: its DOM after load (--dump-dom) and a PNG screenshot of the given size. */
export async function renderPage(
  binary: string,
  htmlFile: string,
  screenshot: string,
  size: { width: number; height: number } = { width: 1280, height: 5000 },
): Promise<{ dom: string }> {
  const profile = await mkdtemp(path.join(tmpdir(), 'rescale-chromium-'));
  try {
    const url = pathToFileURL(path.resolve(htmlFile)).href;
    const common = [
      ...FLAGS,
      `--user-data-dir=${profile}`,
      '--hide-scrollbars',
      `--window-size=${size.width},${size.height}`,
    ];
    const { stdout } = await run(binary, [...common, '--dump-dom', url], 120_000);
    await run(binary, [...common, `--screenshot=${screenshot}`, url], 120_000);
    return { dom: stdout };
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

/** Presses a key that submits a form or follows a link, and waits for the page it leads to. */
export async function press(page: Page, key: string): Promise<void> {
  await Promise.all([page.waitForNavigation(), page.keyboard.press(key)]);
}
