// What exact set probabilities over a list grammar cost per document: decode positions and distribution reads for
// the paper's Dataverse question (at most 3 of 14 subjects), on a fixture model: pruned walks measured, the exhaustive
// walk counted from the trie (it expands every branch whatever the model, so its cost is the trie's).
// Usage: tsx scripts/bench-label-sets.ts [fixture name, default small] [documents, default 3]

import type { Token } from 'node-llama-cpp';
import { llamaBuildFromEnvironment } from '../contracts/environment.js';
import { compileLabelListSyntax } from '../contracts/label-list-syntax.js';
import { LabelSetScorer } from '../worker/engine/label-set-scorer.js';
import { getRuntime, loadModel } from '../worker/engine/llama-runtime.js';
import { SequencePool } from '../worker/engine/sequence-pool.js';
import { serialDecode } from '../worker/engine/serial-decode.js';
import { fixtureModel, type FixtureName } from './harness/fixture-models.js';

/** The paper's 14 Dataverse subjects, in its prompt's fixed order. */
export const DATAVERSE_SUBJECTS = [
  'Medicine, Health and Life Sciences',
  'Arts and Humanities',
  'Computer and Information Science',
  'Social Sciences',
  'Mathematical Sciences',
  'Physics',
  'Earth and Environmental Sciences',
  'Chemistry',
  'Engineering',
  'Other',
  'Law',
  'Business and Management',
  'Astronomy and Astrophysics',
  'Agricultural Sciences',
];

const DOCUMENTS = [
  'Title: Voting behaviour in European elections\nDescription: Survey data on turnout and party choice, 1979-2019.',
  'Title: Soil carbon under cover crops\nDescription: Field measurements from 40 farms over five seasons.',
  'Title: Spectra of nearby galaxies\nDescription: Calibrated spectra and the code used to reduce them.',
  'Title: Court rulings on data protection\nDescription: Coded decisions of national courts, 2000-2020.',
];

const fixture = (process.argv[2] ?? 'small') as FixtureName;
const count = Number(process.argv[3] ?? 3);
const path = await fixtureModel(fixture);
const model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), path, 0);
const prefix = model.tokenize('[INST] Classify the dataset into subjects.\n', false);
const contextSize = 512;
const pool = await SequencePool.create(
  model,
  { path, adapters: [], contextSize, maxDocumentTokens: 256, threads: 2, gpuLayers: 0, sequences: 1 },
  { contextSize, batchSize: contextSize, threads: 2, sequences: 1, neededContextSize: contextSize, warnings: [] },
  prefix,
);
try {
  const subjects = DATAVERSE_SUBJECTS.map((s) => `'${s}'`).join(', ');
  const instruction = `\nSubjects: [${subjects}]\nPlease return only a json list of at most 3 elements:[/INST]`;
  for (const minBranchMass of [1e-4, 1e-3]) {
    const syntax = compileLabelListSyntax(
      { max_labels: 3, min_branch_mass: minBranchMass },
      DATAVERSE_SUBJECTS,
      'multi_label',
    );
    const scorer = LabelSetScorer.create(model, {
      answers: DATAVERSE_SUBJECTS,
      syntax,
      answerPrefix: ' ',
      end: 'text',
      field: 'multi_label',
    });
    const rows: string[] = [];
    for (const document of DOCUMENTS.slice(0, count)) {
      const tokens: Token[] = [...prefix, ...model.tokenize(document + instruction, false)];
      const start = await pool.prepare(0, tokens);
      const began = performance.now();
      const [score] = await scorer.scoreGroup(pool, [{ tokens, start }], serialDecode);
      const seconds = (performance.now() - began) / 1000;
      if (score === undefined) throw new Error('no score');
      const answer = tokens.length - start;
      rows.push(
        `  prompt tail ${answer} + list ${score.tokens - answer} positions, ${score.reads} reads, ` +
          `${score.sets.size} sets scored, unscored ${score.unscoredMass.toExponential(2)}, ` +
          `invalid ${score.invalidMass.toExponential(2)}, top P ${score.setProbability?.toFixed(4)}, ` +
          `${seconds.toFixed(1)} s`,
      );
    }
    console.log(
      `${fixture}, min_branch_mass ${minBranchMass}: ${scorer.trie.answers.length} lists ` +
        `(${scorer.trie.answers.filter((a) => a.valid).length} valid), ${scorer.trie.branchNodes} branch nodes, ` +
        `longest list ${scorer.longestListTokens} tokens; exhaustive walk (min_branch_mass 0): ` +
        `${scorer.trie.exhaustiveCost.positions} positions, ${scorer.trie.exhaustiveCost.reads} reads`,
    );
    console.log(rows.join('\n'));
  }
} finally {
  await pool.dispose();
  await model.dispose();
}
