// The embedding table of aidreams260K: one row of 64 numbers per token; which rows lie closest?
import { openCheckpoint } from '@rama/checkpoint';
import { Tokenizer } from '@rama/tokenizer';

export async function tryIt({ model, tokenizer }) {
  const ckpt = await openCheckpoint(model);
  const tok = await Tokenizer.fromFile(tokenizer);
  try {
    const { dim, vocabSize } = ckpt.config;
    const E = /** @type {Float32Array} */ (await ckpt.read('tok_embeddings')); // (vocab, dim), row-major
    const row = (id) => E.subarray(id * dim, (id + 1) * dim);
    const cos = (a, b) => {
      let ab = 0, aa = 0, bb = 0;
      for (let i = 0; i < dim; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
      return ab / Math.sqrt(aa * bb);
    };
    const piece = (id) => JSON.stringify(new TextDecoder().decode(tok.piece(id)));
    const [id] = tok.encode('gentle', { bos: false }); // one piece: " gentle"
    const nearest = [...Array(vocabSize).keys()]
      .filter((j) => j !== id)
      .map((j) => ({ id: j, cos: cos(row(id), row(j)) }))
      .sort((a, b) => b.cos - a.cos)
      .slice(0, 5);
    console.log(`token ${id} ${piece(id)}: x = [${Array.from(row(id).subarray(0, 4), (v) => v.toFixed(3)).join(', ')}, ...] (${dim} numbers)`);
    for (const n of nearest) console.log(`  nearest: ${n.id} ${piece(n.id)} cos ${n.cos.toFixed(3)}`);
    return { id, x: Array.from(row(id)), dim, nearest };
  } finally {
    await ckpt.close();
  }
}
