// SentencePiece BPE with byte fallback: Llama 2's 32,000-token vocabulary.
import { Tokenizer } from '@rama/tokenizer';

export async function tryIt({ llama2Tokenizer }) {
  const tok = await Tokenizer.fromFile(llama2Tokenizer);
  const show = (text) => {
    const ids = tok.encode(text); // BOS (id 1) first, as generation feeds it
    const pieces = ids.map((id) => new TextDecoder().decode(tok.piece(id)));
    console.log(JSON.stringify(text), '->', ids.join(' '), ' ', pieces.map((p) => JSON.stringify(p)).join(' '));
    // decode prints each id after the one before it: BOS itself prints nothing
    return { ids, pieces, back: tok.decode(ids) };
  };
  return {
    words: show('I believe the meaning of life is'),
    // no piece for this emoji: its 4 UTF-8 bytes become byte tokens <0xF0> <0x9F> ... (id = byte + 3)
    emoji: show('🦙'),
  };
}
