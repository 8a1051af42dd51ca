// The README's example, as an app that installed Rama from npm would write it:
// load the tiny aidreams260K model (copied from @rama/cli's package), generate
// greedily, stream the text, then chat one turn.
import { fileURLToPath } from 'node:url';
import { Llama, RamaError, type GenerationResult } from '@rama/llama';

const model = fileURLToPath(new URL('../models/aidreams260K.bin', import.meta.url));
const tokenizer = fileURLToPath(new URL('../models/tok512-aidreams.bin', import.meta.url));

const llama = await Llama.load({ model, tokenizer, backend: 'cpu', threads: 1 });
try {
  const controller = new AbortController();
  const generation = llama.generate('I dreamed of', { steps: 40, temperature: 0, signal: controller.signal });
  let streamed = '';
  for await (const t of generation) streamed += t.text;
  const result: GenerationResult = await generation.result();
  if (streamed !== result.text) throw new Error('the streamed text differs from result().text');

  let reply = '';
  for await (const t of llama.chat('Tell me a dream', { system: 'You dream.', temperature: 0.8, topp: 0.9, seed: 42 })) reply += t.text;

  console.log(JSON.stringify({ text: result.text, reason: result.reason, tokens: result.tokens, reply }));
} catch (e) {
  if (e instanceof RamaError) console.error(`rama: ${e.message}`);
  throw e;
} finally {
  llama.dispose();
}
