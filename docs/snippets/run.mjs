// Runs one snippet against the project's shared tiny models (../shared, or $RAMA_SHARED):
//   pnpm build && node docs/snippets/run.mjs generate
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const shared = process.env.RAMA_SHARED ? resolve(process.env.RAMA_SHARED) : resolve(here, '../../../shared');
export const sharedPaths = (dir = shared) => ({
  model: resolve(dir, 'models/aidreams260K.bin'),
  tokenizer: resolve(dir, 'models/tok512-aidreams.bin'),
  llama2Tokenizer: resolve(dir, 'models/tokenizer.bin'),
  gguf: resolve(dir, 'gguf/aidreams260K-q8_0.gguf'),
  gqaModel: resolve(dir, 'models/stories260K.bin'),
});

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const name = process.argv[2];
  if (!name) {
    console.error('usage: node docs/snippets/run.mjs <generate|tokenize|embeddings|rmsnorm|attention|rope|gqa|kv-cache|swiglu|sampling|quantize|formats>');
    process.exit(2);
  }
  const { tryIt } = await import(`./${name}.mjs`);
  await tryIt(sharedPaths());
}
