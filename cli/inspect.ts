// `rescale inspect`: what a corpus holds (files, rows, row groups, columns, a few rows) and, given a codebook,
// the exact prompt the model will see for the first document, with its token counts, and for several questions the
// layout (document evaluated once, or once per question) and what each document costs.

import { loadCodebook, type Question } from '../contracts/codebook.js';
import { questionLayout, type QuestionLayout } from '../contracts/question-layout.js';
import type { Logger } from '../contracts/logger.js';
import type { ShardSpec } from '../contracts/shard.js';
import { resolveCorpus } from '../coordinator/corpus.js';
import { LabelScorer, type DocumentCost } from '../worker/engine/label-scorer.js';
import type { PromptUnit } from '../worker/engine/question-prompts.js';
import { readShardRows, toText } from '../storage/parquet-rows.js';

const SAMPLE_ROWS = 5;
const SAMPLE_CHARS = 100;

export async function inspect(options: { input: readonly string[]; codebook?: string; logger: Logger }): Promise<void> {
  const files = await resolveCorpus(options.input);
  const out = (line = ''): boolean => process.stdout.write(line + '\n');
  const total = files.reduce((n, f) => n + f.rows, 0);
  out(`${files.length} file(s), ${total} rows`);
  for (const file of files) {
    out(`\n${file.path}`);
    out(
      `  ${file.rows} rows in ${file.rowGroups.length} row group(s), ${(file.size / 1e6).toFixed(1)} MB, ` +
        `fingerprint ${file.fingerprint.slice(0, 16)}`,
    );
    out('  columns:');
    for (const c of file.columns)
      out(
        `    ${c.name}: ` +
          `${c.physicalType}${c.logicalType ? ` (${c.logicalType})` : ''}${c.nullable ? ', nullable' : ''}`,
      );
  }
  const first = files[0];
  if (first === undefined || first.rows === 0) return;
  const shard: ShardSpec = {
    id: 'inspect',
    index: 0,
    file: first.path,
    fingerprint: first.fingerprint,
    rowStart: 0,
    rowEnd: Math.min(SAMPLE_ROWS, first.rows),
    corpusRowStart: 0,
  };
  const columns = first.columns.filter((c) => c.physicalType !== 'GROUP').map((c) => c.name);
  out(`\nfirst ${shard.rowEnd} row(s) of ${first.path}:`);
  let firstRow: Record<string, string | null> | null = null;
  for await (const batch of readShardRows(shard, columns)) {
    batch.rows.forEach((_, i) => {
      const row: Record<string, string | null> = {};
      for (const name of columns) row[name] = toText(batch.columns.get(name)?.[i]);
      firstRow ??= row;
      out(`  ${columns.map((name) => `${name}=${JSON.stringify(clip(row[name] ?? null))}`).join('  ')}`);
    });
  }
  if (options.codebook === undefined || firstRow === null) return;
  const codebook = await loadCodebook(options.codebook);
  const row: Record<string, string | null> = firstRow;
  const scorer = await LabelScorer.create(codebook, { logger: options.logger });
  try {
    const doc = { text: row[codebook.textColumn] ?? null, columns: row };
    const { tokens, truncated } = scorer.promptTokens(doc);
    const ofQuestion = scorer.units.length > 1 ? ` of question ${unitName(scorer.questions, scorer.units[0])}` : '';
    out(
      `\nprompt${ofQuestion} for the first row (${tokens.length} tokens, ` +
        `${scorer.settings.sharedPrefixTokens} shared and evaluated once${truncated ? ', text truncated' : ''}; ` +
        `chat template: ${scorer.settings.chatWrapper ?? 'raw'}):`,
    );
    out(scorer.previewPrompt(doc));
    const listLines = (question: Question, tokens: readonly (readonly unknown[])[]): string =>
      `answers scored for ${question.name} (multi-label, one list): the grammar's ${tokens.length} lists of at ` +
      `most ${question.multiLabel?.format === 'list' ? question.multiLabel.list.maxLabels : 0} labels, at most ` +
      `${Math.max(...tokens.map((t) => t.length))} token(s) each`;
    if (scorer.units.length === 1 && scorer.questions[0]?.multiLabel?.format === 'list') {
      out(`\n${listLines(scorer.questions[0], scorer.labelTokens)}`);
      return;
    }
    if (scorer.units.length === 1) {
      out(
        `\nanswers scored: ` +
          `${scorer.labels.map((l, i) => `${l.name} → ${scorer.labelTokens[i]?.length ?? 0} token(s)`).join(', ')}`,
      );
      return;
    }
    const layout = questionLayout(codebook);
    for (const line of layoutLines(
      layout,
      scorer.documentCost(doc),
      scorer.units.map((unit) => unitName(scorer.questions, unit)),
    ))
      out(line);
    scorer.questions.forEach((question, q) => {
      const tokens = scorer.questionLabelTokens[q] ?? [];
      if (question.multiLabel?.format === 'per_label') {
        const { answers, thresholds } = question.multiLabel;
        const asked = question.labels.map((l, i) => `${l.name} (threshold ${thresholds[i] ?? ''})`).join(', ');
        out(
          `answers scored for ${question.name} (multi-label, per label): ${answers.yes} → ${tokens[0]?.length ?? 0} ` +
            `token(s), ${answers.no} → ${tokens[1]?.length ?? 0} token(s), asked for each label: ${asked}`,
        );
        return;
      }
      if (question.multiLabel?.format === 'list') {
        out(listLines(question, tokens));
        return;
      }
      const answers = question.labels.map((l, i) => `${l.name} → ${tokens[i]?.length ?? 0} token(s)`).join(', ');
      out(`answers scored for ${question.name}: ${answers}`);
    });
  } finally {
    await scorer.dispose();
  }
}

/** A prompt's name: its question's, with the label for a per_label multi-label question (`moods[cheer]`). */
function unitName(questions: readonly Question[], unit: PromptUnit | undefined): string {
  const question = questions[unit?.question ?? 0];
  const label = unit?.label === null || unit?.label === undefined ? null : question?.labels[unit.label]?.name;
  return label === null || label === undefined ? (question?.name ?? '') : `${question?.name ?? ''}[${label}]`;
}

/**
 * The layout of a codebook with several prompts per document (questions, or a per_label question's labels) and the
 * first row's cost in tokens, in words; `names` names each prompt.
 */
export function layoutLines(layout: QuestionLayout, cost: DocumentCost, names: readonly string[]): string[] {
  const k = names.length;
  const what =
    layout.prompts === layout.questions
      ? `${k} questions`
      : `${layout.questions} question(s) asked in ${k} prompts (a per_label question asks each label)`;
  const tails = cost.tails.reduce((a, b) => a + b, 0);
  const together = cost.document + tails;
  const separate = cost.prompts.reduce((a, p) => a + p - cost.sharedPrefix, 0);
  const perTail = names.map((name, q) => `${name} ${cost.tails[q] ?? 0}`).join(', ');
  const lines = [
    '',
    `layout: ${what}, ${layout.kind === 'document-first' ? 'document first' : 'question first'}`,
    `tokens for the first row: shared prefix ${cost.sharedPrefix} (evaluated once per sequence), document part ` +
      `${cost.document} (evaluated once), question tails ${perTail} (Σ ${tails}); ${together} per document plus ` +
      'the label paths',
  ];
  if (layout.kind === 'document-first') {
    lines.push(
      `the document is evaluated once and each question's tail is decoded after it: ${together} tokens instead of ` +
        `${separate} for ${k} separate prompts`,
    );
  } else {
    lines.push(
      `warning: ${layout.reason ?? 'a question comes before the document'}, so each question is a prompt of its own ` +
        `and every document is evaluated ${k}× (${together} tokens per document). Put {question}, {labels} and ` +
        '{label_descriptions} after the document variables (and out of prompt.system) to evaluate each document ' +
        'once; the adapters must then be trained on that prompt layout (rescale sample --codebook writes ' +
        "training sets with the codebook's prompt, one codebook per question).",
    );
  }
  return lines;
}

function clip(text: string | null): string | null {
  if (text === null || text.length <= SAMPLE_CHARS) return text;
  return `${text.slice(0, SAMPLE_CHARS)}… (${text.length} chars)`;
}
