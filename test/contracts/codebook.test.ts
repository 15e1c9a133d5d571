import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  canonicalJson,
  loadCodebook,
  parseCodebook,
  parseTemplate,
  resolveSequences,
  scoredQuestions,
  singleQuestion,
  templateVariables,
} from '../../contracts/codebook.js';
import { codebookResultHash } from '../../contracts/result-hash.js';
import { RescaleError } from '../../contracts/errors.js';
import { questionLayout } from '../../contracts/question-layout.js';

const minimal = {
  task: 'sentiment',
  labels: [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive', answer: 'pos' }],
  prompt: { template: 'Classify: {text}' },
  model: { path: 'models/m.gguf', adapters: [{ path: 'a.gguf', scale: 0.5 }] },
};

function rejects(raw: unknown, field: RegExp): void {
  assert.throws(
    () => parseCodebook(raw, { source: 'cb.yaml', baseDir: '/data' }),
    (error: unknown) => error instanceof RescaleError && error.code === 'CODEBOOK_INVALID' && field.test(error.message),
  );
}

describe('parseCodebook', () => {
  it('fills defaults and resolves model paths against the codebook directory', () => {
    const cb = parseCodebook(minimal, { source: 'cb.yaml', baseDir: '/data' });
    assert.equal(cb.model.path, '/data/models/m.gguf');
    assert.deepEqual(cb.model.adapters, [{ path: '/data/a.gguf', scale: 0.5 }]);
    assert.equal(cb.prompt.format, 'chat');
    assert.equal(cb.textColumn, 'text');
    assert.equal(cb.idColumn, null);
    assert.equal(cb.model.maxDocumentTokens, 512);
    const question = singleQuestion(cb);
    assert.deepEqual(
      question.labels.map((l) => l.answer),
      ['negative', 'neutral', 'pos'],
    );
  });

  it('names the field of a wrong type', () => {
    rejects(
      { ...minimal, model: { ...minimal.model, adapters: [{ path: 'a.gguf', scale: 'high' }] } },
      /model\.adapters\[0\]\.scale/,
    );
  });

  it('rejects unknown fields so typos do not pass silently', () => {
    rejects({ ...minimal, model: { ...minimal.model, gpu_layer: 3 } }, /gpu_layer/);
  });

  it('requires the {text} variable in the template', () => {
    rejects({ ...minimal, prompt: { template: 'Classify this' } }, /prompt\.template.*\{text\}/);
  });

  it('rejects duplicate labels and duplicate answers', () => {
    rejects({ ...minimal, labels: [{ name: 'a' }, { name: 'a' }] }, /labels\[1\]\.name/);
    rejects(
      {
        ...minimal,
        labels: [
          { name: 'a', answer: 'x' },
          { name: 'b', answer: 'x' },
        ],
      },
      /labels\[1\]\.answer/,
    );
  });

  it('needs either labels or questions', () => {
    const { labels: _labels, ...withoutLabels } = minimal;
    rejects(withoutLabels, /labels/);
  });

  it('accepts a multi-label question without a multi_label section (evaluation), which the engine refuses', () => {
    const cb = parseCodebook(
      {
        ...minimal,
        labels: undefined,
        prompt: { template: '{text}\nAnswer with one of {labels}' },
        questions: [
          { name: 'topic', labels: [{ name: 'health' }, { name: 'economy' }] },
          { name: 'frames', type: 'multi_label', labels: [{ name: 'risk' }, { name: 'blame' }] },
        ],
      },
      { source: 'cb.yaml' },
    );
    assert.equal(cb.questions.length, 2);
    assert.throws(() => singleQuestion(cb), /one single-label question/);
    assert.throws(() => scoredQuestions(cb), /field "questions\[1\]\.multi_label": .*how the model is asked/);
  });

  it('refuses an adapter scale outside -4..4, naming the adapter (1e30 gives flat distributions scored ok)', () => {
    for (const scale of [1e30, -1e30, 4.5, -5]) {
      rejects(
        { ...minimal, model: { ...minimal.model, adapters: [{ path: 'a.gguf', scale }] } },
        /model\.adapters\[0\]\.scale.*between -4 and 4/s,
      );
    }
    for (const scale of [-4, -1, 0, 0.5, 2, 4]) {
      const cb = parseCodebook(
        { ...minimal, model: { ...minimal.model, adapters: [{ path: 'a.gguf', scale }] } },
        { source: 'cb.yaml', baseDir: '/data' },
      );
      assert.equal(cb.model.adapters[0]?.scale, scale);
    }
  });

  it('reads ordered: true on single-label questions (labels ordered as listed), refuses it on multi-label ones', () => {
    const levels = [{ name: 'absent' }, { name: 'low' }, { name: 'medium' }, { name: 'high' }];
    const single = parseCodebook({ ...minimal, ordered: true }, { source: 'cb.yaml' });
    assert.equal(singleQuestion(single).ordered, true);
    assert.equal(singleQuestion(parseCodebook(minimal, { source: 'cb.yaml' })).ordered, false);
    const multi = parseCodebook(
      {
        ...minimal,
        labels: undefined,
        questions: [
          { name: 'hope', labels: levels, ordered: true },
          { name: 'frames', type: 'multi_label', labels: [{ name: 'risk' }, { name: 'blame' }] },
        ],
      },
      { source: 'cb.yaml' },
    );
    assert.deepEqual(
      multi.questions.map((q) => q.ordered),
      [true, false],
    );
    assert.deepEqual(
      multi.questions[0]?.labels.map((l) => l.name),
      ['absent', 'low', 'medium', 'high'],
    );
    rejects(
      {
        ...minimal,
        labels: undefined,
        questions: [{ name: 'frames', type: 'multi_label', labels: levels, ordered: true }],
      },
      /questions\[0\]\.ordered.*multi_label question cannot be ordered/s,
    );
    rejects(
      { ...minimal, labels: undefined, ordered: true, questions: [{ name: 'hope', labels: levels }] },
      /ordered.*on each question/s,
    );
  });

  it('rejects answer_prefix outside raw format', () => {
    rejects({ ...minimal, prompt: { template: '{text}', answer_prefix: ' ' } }, /answer_prefix/);
  });

  it('reads prompt.truncate (characters of the prompt or the document) and names the field of a bad value', () => {
    const raw = { ...minimal, prompt: { format: 'raw', template: '{text}', truncate: { chars: 4096, of: 'prompt' } } };
    const codebook = parseCodebook(raw, { source: 'cb.yaml', baseDir: '/data' });
    assert.deepEqual(codebook.prompt.truncate, { chars: 4096, of: 'prompt' });
    assert.equal(parseCodebook(minimal, { source: 'cb.yaml', baseDir: '/data' }).prompt.truncate, null);
    const truncate = (value: unknown, format = 'raw') => ({
      ...minimal,
      prompt: { format, template: '{text}', truncate: value },
    });
    rejects(truncate({ chars: 0, of: 'prompt' }), /prompt\.truncate\.chars/);
    rejects(truncate({ chars: 10.5, of: 'prompt' }), /prompt\.truncate\.chars/);
    rejects(truncate({ chars: 10, of: 'middle' }), /prompt\.truncate\.of/);
    rejects(truncate({ chars: 10 }), /prompt\.truncate\.of/);
    rejects(truncate({ chars: 10, of: 'prompt', tokens: 3 }), /prompt\.truncate/);
    rejects(truncate({ chars: 10, of: 'prompt' }, 'chat'), /prompt\.truncate\.of.*format "raw"/s);
    assert.equal(parseCodebook(truncate({ chars: 10, of: 'document' }, 'chat')).prompt.truncate?.of, 'document');
  });
});

describe('loadCodebook', () => {
  it('reports the line of a YAML syntax error and the file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rescale-cb-'));
    try {
      const file = path.join(dir, 'bad.yaml');
      await writeFile(file, 'task: x\nlabels: [a, b\nprompt: {template: "{text}"}\n');
      await assert.rejects(
        loadCodebook(file),
        (e: unknown) => e instanceof RescaleError && e.message.includes(file) && /line \d+/.test(e.message),
      );
      await assert.rejects(loadCodebook(path.join(dir, 'missing.yaml')), /cannot read codebook .*missing\.yaml/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('validation messages of a file that is not a codebook', () => {
  // A submitted codebook path may name any file the coordinator can read; its messages go back to the submitter and
  // into the coordinator's log, so they name fields and lines and never echo what the file holds.
  const secrets = ['hunter2', 'x:0:0:root', '/bin/bash', 'sk-proj-0123456789abcdef0123', 'topsecretvalue', 's3cr3t'];
  async function messageFor(text: string): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rescale-cb-'));
    try {
      const file = path.join(dir, 'not-a-codebook');
      await writeFile(file, text);
      const error = await loadCodebook(file).then(
        () => assert.fail('accepted'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof RescaleError && error.code === 'CODEBOOK_INVALID', String(error));
      return error.message;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  function assertNoSecret(message: string): void {
    for (const secret of secrets) assert.ok(!message.includes(secret), `the message echoes "${secret}": ${message}`);
  }

  it('says a password-style file is not a codebook without quoting its lines', async () => {
    const message = await messageFor('root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/bin/bash\n');
    assertNoSecret(message);
    assert.match(message, /is not a codebook: it holds a string/);
  });

  it('names unknown keys by field and line, never their values, and hides keys that are not field names', async () => {
    const message = await messageFor(
      [
        'task: x',
        'password: hunter2',
        'sk-proj-0123456789abcdef0123: 1',
        'labels: [{name: a}, {name: b}]',
        'prompt: {template: "{text}"}',
        'model: {path: m.gguf, gpu_layer: topsecretvalue}',
        'fallback:',
        '  enabled: true',
        '  model: gpt',
        '  price: {input_per_million: 1, output_per_million: 1}',
        '  budget: {usd: 1}',
        '  routing: {confidence_below: 0.5}',
        '  extra_secret: s3cr3t',
        '',
      ].join('\n'),
    );
    assertNoSecret(message);
    assert.match(message, /field "\(top level\)" \(line 2\): unknown key "password"/);
    assert.match(message, /field "\(top level\)" \(line 3\): unknown key of 28 characters \(not shown\)/);
    assert.match(message, /field "model" \(line 6\): unknown key "gpu_layer"/);
  });

  it('names the unknown key of a fallback section by line, never its value', async () => {
    const message = await messageFor(
      [
        'task: x',
        'labels: [{name: a}, {name: b}]',
        'prompt: {template: "{text}"}',
        'model: {path: m.gguf}',
        'fallback:',
        '  enabled: true',
        '  model: gpt',
        '  price: {input_per_million: 1, output_per_million: 1}',
        '  budget: {usd: 1}',
        '  routing: {confidence_below: 0.5}',
        '  extra_secret: s3cr3t',
        '',
      ].join('\n'),
    );
    assertNoSecret(message);
    assert.match(message, /field "fallback" \(line 11\): unknown key "extra_secret"/);
  });

  it('reports a YAML syntax error by line, column and a short escaped excerpt, not the line itself', async () => {
    const message = await messageFor(`token: s3cr3t\nkey: |x${'s3cr3t'.repeat(40)}\n  body\n`);
    assertNoSecret(message);
    assert.match(message, /is not valid YAML at line 2, column \d+ \(/);
    assert.ok(message.length < 400, message);
  });
});

describe('templates', () => {
  it('finds variables in order and keeps escaped braces literal', () => {
    assert.deepEqual(templateVariables('A {{x}} {party}: {text} {party}'), ['party', 'text']);
    assert.deepEqual(parseTemplate('{{json}} {text}!'), [
      { kind: 'text', text: '{json} ' },
      { kind: 'var', name: 'text' },
      { kind: 'text', text: '!' },
    ]);
  });
});

describe('codebookResultHash', () => {
  it('ignores key order and threads but changes with labels, adapter scale, layout and --no-dedupe', () => {
    const base = parseCodebook(minimal, { source: 'cb.yaml', baseDir: '/data' });
    const fp = { model: 'm1', adapters: ['a1'] };
    const h = codebookResultHash(base, fp, { sequences: 1 });
    const reordered = parseCodebook(JSON.parse(canonicalJson(minimal)), { source: 'cb.yaml', baseDir: '/data' });
    assert.equal(codebookResultHash(reordered, fp, { sequences: 1 }), h);
    const threads = parseCodebook(
      { ...minimal, model: { ...minimal.model, threads: 7 } },
      { source: 'cb.yaml', baseDir: '/data' },
    );
    assert.equal(codebookResultHash(threads, fp, { sequences: 1 }), h);
    const scaled = parseCodebook(
      { ...minimal, model: { ...minimal.model, adapters: [{ path: 'a.gguf', scale: 1 }] } },
      { source: 'cb.yaml', baseDir: '/data' },
    );
    assert.notEqual(codebookResultHash(scaled, fp, { sequences: 1 }), h);
    assert.notEqual(codebookResultHash(base, fp, { sequences: 4 }), h);
    assert.notEqual(codebookResultHash(base, { model: 'm2', adapters: ['a1'] }, { sequences: 1 }), h);
    // `ordered` only steers evaluation: results written before it existed keep their hash.
    const ordered = parseCodebook({ ...minimal, ordered: true }, { source: 'cb.yaml', baseDir: '/data' });
    assert.equal(codebookResultHash(ordered, fp, { sequences: 1 }), h);
    // Scoring identical texts once is the default and leaves the hash as it was; --no-dedupe changes it.
    assert.equal(codebookResultHash(base, fp, { sequences: 1, dedupe: true }), h);
    assert.notEqual(codebookResultHash(base, fp, { sequences: 1, dedupe: false }), h);
  });

  it('changes for several questions after the document, whose tails are now decoded together', () => {
    const twoQuestions = (template: string) =>
      parseCodebook(
        {
          task: 't',
          input: { text_column: 'text' },
          questions: [
            { name: 'tone', question: 'What is the tone?', labels: [{ name: 'calm' }, { name: 'angry' }] },
            { name: 'topic', question: 'What is the topic?', labels: [{ name: 'sport' }, { name: 'politics' }] },
          ],
          prompt: { format: 'raw', template },
          model: { path: 'm.gguf' },
        },
        { source: 'cb.yaml', baseDir: '/data' },
      );
    const fp = { model: 'm1', adapters: [] };
    const documentFirst = twoQuestions('Text: {text}\nQuestion: {question}\nAnswer:');
    assert.equal(questionLayout(documentFirst).kind, 'document-first');
    // This codebook's hash while each tail was decoded on its own: those results must not be resumed into.
    const before = '91d8133c78d99033a70cd84ae2cf6c1a7c849ecd21c7f7977c8482d07a76da55';
    assert.notEqual(codebookResultHash(documentFirst, fp, { sequences: 1 }), before);
  });

  it('changes with character truncation, and without it stays what it was before the field existed', () => {
    const base = parseCodebook(minimal, { source: 'cb.yaml', baseDir: '/data' });
    const fp = { model: 'm1', adapters: ['a1'] };
    const h = codebookResultHash(base, fp, { sequences: 1 });
    // The hash of this codebook before prompt.truncate existed: finished results keep resuming and merging.
    assert.equal(h, 'f1394fe1933fcb92c434d713d224454d80ad6507bee12ccab5977e457f749f40');
    const cut = (chars: number, of: 'prompt' | 'document') =>
      codebookResultHash(
        parseCodebook(
          { ...minimal, prompt: { format: 'raw', template: 'Classify: {text}', truncate: { chars, of } } },
          { source: 'cb.yaml', baseDir: '/data' },
        ),
        fp,
        { sequences: 1 },
      );
    const raw = parseCodebook(
      { ...minimal, prompt: { format: 'raw', template: 'Classify: {text}' } },
      { source: 'cb.yaml', baseDir: '/data' },
    );
    const hashes = new Set([codebookResultHash(raw, fp, { sequences: 1 }), cut(4096, 'prompt'), cut(2048, 'prompt')]);
    hashes.add(cut(4096, 'document'));
    assert.equal(hashes.size, 4);
  });
});

describe('resolveSequences', () => {
  const withSequences = (sequences?: number | 'auto') =>
    parseCodebook(
      { ...minimal, model: { ...minimal.model, ...(sequences === undefined ? {} : { sequences }) } },
      { source: 'cb.yaml', baseDir: '/data' },
    );

  it('resolves "auto" (the default) to one sequence, whatever the machine', () => {
    assert.equal(resolveSequences(withSequences()), 1);
    assert.equal(resolveSequences(withSequences('auto')), 1);
  });

  it("keeps the codebook's number, and an override wins over both", () => {
    assert.equal(resolveSequences(withSequences(4)), 4);
    assert.equal(resolveSequences(withSequences(4), 2), 2);
    assert.equal(resolveSequences(withSequences('auto'), 3), 3);
  });
});

describe('parseCodebook with several questions', () => {
  const { labels: _labels, ...base } = minimal;
  const topic = { name: 'topic', question: 'What is the topic?', labels: [{ name: 'health' }, { name: 'economy' }] };
  const tone = { name: 'tone', question: 'What is the tone?', labels: [{ name: 'calm' }, { name: 'angry' }] };
  const multi = (template: string, extra: object = {}): unknown => ({
    ...base,
    questions: [topic, tone],
    prompt: { template },
    ...extra,
  });

  it("reads each question's name, text and labels", () => {
    const cb = parseCodebook(multi('Text: {text}\n{question}'), { source: 'cb.yaml' });
    assert.deepEqual(
      cb.questions.map((q) => [q.name, q.text, q.labels.map((l) => l.name)]),
      [
        ['topic', 'What is the topic?', ['health', 'economy']],
        ['tone', 'What is the tone?', ['calm', 'angry']],
      ],
    );
    assert.equal(singleQuestion(parseCodebook(minimal, { source: 'cb.yaml' })).text, null);
  });

  it('tells a document-first layout from a question-first one', () => {
    const layout = (template: string, system?: string): string =>
      questionLayout(parseCodebook(multi(template, { prompt: { template, system } }), { source: 'cb.yaml' })).kind;
    assert.equal(layout('Text: {text}\n{question} ({labels})'), 'document-first');
    assert.equal(layout('{question}\nText: {text}'), 'question-first');
    assert.equal(layout('Text: {text}\n{question}', 'Answer with one of {labels}.'), 'question-first');
    assert.equal(questionLayout(parseCodebook(minimal, { source: 'cb.yaml' })).kind, 'single');
    const reason = questionLayout(parseCodebook(multi('{question}\n{text}'), { source: 'cb.yaml' })).reason;
    assert.match(reason ?? '', /\{question\} before \{text\}/);
  });

  it('refuses a question without labels, naming it', () => {
    rejects(
      multi('{text} {question}', { questions: [topic, { name: 'tone', question: 'Tone?' }] }),
      /questions\[1\]\.labels/,
    );
    rejects(
      multi('{text} {question}', { questions: [topic, { name: 'tone', question: 'Tone?', labels: [] }] }),
      /questions\[1\]\.labels.*at least two labels/,
    );
  });

  it('refuses two questions of the same name', () => {
    rejects(
      multi('{text} {question}', { questions: [topic, { ...tone, name: 'topic' }] }),
      /"questions\[1\]\.name": question "topic" appears twice/,
    );
  });

  it('refuses question text the template has nowhere to put, naming prompt.template', () => {
    rejects(
      multi('{text} Answer with one of {labels}'),
      /"prompt\.template": questions\[0\] has a "question" text but the template has no \{question\}/,
    );
  });

  it("refuses {question} without every question's text, or without questions", () => {
    const { question: _text, ...untold } = tone;
    rejects(
      multi('{text} {question}', { questions: [topic, untold] }),
      /"questions\[1\]\.question": the template uses \{question\}/,
    );
    rejects({ ...minimal, prompt: { template: '{text} {question}' } }, /"prompt\.template": \{question\} is filled/);
  });

  it('refuses two questions that would be the same: the same prompt and the same answers', () => {
    const { question: _a, ...plainTopic } = topic;
    const plainTone = { name: 'tone', labels: topic.labels };
    rejects(
      multi('Classify: {text}', { questions: [plainTopic, plainTone] }),
      /"prompt\.template": questions\[0\] and questions\[1\] would be the same question/,
    );
  });

  it('takes the fallback with per-question routing, refusing unknown questions, text answers, idle rules', () => {
    const fallback = (extra: object = {}): object => ({
      enabled: true,
      model: 'gpt-test',
      price: { input_per_million: 1, output_per_million: 1 },
      budget: { usd: 1 },
      routing: { confidence_below: 0.6 },
      ...extra,
    });
    const cb = parseCodebook(
      multi('{text} {question}', {
        fallback: fallback({ questions: { tone: { routing: { margin_below: 0.2 } }, topic: { enabled: false } } }),
      }),
      { source: 'cb.yaml' },
    );
    assert.deepEqual(cb.fallback?.questions, {
      tone: {
        confidenceBelow: null,
        marginBelow: 0.2,
        entropyAbove: null,
        labelMassBelow: null,
        unscoredMassAbove: null,
      },
      topic: null,
    });
    rejects(
      multi('{text} {question}', { fallback: fallback({ questions: { mood: { enabled: false } } }) }),
      /field "fallback\.questions\.mood": names no question of the codebook; the questions are topic, tone/,
    );
    rejects(
      multi('{text} {question}', { fallback: fallback({ questions: { tone: {} } }) }),
      /give the question its own "routing" rules, or "enabled: false"/,
    );
    rejects(
      multi('{text} {question}', { fallback: fallback({ response_format: 'text' }) }),
      /field "fallback\.response_format": with several questions .* one JSON object/,
    );
    // Multi-label questions are routed by the rules that read their own columns; one that could never fire is refused.
    const moods = {
      ...tone,
      question: 'Is the tone {label}?',
      type: 'multi_label',
      multi_label: { format: 'per_label' },
    };
    const subjects = { ...tone, type: 'multi_label', multi_label: { format: 'list', max_labels: 2 } };
    const routed = parseCodebook(multi('{text} {question}', { questions: [topic, moods], fallback: fallback() }), {
      source: 'cb.yaml',
    });
    assert.equal(routed.fallback?.routing.confidenceBelow, 0.6);
    rejects(
      multi('{text} {question}', {
        questions: [topic, moods],
        fallback: fallback({ routing: { entropy_above: 0.5 } }),
      }),
      /field "fallback\.routing": questions\[1\] \(tone\) is multi-label and has no entropy/,
    );
    rejects(
      multi('{text} {question}', {
        questions: [topic, moods],
        fallback: fallback({ questions: { tone: { routing: { unscored_mass_above: 0.1 } } } }),
      }),
      /field "fallback\.questions\.tone\.routing\.unscored_mass_above": questions\[1\] \(tone\) is not a list/,
    );
    rejects(
      multi('{text} {question}', {
        questions: [topic, moods],
        fallback: fallback({ routing: { confidence_below: 0.6, unscored_mass_above: 0.1 } }),
      }),
      /field "fallback\.routing\.unscored_mass_above": applies to list multi-label questions/,
    );
    const list = parseCodebook(
      multi('{text} {question}', {
        questions: [topic, subjects],
        fallback: fallback({ routing: { confidence_below: 0.6, unscored_mass_above: 0.1 } }),
      }),
      { source: 'cb.yaml' },
    );
    assert.equal(list.fallback?.routing.unscoredMassAbove, 0.1);
    rejects(
      multi('{text} {question}', { questions: [moods], fallback: fallback({ response_format: 'text' }) }),
      /field "fallback\.response_format": a multi-label question is answered as a JSON list of its labels/,
    );
    rejects(
      { ...minimal, fallback: fallback({ questions: { label: { enabled: false } } }) },
      /field "fallback\.questions\.label": per-question routing is for codebooks with "questions"/,
    );
    parseCodebook(multi('{text} {question}', { fallback: { enabled: false } }), { source: 'cb.yaml' });
  });
});

describe('codebookResultHash with question text', () => {
  const single = {
    task: 'sentiment',
    labels: [{ name: 'negative' }, { name: 'positive' }],
    prompt: { template: 'Classify: {text}' },
    model: { path: '/m.gguf' },
  };
  const fp = { model: 'm', adapters: [] };

  it("keeps a one-question codebook's hash (and so its shard ids) as it was before questions had text", () => {
    // The value this codebook hashed to before `question:` existed; results and shard files are byte-identical too.
    const hash = codebookResultHash(parseCodebook(single, { source: 'cb.yaml' }), fp, { sequences: 1 });
    assert.equal(hash, 'fa1b3e44d55ae6a585f8ae120029b40cc584be5500bc5d8e096032b9a3fea514');
  });

  it("changes with a question's text, which changes its prompt", () => {
    const ask = (question: string): string =>
      codebookResultHash(
        parseCodebook(
          {
            ...single,
            labels: undefined,
            prompt: { template: '{text}\n{question}' },
            questions: [{ name: 'q', question, labels: single.labels }],
          },
          { source: 'cb.yaml' },
        ),
        fp,
        { sequences: 1 },
      );
    assert.notEqual(ask('Is it negative?'), ask('Is it positive?'));
  });
});
