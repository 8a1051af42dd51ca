// --against DIR: this checkout's @rama/llama against another built checkout's
// (DIR/packages/llama/dist), both loaded in one process, one generation at a
// time, alternating (which one goes first alternates too). A machine shared
// with other jobs moves tok/s by 10-30% from one minute to the next, and
// between processes; back-to-back generations in one process see nearly the
// same machine, so the paired ratios (this / other, generation by generation)
// show differences of a few percent that separate processes hide.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const PROMPT = 'Once upon a time';

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

async function loadFrom(dir, opts) {
  const entry = join(dir, 'packages', 'llama', 'dist', 'index.js');
  if (!existsSync(entry)) throw new Error(`${entry} not found (run \`pnpm build\` in ${dir})`);
  const { Llama } = await import(pathToFileURL(entry).href);
  return Llama.load(opts);
}

/** One greedy generation of `steps` positions; its decoding tok/s. */
async function generate(llama, steps) {
  const gen = llama.generate(PROMPT, { steps, temperature: 0 });
  for await (const _ of gen) { /* drain */ }
  return (await gen.result()).timing.tokensPerSecond;
}

/**
 * For each model file: `warm` generations each, then `rounds` rounds of one
 * generation per engine. Returns per model the tok/s of both and the median
 * of the paired ratios.
 */
export async function against({ other, here, models, tokenizer, threads, steps, rounds, warm = 2 }) {
  const rows = [];
  for (const { label, format, file } of models) {
    const opts = { model: file, tokenizer, backend: 'cpu', threads };
    const engines = { here: await loadFrom(here, opts), other: await loadFrom(resolve(other), opts) };
    try {
      for (const e of Object.values(engines)) for (let i = 0; i < warm; i++) await generate(e, steps);
      const tok = { here: [], other: [] };
      for (let r = 0; r < rounds; r++) {
        for (const k of r % 2 ? ['other', 'here'] : ['here', 'other']) tok[k].push(await generate(engines[k], steps));
        process.stdout.write(`${r + 1} `);
      }
      process.stdout.write('\n');
      rows.push({ label, format, tok, pairedRatio: median(tok.here.map((t, i) => t / tok.other[i])) });
    } finally {
      for (const e of Object.values(engines)) e.dispose();
    }
  }
  return rows;
}

export function againstTable(rows) {
  const fmt = (x) => x.toFixed(1);
  const lines = [
    '| model | format | other tok/s median (min-max) | this tok/s median (min-max) | this / other (median of pairs) |',
    '|---|---|---:|---:|---:|',
  ];
  for (const r of rows) {
    const span = (xs) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})`;
    lines.push(`| ${r.label} | ${r.format} | ${span(r.tok.other)} | ${span(r.tok.here)} | ${r.pairedRatio.toFixed(3)}x |`);
  }
  return lines.join('\n');
}
