// Renders a document into the exact token sequence the model sees: the codebook's template through the model's
// own chat template (or raw), tokenised whole so tokens match what a fine-tuned adapter saw in training.
// It also finds the shared prefix (system prompt, instructions) that the scorer evaluates once and reuses.

import {
  LlamaText,
  SpecialToken,
  SpecialTokensText,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import { CODEBOOK_VARIABLES, parseTemplate, type Codebook, type Question } from '../../contracts/codebook.js';
import { promptVariables } from '../../contracts/prompt-text.js';
import type { DocumentInput } from '../../contracts/document-input.js';

export interface RenderedPrompt {
  readonly tokens: Token[];
  /** The text was cut to max_document_tokens. */
  readonly truncated: boolean;
}

export class PromptBuilder {
  readonly chatWrapperName: string | null;
  /** Tokens every prompt starts with; evaluated once per sequence. */
  readonly sharedPrefix: readonly Token[];

  private constructor(
    private readonly model: LlamaModel,
    private readonly codebook: Codebook,
    private readonly chatWrapper: ChatWrapper | null,
    private readonly codebookVariables: Readonly<Record<string, string>>,
  ) {
    this.chatWrapperName = chatWrapper?.wrapperName ?? null;
    this.sharedPrefix = this.computeSharedPrefix();
  }

  static create(model: LlamaModel, codebook: Codebook, question: Question): PromptBuilder {
    let chatWrapper: ChatWrapper | null = null;
    if (codebook.prompt.format === 'chat') {
      // The model's own chat template (Jinja from the GGUF, or an equivalent specialised wrapper) decides the layout.
      chatWrapper = resolveChatWrapper(model);
    }
    return new PromptBuilder(model, codebook, chatWrapper, promptVariables(question));
  }

  /** Tokens of the full prompt for one document, ending where the answer starts. */
  render(doc: DocumentInput, maxDocumentTokens: number): RenderedPrompt {
    let text = doc.text ?? '';
    let truncated = false;
    const textTokens = this.model.tokenize(text, false, 'trimLeadingSpace');
    if (textTokens.length > maxDocumentTokens) {
      // Cut on a token boundary, then re-render so the kept part tokenises as it does in context.
      text = this.model.detokenize(textTokens.slice(0, maxDocumentTokens), false);
      truncated = true;
    }
    return { tokens: this.promptText({ ...doc, text }).tokenize(this.model.tokenizer), truncated };
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

  private promptText(doc: DocumentInput): LlamaText {
    const { prompt } = this.codebook;
    const system = prompt.system === null ? null : this.fillCodebookVariables(prompt.system);
    if (this.chatWrapper !== null) {
      const history: ChatHistoryItem[] = [];
      if (system !== null) history.push({ type: 'system', text: system });
      history.push({ type: 'user', text: this.userText(doc) });
      history.push({ type: 'model', response: [] });
      return this.chatWrapper.generateContextState({ chatHistory: history }).contextText;
    }
    // Raw: the template's own text may hold special-token text (e.g. "<|im_start|>"); document values never do.
    const values: (string | SpecialToken | SpecialTokensText)[] = [];
    if (this.model.tokens.shouldPrependBosToken) values.push(new SpecialToken('BOS'));
    if (system !== null) values.push(new SpecialTokensText(system));
    for (const part of parseTemplate(prompt.template)) {
      if (part.kind === 'text') values.push(new SpecialTokensText(part.text));
      else if ((CODEBOOK_VARIABLES as readonly string[]).includes(part.name))
        values.push(new SpecialTokensText(this.variable(part.name, doc)));
      else values.push(this.variable(part.name, doc));
    }
    return LlamaText(values);
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
   */
  private computeSharedPrefix(): Token[] {
    const probe = (text: string): Token[] => {
      const columns: Record<string, string> = {};
      for (const name of this.codebook.prompt.variables) columns[name] = text;
      return this.promptText({ text, columns }).tokenize(this.model.tokenizer);
    };
    const a = probe('x');
    const b = probe('Q 7');
    let common = 0;
    while (common < a.length && common < b.length && a[common] === b[common]) common++;
    return a.slice(0, common);
  }
}
