// Greedy generation with the tiny aidreams260K model (dim 64, 4 layers, 512 tokens).
import { Llama } from '@rama/llama';

export async function tryIt({ model, tokenizer }) {
  const llama = await Llama.load({ model, tokenizer, backend: 'cpu' });
  try {
    // steps counts positions, the prompt's included, as llama2.c's -n does; temperature 0 = argmax
    const gen = llama.generate('I dreamed of', { steps: 100, temperature: 0 });
    for await (const t of gen) process.stdout.write(t.text);
    process.stdout.write('\n');
    const { tokens, text, reason } = await gen.result();
    return { tokens, text, reason };
  } finally {
    llama.dispose();
  }
}
