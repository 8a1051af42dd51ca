/**
 * Chat templates: how a conversation's turns become the text a model was
 * trained on. The session renders turn by turn (each turn is appended to the
 * KV cache), so a template says how one user turn reads, and whether it starts
 * with BOS. A model with its own Jinja template (JinjaChatTemplate, below)
 * is instead rendered whole each turn.
 */
import { Template } from '@huggingface/jinja';
import { FormatError } from '@rama/core';
import type { Tokenizer } from '@rama/tokenizer';

/** A turn-by-turn chat format (Llama 2's `[INST]`): the session appends each turn to its cache. */
export interface ChatTemplate {
  /** A name for errors and logs. */
  readonly name: string;
  /**
   * The text of one user turn, up to where the assistant's reply begins.
   * `system` is given on the conversation's first turn only.
   */
  userTurn(message: string, system: string | undefined): string;
  /** Whether each user turn starts with BOS. */
  readonly bosPerTurn: boolean;
  /**
   * The text of an earlier assistant reply given as a message, as the model
   * would have generated it after its user turn.
   */
  assistantTurn(content: string): string;
  /** Whether a reply ends with EOS (the model samples it to end its turn; it is read before the next turn). */
  readonly eosPerReply: boolean;
}

/**
 * Llama 2 chat: `[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{message} [/INST]`
 * on the first turn, `[INST] {message} [/INST]` after; every turn opens with
 * BOS and the assistant's reply ends with EOS (llama2.c's chat loop). A reply
 * is its text as is: encoding it adds sentencepiece's leading space, the one
 * a model's reply after `[/INST]` starts with, so a conversation reads
 * `<s>[INST] u1 [/INST] a1</s><s>[INST] u2 [/INST]`, as the session's own
 * turns do (Meta's reference code also puts a space before `</s>`; a reply
 * the model generates has none, and the two must read alike).
 */
export const LLAMA2_CHAT: ChatTemplate = {
  name: 'llama2',
  bosPerTurn: true,
  eosPerReply: true,
  assistantTurn: (content) => content,
  userTurn: (message, system) =>
    system ? `[INST] <<SYS>>\n${system}\n<</SYS>>\n\n${message} [/INST]` : `[INST] ${message} [/INST]`,
};

/** A message as a Jinja chat template reads it. */
export interface TemplateMessage {
  /** system, user or assistant. */
  role: string;
  /** The message's text. */
  content: string;
}

/** A token whose text in a rendered template stands for the token itself (llama.cpp's parse_special). */
export interface SpecialToken {
  /** Its text, e.g. <|eot_id|>. */
  text: string;
  /** Its id. */
  id: number;
}

/**
 * A model's own chat template (Hugging Face's `chat_template`, Jinja): the
 * whole conversation is rendered each turn, as transformers and llama.cpp
 * do, and the session reads only the tokens its cache does not already hold.
 */
export interface JinjaChatTemplate {
  /** Tells it from a ChatTemplate. */
  readonly name: 'jinja';
  /** The template's text. */
  readonly source: string;
  /** The model file it came from, for errors. */
  readonly origin: string;
  /** The text of BOS, as the template's `bos_token`. */
  readonly bosToken: string;
  /** The text of EOS, as the template's `eos_token`. */
  readonly eosToken: string;
  /**
   * The conversation's text up to where the assistant's reply begins
   * (`add_generation_prompt: true`). A template that fails (its own
   * `raise_exception` included) is a FormatError naming the model file.
   */
  render(messages: readonly TemplateMessage[]): string;
  /**
   * The rendering's token ids, as llama.cpp tokenizes a chat prompt: the
   * text of a special token (BOS, EOS, control and user-defined tokens, such
   * as `<|eot_id|>` or `<|im_start|>`) is that token, longest first, the text
   * between is encoded as plain text (each piece with sentencepiece's dummy
   * prefix, as after a special token in llama.cpp), and the result starts with
   * BOS (the template's own, else one is added) unless `bosId` is undefined
   * (a vocabulary that adds no BOS, such as SmolLM2's or Qwen2's).
   */
  encode(text: string, tokenizer: Pick<Tokenizer, 'encode'>, bosId: number | undefined): number[];
}

/**
 * Compiles a Jinja chat template. A template that does not parse is a
 * FormatError naming `origin` (the model file), thrown when it is rendered
 * (the model still loads and generates; only chat needs the template).
 * Special tokens are matched longest first, as llama.cpp does.
 */
export function jinjaChatTemplate(
  source: string,
  opts: { origin: string; bosToken: string; eosToken: string; specials: readonly SpecialToken[] },
): JinjaChatTemplate {
  const { origin, bosToken, eosToken } = opts;
  let compiled: Template | undefined;
  let parseError: FormatError | undefined;
  try {
    compiled = new Template(source);
  } catch (e) {
    parseError = new FormatError(`${origin}: its chat template (tokenizer.chat_template) does not parse: ${(e as Error).message}`);
  }
  const specials = opts.specials.filter((s) => s.text.length > 0).sort((a, b) => b.text.length - a.text.length);
  return {
    name: 'jinja',
    source,
    origin,
    bosToken,
    eosToken,
    render(messages) {
      if (!compiled) throw parseError!;
      try {
        return compiled.render({
          messages: messages.map((m) => ({ role: m.role, content: m.content })),
          add_generation_prompt: true,
          bos_token: bosToken,
          eos_token: eosToken,
        });
      } catch (e) {
        throw new FormatError(`${origin}: its chat template (tokenizer.chat_template) failed to render: ${(e as Error).message}`);
      }
    },
    encode(text, tokenizer, bosId) {
      const ids: number[] = [];
      for (const part of splitSpecial(text, specials)) {
        if (typeof part === 'number') ids.push(part);
        else ids.push(...tokenizer.encode(part, { bos: false, eos: false }));
      }
      if (bosId !== undefined && ids[0] !== bosId) ids.unshift(bosId);
      return ids;
    },
  };
}

/**
 * Splits text into plain-text pieces and special token ids: each special
 * token in turn, longest first, is cut out of the pieces left (llama.cpp's
 * tokenizer_st_partition).
 */
export function splitSpecial(text: string, specials: readonly SpecialToken[]): (string | number)[] {
  let parts: (string | number)[] = [text];
  for (const s of specials) {
    if (!text.includes(s.text)) continue;
    const next: (string | number)[] = [];
    for (const p of parts) {
      if (typeof p === 'number') {
        next.push(p);
        continue;
      }
      let at = 0;
      for (let j = p.indexOf(s.text); j >= 0; j = p.indexOf(s.text, at)) {
        if (j > at) next.push(p.slice(at, j));
        next.push(s.id);
        at = j + s.text.length;
      }
      if (at < p.length) next.push(p.slice(at));
    }
    parts = next;
  }
  return parts;
}
