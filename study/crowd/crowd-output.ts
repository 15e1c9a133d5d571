// The crowd output folder, the contract `rescale review` reads: its layout, and the writers of documents.parquet,
// proposals.parquet, crowd.json (format rescale-crowd/1) and agreement.json. Everything here but crowd.json's
// created_at is a function of the inputs, so a re-run writes the same bytes.

import path from 'node:path';
import type { SchemaElement } from 'hyparquet';
import type { Codebook } from '../../contracts/codebook.js';
import { utf8Element, utf8ListElements, writeParquetAtomic } from '../../storage/parquet-table.js';
import { writeJsonFile } from '../json-file.js';
import type { QuestionAgreement } from './crowd-agreement.js';
import type { CrowdSample } from './crowd-sample.js';
import type { Proposal } from './proposal.js';

export const CROWD_FORMAT = 'rescale-crowd/1';
export const AGREEMENT_FORMAT = 'rescale-crowd-agreement/1';

export interface CrowdLayout {
  readonly dir: string;
  readonly documents: string;
  readonly proposals: string;
  readonly crowd: string;
  readonly agreement: string;
  /** The sampled rows as text columns: what the local labellers' runs read. */
  readonly sample: string;
  /** The closed labellers' response cache, unless the config names one. */
  readonly fallbackCache: string;
  /** A labeller's own files: a local run's results and manifest, a closed labeller's audit log. */
  labellerDir(name: string): string;
}

export function crowdLayout(dir: string): CrowdLayout {
  const absolute = path.resolve(dir);
  return {
    dir: absolute,
    documents: path.join(absolute, 'documents.parquet'),
    proposals: path.join(absolute, 'proposals.parquet'),
    crowd: path.join(absolute, 'crowd.json'),
    agreement: path.join(absolute, 'agreement.json'),
    sample: path.join(absolute, 'sample.parquet'),
    fallbackCache: path.join(absolute, 'fallback-cache'),
    labellerDir: (name) => path.join(absolute, 'labellers', name),
  };
}

/** The gold column of a question in documents.parquet. */
export function goldColumn(question: string): string {
  return `gold__${question}`;
}

export async function writeDocuments(layout: CrowdLayout, codebook: Codebook, sample: CrowdSample): Promise<void> {
  const gold = codebook.questions.filter((q) => sample.gold.has(q.name));
  if (gold.every((q) => q.type !== 'multi_label')) {
    await writeParquetAtomic(layout.documents, [
      { name: 'id', data: [...sample.ids], type: 'STRING', nullable: false },
      { name: 'text', data: [...sample.texts], type: 'STRING', nullable: true },
      ...gold.map((q) => ({
        name: goldColumn(q.name),
        data: [...(sample.gold.get(q.name) ?? [])],
        type: 'STRING' as const,
        nullable: true,
      })),
    ]);
    return;
  }
  // A multi-label question's truth is a list of label names (null where missing), so the schema is spelled out.
  await writeParquetAtomic(
    layout.documents,
    [
      { name: 'id', data: [...sample.ids] },
      { name: 'text', data: [...sample.texts] },
      ...gold.map((q) => ({ name: goldColumn(q.name), data: [...(sample.gold.get(q.name) ?? [])] })),
    ],
    [
      { name: 'root', num_children: 2 + gold.length },
      utf8Element('id', false),
      utf8Element('text', true),
      ...gold.flatMap((q): SchemaElement[] =>
        q.type === 'multi_label' ? utf8ListElements(goldColumn(q.name), true) : [utf8Element(goldColumn(q.name), true)],
      ),
    ],
  );
}

/** id, labeller, question, labels LIST<STRING>, probability DOUBLE?, error STRING?. */
const PROPOSALS_SCHEMA: readonly SchemaElement[] = [
  { name: 'root', num_children: 6 },
  utf8Element('id', false),
  utf8Element('labeller', false),
  utf8Element('question', false),
  ...utf8ListElements('labels', false),
  { name: 'probability', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
  utf8Element('error', true),
];

export interface LabellerProposals {
  readonly name: string;
  /** Per question (codebook order), one proposal per document (sample order). */
  readonly proposals: readonly (readonly Proposal[])[];
}

/** One row per (document, labeller, question): documents in sample order, then labellers, then questions. */
export async function writeProposals(
  layout: CrowdLayout,
  codebook: Codebook,
  sample: CrowdSample,
  labellers: readonly LabellerProposals[],
): Promise<number> {
  const columns = {
    id: [] as string[],
    labeller: [] as string[],
    question: [] as string[],
    labels: [] as string[][],
    probability: [] as (number | null)[],
    error: [] as (string | null)[],
  };
  sample.ids.forEach((id, d) => {
    for (const labeller of labellers) {
      codebook.questions.forEach((question, q) => {
        const proposal = labeller.proposals[q]?.[d] ?? { labels: [], probability: null, error: 'scoring_failed' };
        columns.id.push(id);
        columns.labeller.push(labeller.name);
        columns.question.push(question.name);
        columns.labels.push([...proposal.labels]);
        columns.probability.push(proposal.probability);
        columns.error.push(proposal.error);
      });
    }
  });
  await writeParquetAtomic(
    layout.proposals,
    Object.entries(columns).map(([name, data]) => ({ name, data })),
    PROPOSALS_SCHEMA,
  );
  return columns.id.length;
}

export interface CrowdDescription {
  readonly codebook: { readonly path: string; readonly sha256: string };
  readonly labellers: readonly Readonly<Record<string, unknown>>[];
  readonly sample: CrowdSample;
  readonly createdAt: string;
}

export async function writeCrowdJson(
  layout: CrowdLayout,
  codebook: Codebook,
  description: CrowdDescription,
): Promise<void> {
  const { sample } = description;
  await writeJsonFile(layout.crowd, {
    format: CROWD_FORMAT,
    codebook: description.codebook,
    questions: codebook.questions.map((q) => ({
      name: q.name,
      type: q.type,
      ...(q.text !== null ? { text: q.text } : {}),
      ordered: q.ordered,
      labels: q.labels.map((l) => ({
        name: l.name,
        ...(l.description !== null ? { description: l.description } : {}),
      })),
    })),
    labellers: description.labellers,
    sample: {
      source: sample.source,
      n: sample.ids.length,
      seed: sample.seed,
      ...(sample.stratifiedBy !== null ? { stratified_by: sample.stratifiedBy } : {}),
    },
    created_at: description.createdAt,
  });
}

export async function writeAgreementJson(layout: CrowdLayout, agreement: readonly QuestionAgreement[]): Promise<void> {
  await writeJsonFile(layout.agreement, {
    format: AGREEMENT_FORMAT,
    questions: agreement.map((a) => ({
      question: a.question,
      labellers: a.labellers,
      documents: a.documents,
      complete_documents: a.completeDocuments,
      fleiss_kappa: a.fleissKappa,
      krippendorff_alpha: a.krippendorffAlpha,
      pairwise_cohen_kappa: a.pairwiseCohenKappa,
      disagreements: a.disagreements,
      errors: a.errors,
      ...(a.perLabelAlpha !== undefined ? { per_label_alpha: a.perLabelAlpha } : {}),
    })),
  });
}
