// The same model in two files: llama2.c's .bin (a fixed header) and GGUF (named, typed metadata).
import { openCheckpoint, openGGUF } from '@rama/checkpoint';

export async function tryIt({ model, gguf }) {
  const bin = await openCheckpoint(model);
  const g = await openGGUF(gguf);
  try {
    console.log(bin.format, bin.config);
    for (const key of ['general.architecture', 'llama.embedding_length', 'llama.block_count', 'llama.attention.head_count']) {
      console.log(key, '=', g.metadata.get(key));
    }
    /** @type {Record<string, string>} */
    const types = {};
    for (const t of g.tensors.values()) types[t.name] = `${t.type.name} [${t.ne.join(', ')}]`;
    console.log(types);
    return { config: bin.config, metadata: g.metadata, types };
  } finally {
    await bin.close();
    await g.close();
  }
}
