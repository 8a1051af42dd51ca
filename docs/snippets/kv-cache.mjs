// Each session has its own KV slot: what the model has read for that sequence.
import { Llama } from '@rama/llama';

export async function tryIt({ model, tokenizer }) {
  const llama = await Llama.load({ model, tokenizer, backend: 'cpu', sessions: 2 });
  try {
    const a = llama.session();
    const b = llama.session();
    // two sequences decoded together, one row each per step, each reading only its own cache
    const [ra, rb] = await Promise.all([
      a.generate('I dreamed of', { steps: 20, temperature: 0 }).result(),
      b.generate('The night', { steps: 20, temperature: 0 }).result(),
    ]);
    console.log(`a's cache holds ${a.tokens.length} positions:`, a.tokens.join(' '));
    console.log(`b's cache holds ${b.tokens.length} positions:`, b.tokens.join(' '));
    const cached = { a: [...a.tokens], b: [...b.tokens] };
    a.reset(); // a new conversation: the slot is empty again
    console.log(`after reset: ${a.tokens.length}`);
    return { ra, rb, cached, afterReset: a.tokens.length };
  } finally {
    llama.dispose();
  }
}
