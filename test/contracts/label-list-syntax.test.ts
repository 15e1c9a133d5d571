import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RescaleError } from '../../contracts/errors.js';
import { compileLabelListSyntax, renderLabelList } from '../../contracts/label-list-syntax.js';

const ANSWERS = ['Social Sciences', 'Law', 'Arts and Humanities'];

function rejects(input: Parameters<typeof compileLabelListSyntax>[0], field: string, answers = ANSWERS): void {
  assert.throws(
    () => compileLabelListSyntax(input, answers, 'questions[0].multi_label', 'dv.yaml'),
    (error: unknown) =>
      error instanceof RescaleError &&
      error.code === 'CODEBOOK_INVALID' &&
      error.message.startsWith(`dv.yaml: field "questions[0].multi_label.${field}"`),
  );
}

describe('compileLabelListSyntax', () => {
  it("defaults to the paper's Dataverse list: ['A', 'B'], at most 3, no empty list, pruning below 1e-4", () => {
    const syntax = compileLabelListSyntax({}, ANSWERS, 'multi_label');
    assert.deepEqual(
      { ...syntax },
      {
        open: '[',
        separator: ', ',
        close: ']',
        quote: 'single',
        maxLabels: 3,
        allowEmpty: false,
        minBranchMass: 1e-4,
      },
    );
    assert.equal(renderLabelList(syntax, ['Social Sciences', 'Law']), "['Social Sciences', 'Law']");
    assert.ok(Object.isFrozen(syntax));
  });

  it('renders double-quoted and unquoted lists with their own delimiters', () => {
    const double = compileLabelListSyntax({ quote: 'double', max_labels: 2 }, ANSWERS, 'm');
    assert.equal(renderLabelList(double, ['Law', 'Social Sciences']), '["Law", "Social Sciences"]');
    const bare = compileLabelListSyntax({ quote: 'none', open: '{', separator: '; ', close: '}' }, ANSWERS, 'm');
    assert.equal(renderLabelList(bare, ['Law']), '{Law}');
    assert.equal(renderLabelList(bare, []), '{}');
  });

  it('rejects max_labels above the label count or below 1, naming the field', () => {
    rejects({ max_labels: 4 }, 'max_labels');
    rejects({ max_labels: 0 }, 'max_labels');
    rejects({ max_labels: 1.5 }, 'max_labels');
  });

  it('rejects an unknown quote style', () => {
    rejects({ quote: 'backtick' }, 'quote');
  });

  it('rejects a quote inside a quoted label, and a separator or close string inside an unquoted one', () => {
    rejects({ max_labels: 2 }, 'quote', ['Social Sciences', "Children's Law"]);
    rejects({ quote: 'none', separator: ' and ' }, 'separator');
    rejects({ quote: 'none', separator: ' ' }, 'separator');
    rejects({ quote: 'none', close: 's' }, 'close');
  });

  it("lets a quoted label hold the separator, as the paper's 'Medicine, Health and Life Sciences' does", () => {
    const answers = ['Medicine, Health and Life Sciences', 'Law'];
    const syntax = compileLabelListSyntax({ max_labels: 2 }, answers, 'm');
    assert.equal(renderLabelList(syntax, answers), "['Medicine, Health and Life Sciences', 'Law']");
  });

  it('rejects an empty close string, a bound outside [0, 1) and unknown options', () => {
    rejects({ close: '' }, 'close');
    rejects({ min_branch_mass: 1 }, 'min_branch_mass');
    rejects({ min_branch_mass: -0.1 }, 'min_branch_mass');
    rejects({ maximum: 3 } as never, '');
  });
});
