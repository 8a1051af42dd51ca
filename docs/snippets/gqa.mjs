// Grouped-query attention in a real file: stories260K has 8 query heads and 4 key/value heads.
import { openCheckpoint } from '@rama/checkpoint';

export async function tryIt({ gqaModel }) {
  const ckpt = await openCheckpoint(gqaModel);
  try {
    const { dim, nHeads, nKvHeads, headSize, kvDim, nLayers, seqLen } = ckpt.config;
    const wk = ckpt.tensors.get('layers.0.wk');
    // per sequence: keys and values, every layer and position, f32
    const cacheBytes = (width) => 2 * nLayers * seqLen * width * 4;
    console.log(`dim ${dim}, ${nHeads} query heads, ${nKvHeads} key/value heads of ${headSize}: kvDim ${kvDim}`);
    console.log(`wk is [${wk.shape.join(', ')}]; query head h reads kv head floor(h / ${nHeads / nKvHeads})`);
    console.log(`KV cache per sequence: ${cacheBytes(kvDim)} bytes, against ${cacheBytes(dim)} without GQA`);
    return { config: ckpt.config, wkShape: [...wk.shape], cache: cacheBytes(kvDim), cacheWithout: cacheBytes(dim) };
  } finally {
    await ckpt.close();
  }
}
