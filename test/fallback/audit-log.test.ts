// The audit log's one reader: records in order, a line cut by a crash skipped, and the budget's ledger built on it.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readAuditLog, readLedger } from '../../fallback/audit-log.js';
import { withTempDir } from '../../scripts/harness/parquet.js';

const reserve = (callId: string, usd: number): string =>
  JSON.stringify({
    event: 'reserve',
    time: '2024-01-01T00:00:00Z',
    call_id: callId,
    document_id: null,
    row: 1,
    shard_id: 's',
    request_hash: 'h',
    attempt: 1,
    reserved_usd: usd,
  });
const call = (callId: string, usd: number, extra: object = {}): string =>
  JSON.stringify({ event: 'call', time: '2024-01-01T00:00:01Z', call_id: callId, cost_usd: usd, ...extra });

describe('readAuditLog', () => {
  it('returns no records when there is no audit file yet', async () => {
    await withTempDir(async (dir) => {
      assert.deepEqual(await readAuditLog(path.join(dir, 'absent.jsonl')), []);
    });
  });

  it('skips a line cut by a crash and keeps the lines around it', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'audit.jsonl');
      await writeFile(file, `${reserve('a', 0.5)}\n{"event":"call","call_\n${call('b', 0.25)}\n`);
      assert.deepEqual(
        (await readAuditLog(file)).map((r) => r.event),
        ['reserve', 'call'],
      );
    });
  });
});

describe('readLedger', () => {
  it(
    'counts settled costs, reservations without a call at their worst case, ' + 'and no request for one never sent',
    async () => {
      await withTempDir(async (dir) => {
        const file = path.join(dir, 'audit.jsonl');
        const lines = [
          reserve('a', 0.5),
          call('a', 0.1),
          reserve('b', 0.5),
          reserve('c', 0.5),
          call('c', 0, { not_sent: true }),
        ];
        await writeFile(file, `${lines.join('\n')}\n`);
        const ledger = await readLedger(file);
        assert.equal(ledger.requests, 2);
        assert.ok(Math.abs(ledger.nanoUsd / 1e9 - 0.6) < 1e-9);
      });
    },
  );
});
