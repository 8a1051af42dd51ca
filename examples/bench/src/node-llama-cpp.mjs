// pnpm bench --gguf ... --node-llama-cpp DIR: node-llama-cpp (llama.cpp's
// prebuilt binaries behind a Node API) as a third engine beside Rama and
// llama-bench, measured the way Rama is (the same prompt ids, pp128 then
// tg128 in one child process), for users who would run llama.cpp from Node.
//
// DIR is a folder where node-llama-cpp is installed (`npm i
// node-llama-cpp@3.21.1` there): it is not a dependency of the repository
// (hundreds of MB of prebuilt binaries). Its threads are given explicitly
// (maxThreads and the context's threads) and UV_THREADPOOL_SIZE=1: its
// defaults oversubscribe a 2-core machine.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** node-llama-cpp's entry point inside DIR, or an Error saying what is missing. */
export function nodeLlamaCppEntry(dir) {
  const entry = join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
  if (!existsSync(entry)) throw new Error(`--node-llama-cpp: ${entry} not found (run \`npm i node-llama-cpp@3.21.1\` in ${dir})`);
  return entry;
}

/**
 * Child: one node-llama-cpp measurement of `a.model` with the prompt
 * `promptIds(bos, vocabSize)` (token ids, BOS first): a warm-up, pp (the whole
 * prompt in one batch) and tg (BOS, then `genTokens` greedy tokens), printed
 * as one JSON line like Rama's child.
 */
export async function nodeLlamaCppChild(a, promptIds, genTokens, context) {
  const { getLlama } = await import(pathToFileURL(nodeLlamaCppEntry(a.nodeLlamaCpp)).href);
  const t0 = performance.now();
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: a.threads, logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: a.model });
  const prompt = promptIds(model.tokens.bos, model.fileInfo.metadata.tokenizer.ggml.tokens.length);
  const ctx = await model.createContext({ contextSize: context, batchSize: prompt.length, threads: a.threads });
  const loadMs = performance.now() - t0;
  const seq = ctx.getSequence();
  const decode = async (n) => {
    let got = 0;
    for await (const _ of seq.evaluate([prompt[0]], { temperature: 0 })) if (++got >= n) break;
    return got;
  };
  // Warm-up: 32 prompt tokens and a few decode steps.
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 32));
  await seq.clearHistory();
  await decode(2);
  await seq.clearHistory();
  let t = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const ppMs = performance.now() - t;
  await seq.clearHistory();
  // BOS is read, then each yielded token is one decode step: the first comes from BOS's position.
  t = performance.now();
  const tgTokens = await decode(genTokens);
  const tgMs = performance.now() - t;
  const out = {
    ppTokPerSec: (prompt.length / ppMs) * 1000,
    tgTokPerSec: (tgTokens / tgMs) * 1000,
    tgTokens,
    loadMs,
    selfMaxRssMB: process.resourceUsage().maxRSS / 1024,
  };
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
