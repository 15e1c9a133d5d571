// The list-grammar set scorer on real GGUF fixture models: set probabilities equal an independent reference that
// scores every ordered list alone, the mass adds up to 1, pruning only moves mass to "unscored", the greedy decode
// follows the argmax, and a group decoded together matches documents decoded alone.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { parseCodebook, type Question } from '../../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { compileLabelListSyntax, type LabelListSyntaxInput } from '../../../contracts/label-list-syntax.js';
import { BatchedDecode } from '../../../worker/engine/batched-decode.js';
import { planContext } from '../../../worker/engine/context-plan.js';
import { LabelSetScorer, type SetScore } from '../../../worker/engine/label-set-scorer.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { SequencePool } from '../../../worker/engine/sequence-pool.js';
import { serialDecode } from '../../../worker/engine/serial-decode.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { referenceListSets, type ReferenceList } from '../../helpers/reference-list-scorer.js';

/** Set probabilities vs the whole-list-in-one-call reference (the batch layout differs; README, "Determinism"). */
const REFERENCE_TOLERANCE = 1e-6;
/** Batched vs serial decoding (batched-decode.test.ts). */
const BATCH_TOLERANCE = 1e-3;

const ANSWERS = ['Social Sciences', 'Law', 'Arts and Humanities'];
const PREFIX = 'Classify the dataset. Return a list of at most 3 subjects.\nDescription:';
const DOCUMENTS = [' Survey of voters and courts in three countries, 1990-2020.', ' Interviews with painters.'];
const CONTEXT = 512;

let model: LlamaModel;
let pool: SequencePool;
const prefix: Token[] = [];

before(async () => {
  const path = await fixtureModel('small');
  model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), path, 0);
  prefix.push(...model.tokenize(PREFIX, false));
  const codebook = parseCodebook(
    {
      task: 'sets',
      labels: [{ name: 'a' }, { name: 'b' }],
      prompt: { template: '{text}' },
      model: { path, max_document_tokens: 64, threads: 2, context_size: CONTEXT, sequences: 3 },
    },
    { source: 'sets.yaml' },
  );
  const plan = planContext(codebook, {
    sharedPrefixTokens: prefix.length,
    templateTokens: 8,
    longestLabelTokens: 32,
    trainContextSize: model.trainContextSize,
  });
  pool = await SequencePool.create(model, codebook.model, plan, prefix);
});
after(async () => {
  await pool.dispose();
  await model.dispose();
});

function scorer(options: LabelListSyntaxInput = {}, answers = ANSWERS): LabelSetScorer {
  const syntax = compileLabelListSyntax({ max_labels: 3, ...options }, answers, 'multi_label', 'sets.yaml');
  return LabelSetScorer.create(model, { answers, syntax, answerPrefix: ' ', end: 'text', field: 'multi_label' });
}

function promptOf(document: string): Token[] {
  return [...prefix, ...model.tokenize(document + '\nSubjects:', false)];
}

async function score(
  setScorer: LabelSetScorer,
  documents: readonly string[],
  decode: 'serial' | 'batched' = 'serial',
): Promise<SetScore[]> {
  const prompts = documents.map(promptOf);
  const starts = await serialDecode.each(prompts, (tokens, slot) => pool.prepare(slot, tokens));
  const group = prompts.map((tokens, slot) => ({ tokens, start: starts[slot] as number }));
  return setScorer.scoreGroup(pool, group, decode === 'serial' ? serialDecode : new BatchedDecode(pool));
}

/** The lists written out by hand (not by the scorer's renderer), in the scorer's enumeration order. */
function referenceLists(maxLabels: number): ReferenceList[] {
  const valid: number[][] = [];
  let level: number[][] = [[]];
  for (let k = 1; k <= maxLabels; k++) {
    level = level.flatMap((l) => ANSWERS.map((_, i) => i).flatMap((i) => (l.includes(i) ? [] : [[...l, i]])));
    valid.push(...level);
  }
  const repeats = valid.filter((l) => l.length < maxLabels).flatMap((l) => l.map((i) => [...l, i]));
  return [...valid, ...repeats].map((labels) => ({
    labels,
    tokens: model.tokenize(` [${labels.map((i) => `'${ANSWERS[i]}'`).join(', ')}]`, false, 'trimLeadingSpace'),
  }));
}

function total(score: SetScore): number {
  let sum = score.unscoredMass + score.invalidMass;
  for (const p of score.sets.values()) sum += p;
  return sum;
}

describe('LabelSetScorer', () => {
  it('gives every set the probability an independent one-list-at-a-time reference gives', async () => {
    const setScorer = scorer({ max_labels: 2, min_branch_mass: 0 });
    const results = await score(setScorer, DOCUMENTS);
    const lists = referenceLists(2);
    let worst = 0;
    // One document: the reference is slow (a fresh sequence per list); the others are checked against this one's path.
    for (const [d, document] of DOCUMENTS.slice(0, 1).entries()) {
      const reference = await referenceListSets(model, promptOf(document), lists, CONTEXT);
      const result = results[d] as SetScore;
      assert.equal(result.sets.size, 3 + 3, 'every set of 1..2 of 3 labels is scored');
      for (const [set, p] of reference.sets) {
        const difference = Math.abs(p - (result.sets.get(set) ?? NaN));
        worst = Math.max(worst, difference);
        assert.ok(difference <= REFERENCE_TOLERANCE, `doc ${d} set {${set}}: ${result.sets.get(set)} vs ${p}`);
      }
      assert.ok(Math.abs(reference.invalid - result.invalidMass) <= REFERENCE_TOLERANCE, `doc ${d} invalid mass`);
      assert.deepEqual(result.greedy, reference.greedy, `doc ${d} greedy`);
      assert.equal(result.unscoredMass, 0);
      const cost = setScorer.trie.exhaustiveCost;
      assert.equal(result.reads, cost.reads, 'an exhaustive walk reads every branch, once');
      assert.equal(result.tokens, promptOf(document).length - prefix.length + cost.positions);
      assert.ok(Math.abs(total(result) - 1) <= 1e-9, `doc ${d}: sets + invalid = ${total(result)}`);
      assert.ok(result.invalidMass > 0, 'lists repeating a label get some mass');
    }
    console.log(`set probabilities vs reference: max |Δp| ${worst.toExponential(2)}`);
  });

  it('derives the top set and the marginals from the set probabilities', async () => {
    const [result] = await score(scorer({ min_branch_mass: 0 }), DOCUMENTS.slice(0, 1));
    const { sets, top, setProbability, marginals } = result as SetScore;
    assert.equal(setProbability, Math.max(...sets.values()));
    assert.equal(sets.get((top ?? []).join(',')), setProbability);
    ANSWERS.forEach((_, label) => {
      let expected = 0;
      for (const [set, p] of sets) if (set.split(',').map(Number).includes(label)) expected += p;
      assert.ok(Math.abs((marginals[label] as number) - expected) < 1e-15, `label ${label}`);
    });
  });

  it('prunes branches below min_branch_mass into the unscored mass, leaving the rest unchanged', async () => {
    const full = await score(scorer({ min_branch_mass: 0 }), DOCUMENTS);
    const pruned = await score(scorer({ min_branch_mass: 0.02 }), DOCUMENTS);
    for (const [d, result] of pruned.entries()) {
      const exact = full[d] as SetScore;
      assert.ok(result.unscoredMass > 0, `doc ${d}: something is pruned at 0.02`);
      assert.ok(result.reads < exact.reads && result.tokens < exact.tokens, `doc ${d}: pruning saves reads`);
      assert.ok(Math.abs(total(result) - 1) <= 1e-9, `doc ${d}: sets + unscored + invalid = ${total(result)}`);
      for (const [set, p] of result.sets)
        assert.ok(p <= (exact.sets.get(set) ?? NaN) + 1e-12, `doc ${d} set {${set}} only loses mass`);
      assert.deepEqual(result.greedy, exact.greedy, `doc ${d}: the greedy path is always expanded`);
    }
  });

  it('gives the same bits every run and matches serial decoding when a group is decoded together', async () => {
    const setScorer = scorer();
    const first = await score(setScorer, DOCUMENTS, 'batched');
    const second = await score(setScorer, DOCUMENTS, 'batched');
    assert.deepEqual(second, first);
    const serial = await score(setScorer, DOCUMENTS, 'serial');
    for (const [d, result] of first.entries()) {
      for (const [set, p] of result.sets) {
        const other = (serial[d] as SetScore).sets.get(set);
        if (other !== undefined) assert.ok(Math.abs(p - other) <= BATCH_TOLERANCE, `doc ${d} set {${set}}`);
      }
    }
  });

  it("builds a codebook question's trie from its answers, list syntax and answer prefix", () => {
    const codebook = parseCodebook(
      {
        task: 'dv',
        questions: [
          {
            name: 'subjects',
            type: 'multi_label',
            labels: ANSWERS.map((answer, i) => ({ name: `s${i}`, answer })),
            multi_label: { format: 'list', max_labels: 2 },
          },
        ],
        prompt: { format: 'raw', template: '{text}', answer_prefix: ' ' },
        model: { path: 'm.gguf' },
      },
      { source: 'dv.yaml' },
    );
    const question = codebook.questions[0] as Question;
    const fromCodebook = LabelSetScorer.forQuestion(model, codebook, question, 0);
    assert.deepEqual(fromCodebook.trie.sequences, scorer({ max_labels: 2 }).trie.sequences);
    assert.deepEqual(
      fromCodebook.trie.sequences[3],
      model.tokenize(" ['Social Sciences', 'Law']", false, 'trimLeadingSpace'),
    );
  });

  it('scores the empty list as the empty set when the grammar allows it', async () => {
    const [result] = await score(scorer({ max_labels: 1, allow_empty: true }), DOCUMENTS.slice(0, 1));
    assert.ok((result?.sets.get('') ?? 0) > 0, 'the empty list has a probability');
    assert.ok(Math.abs(total(result as SetScore) - 1) <= 1e-9);
  });
});
