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
}

/**
 * Llama 2 chat: `[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{message} [/INST]`
 * on the first turn, `[INST] {message} [/INST]` after; every turn opens with
 * BOS and the assistant's reply ends with EOS (llama2.c's chat loop).
 */
export const LLAMA2_CHAT: ChatTemplate = {
  name: 'llama2',
  bosPerTurn: true,
  userTurn: (message, system) =>
    system ? `[INST] <<SYS>>\n${system}\n<</SYS>>\n\n${message} [/INST]` : `[INST] ${message} [/INST]`,
};
