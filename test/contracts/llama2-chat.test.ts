// Which codebooks are Llama-2 chat turns, read from the GGUF's own chat template (the fixtures carry Llama-2-chat's and
// Meta-Llama-3-8B-Instruct's), and how that enters the result hash that guards resume.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseCodebook } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import { ggufChatTemplate, isLlama2ChatTemplate, usesLlama2Chat } from '../../contracts/llama2-chat.js';
import { codebookResultHash } from '../../contracts/result-hash.js';
import { CHAT_TEMPLATES } from '../../gguf/fixtures/vocab.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { withTempDir } from '../../scripts/harness/parquet.js';

function codebookOn(modelPath: string, format: 'chat' | 'raw') {
  return parseCodebook(
    {
      task: 'sentiment',
      labels: [{ name: 'negative' }, { name: 'positive' }],
      prompt: { format, template: 'Classify: {text}' },
      model: { path: modelPath },
    },
    { source: 'cb.yaml' },
  );
}

describe('ggufChatTemplate', () => {
  it('reads the chat template from the GGUF metadata, past the vocabulary arrays', async () => {
    assert.equal(await ggufChatTemplate(await fixtureModel('small')), CHAT_TEMPLATES['llama-spm']);
    assert.equal(await ggufChatTemplate(await fixtureModel('keyword')), CHAT_TEMPLATES['llama-bpe']);
  });

  it('gives null for a file that is not a GGUF, or is cut short, leaving the error to the model loader', async () => {
    await withTempDir(async (dir) => {
      const text = path.join(dir, 'm.gguf');
      await writeFile(text, 'not a model');
      assert.equal(await ggufChatTemplate(text), null);
      const cut = path.join(dir, 'cut.gguf');
      const header = Buffer.alloc(24);
      header.writeUInt32LE(0x46554747, 0);
      header.writeUInt32LE(3, 4);
      header.writeBigUInt64LE(0n, 8);
      header.writeBigUInt64LE(5n, 16);
      await writeFile(cut, header);
      assert.equal(await ggufChatTemplate(cut), null);
    });
  });
});

/** A GGUF v3 header and metadata entries written out by hand: `[key, type code, value bytes]`. */
function ggufBytes(entries: readonly (readonly [string, number, Buffer])[]): Buffer {
  const u32 = (n: number): Buffer => Buffer.from(new Uint32Array([n]).buffer);
  const u64 = (n: bigint): Buffer => Buffer.from(new BigUint64Array([n]).buffer);
  const string = (text: string): Buffer => Buffer.concat([u64(BigInt(Buffer.byteLength(text))), Buffer.from(text)]);
  return Buffer.concat([
    u32(0x46554747),
    u32(3),
    u64(0n),
    u64(BigInt(entries.length)),
    ...entries.flatMap(([key, type, value]) => [string(key), u32(type), value]),
  ]);
}

const stringValue = (text: string): Buffer =>
  Buffer.concat([Buffer.from(new BigUint64Array([BigInt(Buffer.byteLength(text))]).buffer), Buffer.from(text)]);
const corruptLength = Buffer.from(new BigUint64Array([1n << 40n]).buffer);

describe('ggufChatTemplate on hand-written metadata', () => {
  it('stops at the key, never reading the metadata after it', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'first.gguf');
      const template = CHAT_TEMPLATES['llama-spm'];
      await writeFile(
        file,
        ggufBytes([
          ['general.name', 8, stringValue('tiny')],
          ['tokenizer.chat_template', 8, stringValue(template)],
          ['tokenizer.ggml.tokens', 8, corruptLength],
        ]),
      );
      assert.equal(await ggufChatTemplate(file), template);
    });
  });

  it('names the file when a string length runs past its end, instead of failing to allocate it', async () => {
    await withTempDir(async (dir) => {
      for (const [name, entries] of [
        ['key.gguf', [['general.name', 8, stringValue('tiny')]]],
        ['value.gguf', [['general.name', 8, corruptLength]]],
        ['template.gguf', [['tokenizer.chat_template', 8, corruptLength]]],
        ['array.gguf', [['tokenizer.ggml.scores', 9, Buffer.concat([Buffer.from([6, 0, 0, 0]), corruptLength])]]],
      ] as const) {
        const file = path.join(dir, name);
        const bytes = ggufBytes(entries);
        // The first entry's key length, corrupted.
        if (name === 'key.gguf') corruptLength.copy(bytes, 24);
        await writeFile(file, bytes);
        await assert.rejects(
          ggufChatTemplate(file),
          (e: unknown) =>
            e instanceof RescaleError &&
            e.code === 'MODEL_INVALID' &&
            e.message.includes(file) &&
            e.message.includes('past the end of the file'),
          name,
        );
      }
    });
  });
});

describe('isLlama2ChatTemplate', () => {
  it('recognises Llama-2-chat’s template, not Llama 3’s nor Mistral’s [INST] template without <<SYS>>', () => {
    assert.equal(isLlama2ChatTemplate(CHAT_TEMPLATES['llama-spm']), true);
    assert.equal(isLlama2ChatTemplate(CHAT_TEMPLATES['llama-bpe']), false);
    const mistral =
      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}" +
      "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}" +
      '{% endfor %}';
    assert.equal(isLlama2ChatTemplate(mistral), false);
    assert.equal(isLlama2ChatTemplate(null), false);
  });
});

describe('usesLlama2Chat and the result hash', () => {
  it('holds for a chat codebook on a Llama-2-chat model only', async () => {
    const small = await fixtureModel('small');
    assert.equal(await usesLlama2Chat(codebookOn(small, 'chat')), true);
    assert.equal(await usesLlama2Chat(codebookOn(small, 'raw')), false);
    assert.equal(await usesLlama2Chat(codebookOn(await fixtureModel('keyword'), 'chat')), false);
  });

  it('changes the hash of Llama-2 chat codebooks, so results of the earlier rendering are not resumed into', () => {
    const codebook = codebookOn('/m.gguf', 'chat');
    const fp = { model: 'm', adapters: [] };
    const before = codebookResultHash(codebook, fp, { sequences: 1 });
    assert.equal(codebookResultHash(codebook, { ...fp, llama2Chat: false }, { sequences: 1 }), before);
    assert.notEqual(codebookResultHash(codebook, { ...fp, llama2Chat: true }, { sequences: 1 }), before);
  });

  it('changes the hash again for the reference answer end: results ending labels with bare EOS not resumed', () => {
    const codebook = codebookOn('/m.gguf', 'chat');
    // This codebook's hash while a label that is a prefix of another ended with EOS straight after the answer.
    const eosAfterAnswer = 'd0c85d83ce310cbdc42fa9bdb8ad9f2ca96acf16d56619b366c65448efb7a604';
    const hash = codebookResultHash(codebook, { model: 'm', adapters: [], llama2Chat: true }, { sequences: 1 });
    assert.notEqual(hash, eosAfterAnswer);
  });
});
