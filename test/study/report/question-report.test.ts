// `rescale report` on a multi-question run (a DuckDB-written result file): a section per question with its label
// distribution, confidence, fallback share (for a routed question) and agreement with the gold column of its name.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildRunReport, collectRunReport } from '../../../study/report/run-report.js';
import { withTempDir } from '../../../scripts/harness/parquet.js';
import { writeRowsParquet } from '../../helpers/analysis-files.js';

const N = 20;
const ids = Array.from({ length: N }, (_, i) => i);

async function results(dir: string): Promise<string> {
  return writeRowsParquet(
    path.join(dir, 'multi.parquet'),
    {
      id: 'BIGINT',
      topic__label: 'VARCHAR',
      topic__confidence: 'DOUBLE',
      topic__source: 'VARCHAR',
      topic__local_label: 'VARCHAR',
      topic__fallback_label: 'VARCHAR',
      topic__fallback_status: 'VARCHAR',
      tone__label: 'VARCHAR',
      tone__confidence: 'DOUBLE',
      status: 'VARCHAR',
      source: 'VARCHAR',
    },
    ids.map((id) => {
      // Topic: ids below 5 were unsure and answered "economy" by the fallback; tone is never routed.
      const routed = id < 5;
      return {
        id,
        topic__label: routed || id % 2 === 0 ? 'economy' : 'health',
        topic__confidence: routed ? 0.4 : 0.9,
        topic__source: routed ? 'fallback' : 'local',
        topic__local_label: routed ? 'health' : id % 2 === 0 ? 'economy' : 'health',
        topic__fallback_label: routed ? 'economy' : null,
        topic__fallback_status: routed ? 'ok' : null,
        tone__label: id % 4 === 0 ? 'angry' : 'calm',
        tone__confidence: 0.8,
        status: 'ok',
        source: routed ? 'fallback' : 'local',
      };
    }),
    {
      'rescale.questions': JSON.stringify([
        { name: 'topic', labels: ['health', 'economy'], routed: true },
        { name: 'tone', labels: ['calm', 'angry'] },
      ]),
    },
  );
}

describe('rescale report with several questions', () => {
  it('has a section per question: labels, confidence, fallback share and agreement with its gold column', async () => {
    await withTempDir(async (dir) => {
      const file = await results(dir);
      // Gold: topic always "economy"; tone agrees with the run. No gold column for another question is needed.
      const gold = await writeRowsParquet(
        path.join(dir, 'gold.parquet'),
        { id: 'BIGINT', topic: 'VARCHAR', tone: 'VARCHAR' },
        ids.map((id) => ({ id, topic: 'economy', tone: id % 4 === 0 ? 'angry' : 'calm' })),
      );
      const options = {
        results: file,
        gold: { file: gold, idColumn: 'id', labelColumn: 'gold' },
        seed: 1,
        resamples: 100,
        generatedAt: new Date('2026-01-01T00:00:00Z'),
      };
      const data = await collectRunReport(options);
      assert.deepEqual(
        data.questions?.map((q) => [q.name, q.fallback?.routed ?? 0, q.gold?.evaluation.systems[0]?.accuracy.estimate]),
        [
          ['topic', 5, 12 / 20],
          ['tone', 0, 1],
        ],
      );
      const html = await buildRunReport(options);
      const found = [...html.matchAll(/<section id="([^"]+)"><h2>([^<]+)<\/h2>/g)].map((m) => `${m[1]}|${m[2]}`);
      assert.ok(found.includes('topic-labels|topic: Label distribution'), found.join('\n'));
      assert.ok(found.includes('tone-labels|tone: Label distribution'));
      assert.ok(found.includes('topic-confidence|topic: Confidence'));
      assert.ok(found.includes('topic-fallback|topic: Fallback routing and cost'));
      assert.ok(!found.some((id) => id.startsWith('tone-fallback')), 'tone is never routed');
      assert.ok(found.some((id) => id.startsWith('topic-') && id.includes('topic: ') && /gold|agree/i.test(id)));
      assert.ok(found.some((id) => id.startsWith('tone-') && /gold|agree/i.test(id)));
      assert.equal(new Set(found.map((id) => id.split('|')[0])).size, found.length, 'section ids are unique');
      assert.match(html, /questions<\/th><td>topic \(health, economy\); tone \(calm, angry\)/);
      // The fallback share: 5 of 20 documents routed on topic.
      assert.match(html, /routed to the fallback<\/th><td>5 \(25/);
    });
  });
});
