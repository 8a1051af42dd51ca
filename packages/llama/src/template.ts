/**
 * Chat templates: how a conversation's turns become the text a model was
 * trained on. The session renders turn by turn (each turn is appended to the
 * KV cache), so a template says how one user turn reads, and whether it starts
 * with BOS.
 */

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
