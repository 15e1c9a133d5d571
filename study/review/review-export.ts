// `rescale review export`: the verified labels as a gold Parquet file (id, text, one column per question, number of
// reviewers, adjudicated or not) and, per single-label question, training chat JSONL rendered as `rescale sample`
// renders it (study/sampling/training-sample.ts).

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer, type ColumnSource, type SchemaElement } from 'hyparquet-writer';
import type { Codebook } from '../../contracts/codebook.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { promptMessages } from '../../contracts/prompt-text.js';
import { writeBytesAtomic } from '../../storage/atomic-file.js';
import { chatExample, DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE } from '../sampling/training-sample.js';
import type { CrowdFolder, CrowdQuestion } from './crowd-folder.js';
import type { GoldRow } from './review-state.js';

export interface ExportSummary {
  readonly gold: string;
  readonly documents: number;
  readonly adjudicated: number;
  /** Per single-label question: the JSONL file and its number of examples. */
  readonly training: readonly { readonly question: string; readonly file: string; readonly examples: number }[];
}

const STRING = { type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } } as const;

/** Column name of a question's verified labels: the question name (`<name>__labels` for multi-label ones). */
export function goldColumn(question: CrowdQuestion): string {
  return question.type === 'multi_label' ? `${question.name}__labels` : question.name;
}

async function writeFile(file: string, data: string | Uint8Array): Promise<void> {
  try {
    await writeBytesAtomic(file, data);
  } catch (cause) {
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `cannot write ${file}: ${errorMessage(cause)}; choose a folder you can write to`,
      {
        cause,
      },
    );
  }
}

export async function exportReview(
  crowd: CrowdFolder,
  rows: readonly GoldRow[],
  outDir: string,
  codebook?: Codebook,
): Promise<ExportSummary> {
  const out = path.resolve(outDir);
  try {
    await mkdir(out, { recursive: true });
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot create --out ${out}: ${errorMessage(cause)}`, { cause });
  }

  const schema: SchemaElement[] = [
    { name: 'root', num_children: 4 + crowd.questions.length },
    { name: 'id', ...STRING, repetition_type: 'REQUIRED' },
    { name: 'text', ...STRING, repetition_type: 'REQUIRED' },
  ];
  const columnData: ColumnSource[] = [
    { name: 'id', data: rows.map((r) => r.id) },
    { name: 'text', data: rows.map((r) => r.text) },
  ];
  for (const q of crowd.questions) {
    const name = goldColumn(q);
    const values = rows.map((r) => r.labels.get(q.name) ?? null);
    if (q.type === 'multi_label') {
      schema.push(
        { name, repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST', logical_type: { type: 'LIST' } },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', ...STRING, repetition_type: 'REQUIRED' },
      );
      columnData.push({ name, data: values.map((v) => (v === null ? null : [...v])) });
    } else {
      schema.push({ name, ...STRING, repetition_type: 'OPTIONAL' });
      columnData.push({ name, data: values.map((v) => (v === null || v.length !== 1 ? null : (v[0] as string))) });
    }
  }
  schema.push(
    { name: 'reviewers', type: 'INT32', repetition_type: 'REQUIRED' },
    { name: 'adjudicated', type: 'BOOLEAN', repetition_type: 'REQUIRED' },
  );
  columnData.push(
    { name: 'reviewers', data: Int32Array.from(rows.map((r) => r.reviewers)) },
    { name: 'adjudicated', data: rows.map((r) => r.adjudicated) },
  );
  const gold = path.join(out, 'gold.parquet');
  await writeFile(gold, new Uint8Array(parquetWriteBuffer({ columnData, schema })));

  const training: { question: string; file: string; examples: number }[] = [];
  const single = crowd.questions.filter((q) => q.type === 'single_label');
  for (const q of single) {
    const codebookQuestion = codebook?.questions.find((c) => c.name === q.name);
    if (codebook !== undefined && codebookQuestion === undefined)
      throw new RescaleError(
        'CONFIG_INVALID',
        `--codebook ${codebook.source ?? ''} has no question "${q.name}"; pass the codebook the crowd used`,
      );
    const labelList = q.labels.map((l) => l.name).join(', ');
    const prompt =
      codebook !== undefined && codebookQuestion !== undefined
        ? (text: string) => promptMessages(codebook, codebookQuestion, { text })
        : (text: string) => ({
            system: DEFAULT_SYSTEM_PROMPT,
            user: DEFAULT_USER_TEMPLATE.replace('{labels}', labelList).replace('{text}', text),
          });
    const answers = new Map(codebookQuestion?.labels.map((l) => [l.name, l.answer]));
    const answer = (label: string): string => answers.get(label) ?? label;
    const examples = rows.flatMap((r) => {
      const labels = r.labels.get(q.name);
      if (labels === null || labels === undefined || labels.length !== 1) return [];
      return [JSON.stringify(chatExample({ id: r.id, text: r.text, label: labels[0] as string }, prompt, answer))];
    });
    const file = single.length === 1 ? 'train.jsonl' : `train-${q.name}.jsonl`;
    await writeFile(path.join(out, file), examples.length > 0 ? `${examples.join('\n')}\n` : '');
    training.push({ question: q.name, file: path.join(out, file), examples: examples.length });
  }
  return { gold, documents: rows.length, adjudicated: rows.filter((r) => r.adjudicated).length, training };
}
