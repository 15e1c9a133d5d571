// Renders a document into the exact token sequence the model sees: the codebook's template through the model's
// own chat template (Llama-2's as Meta's reference renders it), or raw, tokenised whole so tokens match what a
// fine-tuned adapter saw in training. It also finds the shared prefix (system prompt, instructions) that the scorer
// evaluates once and reuses.

import {
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaModel,
  type Token,
  type Tokenizer,
} from 'node-llama-cpp';
import { CODEBOOK_VARIABLES, parseTemplate, type Codebook, type Question } from '../../contracts/codebook.js';
import { isLlama2ChatTemplate } from '../../contracts/llama2-chat.js';
import { firstCodePoints, promptVariables } from '../../contracts/prompt-text.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import { sameTokens, startsWithTokens } from './token-sequence.js';

export interface FittedDocument {
  readonly doc: DocumentInput;
  /** The text was cut (truncate "document" or max_document_tokens). */
  readonly truncated: boolean;
}

export interface RenderedPrompt {
  readonly tokens: Token[];
  /** The text was cut to max_document_tokens. */
  readonly truncated: boolean;
}

/**
 * How a chat codebook's prompts are laid out: Meta's reference Llama-2 chat turn, or through a node-llama-cpp chat
 * wrapper (the model's own chat template: Jinja from the GGUF, or an equivalent specialised wrapper).
 */
export type ChatLayout =
  { readonly kind: 'llama2-reference' } | { readonly kind: 'wrapper'; readonly wrapper: ChatWrapper };

/** Text between a Llama-2 chat prompt's "[/INST]" and the answer, as in the reference's `f"{E_INST} {answer}"`. */
export const LLAMA2_ANSWER_PREFIX = ' ';

/** Text Meta's reference puts after a Llama-2 answer, before end of text: `f"{E_INST} {answer} "`. */
export const LLAMA2_ANSWER_SUFFIX = ' ';

/**
 * What follows an answer that stops: end of text (raw), end of turn (a chat wrapper's), or the reference Llama-2
 * reply's " " and end of text.
 */
export type AnswerEnd = 'text' | 'turn' | 'llama2-reference';

/** Whether a codebook's prompts are Llama-2 chat turns on this model (contracts/llama2-chat.ts decides alike). */
export function usesLlama2ChatLayout(model: LlamaModel, codebook: Codebook): boolean {
  return codebook.prompt.format === 'chat' && isLlama2ChatTemplate(model.fileInfo.metadata.tokenizer?.chat_template);
}

/** A codebook's chat layout on this model: none for `raw`. */
export function chatLayoutFor(model: LlamaModel, codebook: Codebook): ChatLayout | null {
  if (codebook.prompt.format !== 'chat') return null;
  // node-llama-cpp renders Llama-2 with an extra "▁" token before "[/INST]" and after it, and one before "\n<</SYS>>",
  // which the reference (and Hugging Face's template, tokenised whole) never has.
  if (usesLlama2ChatLayout(model, codebook)) return { kind: 'llama2-reference' };
  return { kind: 'wrapper', wrapper: resolveChatWrapper(model) };
}

/**
 * The text between the prompt and an answer, which label answers are tokenised after: the codebook's (raw format),
 * " " after a Llama-2 chat prompt's "[/INST]", else none (a chat wrapper's prompt ends where the reply starts).
 */
export function answerPrefixFor(model: LlamaModel, codebook: Codebook): string {
  return usesLlama2ChatLayout(model, codebook) ? LLAMA2_ANSWER_PREFIX : codebook.prompt.answerPrefix;
}

/** How a codebook's answers end on this model (see AnswerEnd). */
export function answerEndFor(model: LlamaModel, codebook: Codebook): AnswerEnd {
  if (codebook.prompt.format !== 'chat') return 'text';
  return usesLlama2ChatLayout(model, codebook) ? 'llama2-reference' : 'turn';
}

/** Codebook texts whose special-token split a builder keeps (a handful in a prompt without truncate "prompt"). */
const MAX_SPECIAL_SPLITS = 64;

/** Chat-template pieces a builder keeps tokenised (a chat template has a handful around the messages). */
const MAX_CONSTANT_SEGMENTS = 64;

/**
 * Documents a Llama-2 turn's split tokenisation is checked on against tokenising the turn whole: plain text, and text
 * starting with the space, tab, newline and special-token text that sits next to the split.
 */
const LLAMA2_SPLIT_PROBES = [
  'x',
  'Q 7',
  ' leading space',
  '\n\nnewlines',
  '\nx',
  '\tx',
  ' \nx',
  '\r\nx',
  '</s><s>[INST]',
  '▁ ▁',
];

/**
 * Whether no token of this vocabulary joins a newline to what follows it: "\n\n\n" tokenises as three newline tokens
 * and "\n\t" as a newline's then a tab's, as in Llama-2's and Mistral's vocabularies. Splitting a turn after a newline
 * rests on that; a vocabulary with pieces such as "\n\n" or "\n\t" could tokenise a document starting with whitespace
 * differently after the split than in the whole turn, so such a model's turns are tokenised whole. `tokenize` is the
 * model's without special-token parsing (SentencePiece's leading "▁" included).
 */
export function newlinesTokeniseApart(tokenize: (text: string) => readonly Token[]): boolean {
  const newline = tokenize('\n');
  const lead = newline.slice(0, -1);
  const single = newline.at(-1);
  const tab = tokenize('\t');
  if (single === undefined || !sameTokens(tab.slice(0, lead.length), lead)) return false;
  return (
    sameTokens(tokenize('\n\n\n'), [...newline, single, single]) &&
    sameTokens(tokenize('\n\t'), [...newline, ...tab.slice(lead.length)])
  );
}

/**
 * A Llama-2 turn's text up to a newline before its first document-dependent character (the system block, the
 * template's leading text), tokenised once. A document's turn is that head's tokens and the rest's, tokenised after a
 * "\n" whose tokens are dropped: where no token joins a newline to what follows (newlinesTokeniseApart), no merge
 * crosses that boundary, so the tokens are those of the whole turn.
 */
interface Llama2TurnSplit {
  readonly head: string;
  readonly headTokens: readonly Token[];
  /** Tokens of "\n" alone, which the rest's tokenisation starts with. */
  readonly newline: readonly Token[];
}

export class PromptBuilder {
  readonly chatWrapperName: string | null;
  private readonly specialSplits = new Map<string, readonly (string | Token)[]>();
  /**
   * The chat template's pieces that are the same for every document (its special-token text, the system prompt, ...),
   * by what the chat wrapper asks the tokenizer: tokenised once instead of for every document and question.
   */
  private readonly constantSegments = new Map<string, readonly Token[]>();
  /** The model's tokenizer, answering the constant pieces from `constantSegments`. */
  private readonly chatTokenizer: Tokenizer;
  /** Tokens every prompt starts with; evaluated once per sequence. */
  readonly sharedPrefix: readonly Token[];
  /** How a Llama-2 turn is tokenised in two parts; null for other layouts, or where splitting would change tokens. */
  private readonly llama2Split: Llama2TurnSplit | null;

  private constructor(
    private readonly model: LlamaModel,
    private readonly codebook: Codebook,
    private readonly chat: ChatLayout | null,
    private readonly codebookVariables: Readonly<Record<string, string>>,
  ) {
    this.chatWrapperName =
      chat === null ? null : chat.kind === 'wrapper' ? chat.wrapper.wrapperName : 'Llama2Chat (Meta reference)';
    this.chatTokenizer = tokenizerWith(model.tokenizer, (text, special, options) => {
      const known = this.constantSegments.get(segmentKey(text, special, options));
      return known !== undefined ? [...known] : model.tokenizer(text as never, special as never, options as never);
    });
    this.llama2Split = chat?.kind === 'llama2-reference' ? this.computeLlama2Split() : null;
    this.sharedPrefix = this.computeSharedPrefix();
  }

  /** Whether a Llama-2 turn's leading constant text is tokenised once for all documents. */
  get llama2HeadTokenised(): boolean {
    return this.llama2Split !== null;
  }

  /** How many chat-template pieces are tokenised once for all documents (0 for a raw prompt). */
  get constantSegmentCount(): number {
    return this.constantSegments.size;
  }

  /** `label`: the prompt of that label of a per_label multi-label question (see promptVariables). */
  static create(
    model: LlamaModel,
    codebook: Codebook,
    question: Question,
    chat: ChatLayout | null = chatLayoutFor(model, codebook),
    label?: number,
  ): PromptBuilder {
    return new PromptBuilder(model, codebook, chat, promptVariables(question, label));
  }

  /** Tokens of the full prompt for one document, ending where the answer starts. */
  render(doc: DocumentInput, maxDocumentTokens: number): RenderedPrompt {
    return this.renderFitted(this.fitDocument(doc, maxDocumentTokens));
  }

  /**
   * The document cut as the codebook says (truncate "document", then max_document_tokens). It depends on the codebook
   * and the model only, so the questions of one codebook fit a document once and share it.
   */
  fitDocument(doc: DocumentInput, maxDocumentTokens: number): FittedDocument {
    const { truncate } = this.codebook.prompt;
    let text = doc.text ?? '';
    let truncated = false;
    if (truncate?.of === 'document') {
      const cut = firstCodePoints(text, truncate.chars);
      truncated = cut.length < text.length;
      text = cut;
    }
    const textTokens = this.model.tokenize(text, false, 'trimLeadingSpace');
    if (textTokens.length > maxDocumentTokens) {
      // Cut on a token boundary, then re-render so the kept part tokenises as it does in context.
      text = this.model.detokenize(textTokens.slice(0, maxDocumentTokens), false);
      truncated = true;
    }
    return { doc: { ...doc, text }, truncated };
  }

  /** The prompt of a document `fitDocument` has cut. */
  renderFitted(fitted: FittedDocument): RenderedPrompt {
    const prompt = this.promptTokens(fitted.doc);
    return { tokens: prompt.tokens, truncated: fitted.truncated || prompt.cut };
  }

  /** The full prompt as text with special tokens shown, for `rescale inspect` and debugging. */
  preview(doc: DocumentInput, maxDocumentTokens: number): string {
    return this.model.detokenize(this.render(doc, maxDocumentTokens).tokens, true);
  }

  private userText(doc: DocumentInput): string {
    let out = '';
    for (const part of parseTemplate(this.codebook.prompt.template)) {
      if (part.kind === 'text') out += part.text;
      else out += this.variable(part.name, doc);
    }
    return out;
  }

  private variable(name: string, doc: DocumentInput): string {
    if (name === 'text') return doc.text ?? '';
    const fromCodebook = this.codebookVariables[name];
    if (fromCodebook !== undefined) return fromCodebook;
    return doc.columns?.[name] ?? '';
  }

  /**
   * The prompt's tokens for a document; `cut` when truncate "prompt" shortened it. A chat prompt is tokenised the way
   * node-llama-cpp tokenises a chat template's text (each piece between special-token texts on its own), through
   * `tokenizer`.
   */
  private promptTokens(
    doc: DocumentInput,
    tokenizer: Tokenizer = this.chatTokenizer,
  ): { tokens: Token[]; cut: boolean } {
    const { prompt } = this.codebook;
    const system = prompt.system === null ? null : this.fillCodebookVariables(prompt.system);
    if (this.chat?.kind === 'llama2-reference') {
      // No special-token text in the turn (Llama-2's "[INST]" and "<<SYS>>" are plain text), so none is parsed in the
      // codebook's text or the document, as node-llama-cpp parses none in chat messages.
      const bos = this.model.tokens.bos;
      const turn = this.llama2TurnTokens(llama2ChatTurn(system, this.userText(doc)));
      return { tokens: bos === null ? turn : [bos, ...turn], cut: false };
    }
    if (this.chat !== null) {
      const history: ChatHistoryItem[] = [];
      if (system !== null) history.push({ type: 'system', text: system });
      history.push({ type: 'user', text: this.userText(doc) });
      history.push({ type: 'model', response: [] });
      const text = this.chat.wrapper.generateContextState({ chatHistory: history }).contextText;
      return { tokens: text.tokenize(tokenizer), cut: false };
    }
    // Raw: the codebook's own text may hold special-token text (e.g. "<s>", "<|im_start|>"); document values never do.
    const parts: RawPart[] = [];
    if (system !== null) parts.push({ text: system, special: true });
    for (const part of parseTemplate(prompt.template)) {
      if (part.kind === 'text') parts.push({ text: part.text, special: true });
      else {
        const special = (CODEBOOK_VARIABLES as readonly string[]).includes(part.name);
        parts.push({ text: this.variable(part.name, doc), special });
      }
    }
    const kept = prompt.truncate?.of === 'prompt' ? cutParts(parts, prompt.truncate.chars) : parts;
    return { tokens: this.rawTokens(kept), cut: kept !== parts };
  }

  /** A Llama-2 turn's tokens, as tokenising it whole gives them. */
  private llama2TurnTokens(turn: string): Token[] {
    const split = this.llama2Split === null ? null : splitTurnTokens(this.model, this.llama2Split, turn);
    return split ?? this.model.tokenize(turn, false);
  }

  /**
   * The split of this builder's Llama-2 turns: the longest text every document's turn starts with, cut after its last
   * newline, kept only when no token joins a newline to what follows (newlinesTokeniseApart) and the probe documents'
   * turns tokenise in two parts exactly as whole. Tokenising the system prompt again for every document and question
   * is what node-llama-cpp's rendering had been spared.
   */
  private computeLlama2Split(): Llama2TurnSplit | null {
    if (!newlinesTokeniseApart((text) => this.model.tokenize(text, false))) return null;
    const { system } = this.codebook.prompt;
    const systemText = system === null ? null : this.fillCodebookVariables(system);
    const turnOf = (text: string): string => {
      const columns: Record<string, string> = {};
      for (const name of this.codebook.prompt.variables) columns[name] = text;
      return llama2ChatTurn(systemText, this.userText({ text, columns }));
    };
    const a = turnOf('x');
    const b = turnOf('Q 7');
    let common = 0;
    while (common < a.length && common < b.length && a[common] === b[common]) common++;
    const end = common === 0 ? -1 : a.lastIndexOf('\n', common - 1);
    if (end < 0) return null;
    const head = a.slice(0, end + 1);
    const split: Llama2TurnSplit = {
      head,
      headTokens: this.model.tokenize(head, false),
      newline: this.model.tokenize('\n', false),
    };
    for (const probe of LLAMA2_SPLIT_PROBES) {
      const turn = turnOf(probe);
      const tokens = splitTurnTokens(this.model, split, turn);
      if (tokens === null || !sameTokens(tokens, this.model.tokenize(turn, false))) return null;
    }
    return split;
  }

  /**
   * Tokenises a raw prompt as llama.cpp tokenises a whole string with special tokens parsed (what llama-cpp-python's
   * completion call does): split at special tokens, each stretch of text between them tokenised whole. Only the
   * codebook's parts are searched for special tokens, so a document is never parsed for them, and a document next to
   * template text tokenises with it as one stretch, as it did in the string an adapter was trained on.
   */
  private rawTokens(parts: readonly RawPart[]): Token[] {
    const tokens: Token[] = [];
    const bos = this.model.tokens.bos;
    if (this.model.tokens.shouldPrependBosToken && bos !== null) tokens.push(bos);
    let stretch = '';
    const flush = (): void => {
      if (stretch !== '') tokens.push(...this.model.tokenize(stretch, false));
      stretch = '';
    };
    for (const part of parts) {
      if (!part.special) {
        stretch += part.text;
        continue;
      }
      for (const piece of this.specialSplit(part.text)) {
        if (typeof piece === 'string') stretch += piece;
        else {
          flush();
          tokens.push(piece);
        }
      }
    }
    flush();
    return tokens;
  }

  /**
   * Codebook text split at its special-token text: the text before each special token, the token, and the rest.
   * Codebook text repeats in every prompt, so the split is kept (tokenising the system prompt again for every
   * document and question was a fifth of a small model's scoring time with 46 questions); a prompt cut by truncate
   * "prompt" leaves a different tail text per document, so only a bounded number of texts are kept.
   */
  private specialSplit(text: string): readonly (string | Token)[] {
    const known = this.specialSplits.get(text);
    if (known !== undefined) return known;
    const pieces: (string | Token)[] = [];
    let rest = text;
    for (const token of this.model.tokenize(text, true)) {
      if (!this.model.isSpecialToken(token)) continue;
      const special = this.model.detokenize([token], true);
      const at = special === '' ? -1 : rest.indexOf(special);
      if (at < 0) continue;
      pieces.push(rest.slice(0, at), token);
      rest = rest.slice(at + special.length);
    }
    pieces.push(rest);
    if (this.specialSplits.size < MAX_SPECIAL_SPLITS) this.specialSplits.set(text, pieces);
    return pieces;
  }

  private fillCodebookVariables(text: string): string {
    return parseTemplate(text)
      .map((part) => (part.kind === 'text' ? part.text : (this.codebookVariables[part.name] ?? '')))
      .join('');
  }

  /**
   * The longest token prefix shared by two documents, found by rendering two probes that differ from their first
   * character. Every prompt is tokenised whole, so a document whose first characters merge with the prefix's last
   * tokens simply shares fewer of them: the sequence pool reuses each prompt's longest common prefix with it.
   * The tokenizer requests both probes make alike are the chat template's constant pieces (anything holding a
   * document's text or columns differs between them); they are kept in `constantSegments`. Tokenising is a pure
   * function of the request, so a kept piece gives exactly what the tokenizer would.
   */
  private computeSharedPrefix(): Token[] {
    const probe = (text: string): { tokens: Token[]; requests: Map<string, Token[]> } => {
      const columns: Record<string, string> = {};
      for (const name of this.codebook.prompt.variables) columns[name] = text;
      const requests = new Map<string, Token[]>();
      const recording = tokenizerWith(this.model.tokenizer, (piece, special, options) => {
        const tokens = this.model.tokenizer(piece as never, special as never, options as never);
        requests.set(segmentKey(piece, special, options), [...tokens]);
        return tokens;
      });
      return { tokens: this.promptTokens({ text, columns }, recording).tokens, requests };
    };
    const { tokens: a, requests } = probe('x');
    const { tokens: b, requests: other } = probe('Q 7');
    for (const [key, tokens] of requests) {
      if (this.constantSegments.size === MAX_CONSTANT_SEGMENTS) break;
      if (other.has(key)) this.constantSegments.set(key, tokens);
    }
    let common = 0;
    while (common < a.length && common < b.length && a[common] === b[common]) common++;
    return a.slice(0, common);
  }
}

/**
 * Meta's reference Llama-2 chat prompt (llama/generation.py, chat_completion): the system prompt folded into the user
 * message, which is stripped, as `f"{B_INST} {content.strip()} {E_INST}"`; tokenised whole after BOS, SentencePiece's
 * leading space included. Hugging Face's Llama-2 chat_template renders the same text.
 */
function llama2ChatTurn(system: string | null, user: string): string {
  const content = system === null ? user : `<<SYS>>\n${system}\n<</SYS>>\n\n${user}`;
  return `[INST] ${pythonStrip(content)} [/INST]`;
}

/**
 * A turn's tokens from its split: the head's, then the rest's tokenised after "\n" (as in the turn, where the head
 * ends with one) with the newline's own tokens dropped. Null when the turn does not start with the head (the strip
 * of an all-whitespace document reached into it) or the newline's tokens merged with the rest.
 */
function splitTurnTokens(model: LlamaModel, split: Llama2TurnSplit, turn: string): Token[] | null {
  if (!turn.startsWith(split.head)) return null;
  const rest = model.tokenize(`\n${turn.slice(split.head.length)}`, false);
  if (!startsWithTokens(rest, split.newline)) return null;
  return [...split.headTokens, ...rest.slice(split.newline.length)];
}

/**
 * Python's str.strip(): its whitespace (str.isspace) and String.prototype.trim's differ in \x1c-\x1f, \x85, \ufeff.
 * Scans from each end: a `\s+$`-style regex retries from every start of a long whitespace run inside the text.
 */
function pythonStrip(text: string): string {
  let start = 0;
  while (start < text.length && isPythonSpace(text.charCodeAt(start))) start++;
  let end = text.length;
  while (end > start && isPythonSpace(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/** Python's str.isspace for one UTF-16 unit (its whitespace is all in the BMP). */
function isPythonSpace(code: number): boolean {
  return (
    (code >= 0x09 && code <= 0x0d) ||
    (code >= 0x1c && code <= 0x20) ||
    code === 0x85 ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000
  );
}

type TokenizeRequest = (text: string, special: boolean | 'builtin' | undefined, options: unknown) => Token[];

/** A tokenizer for LlamaText.tokenize that answers through `tokenize` and is otherwise the model's. */
function tokenizerWith(model: Tokenizer, tokenize: TokenizeRequest): Tokenizer {
  const { detokenize, isSpecialToken, isEogToken } = model;
  return Object.assign(
    (text: string, special?: boolean | 'builtin', options?: unknown): Token[] => tokenize(text, special, options),
    { detokenize, isSpecialToken, isEogToken },
  ) as Tokenizer;
}

function segmentKey(text: string, special: boolean | 'builtin' | undefined, options: unknown): string {
  return `${String(special)}\u0000${String(options)}\u0000${text}`;
}

/** A piece of the raw prompt: template text (special-token text parsed as such) or a value (never parsed). */
interface RawPart {
  readonly text: string;
  readonly special: boolean;
}

/** The parts cut to their first `chars` code points in all; the same array when nothing is cut. */
function cutParts(parts: readonly RawPart[], chars: number): readonly RawPart[] {
  const kept: RawPart[] = [];
  let left = chars;
  for (const part of parts) {
    const text = firstCodePoints(part.text, left);
    if (text !== '') kept.push({ text, special: part.special });
    left -= [...text].length;
    if (text.length < part.text.length) return kept;
  }
  return parts;
}
