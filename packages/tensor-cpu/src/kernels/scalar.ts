/**
 * Plain TypeScript kernels: the readable reference for every op, written as
 * llama2.c's run.c writes them (f32 results, same loop order where it decides
 * the result). Each works on one row; the backend loops over a step's rows.
 *
 * `f32(...)` (Math.fround) rounds to float32 wherever C would hold a float:
 * JavaScript computes in float64, and without these roundings the logits
 * would drift from llama2.c's in the last bits, and a greedy choice between
 * two near-equal logits could flip. The math of each op: docs/guide/.
 */
import {
  bf16ToF32, dequantizeQ4_0, dequantizeQ4_K, dequantizeQ5_K, dequantizeQ6_K, f16Table,
  kD, kDmin, kMin, kquantInts, kScale, q6_kD, q6_kScale, QK_K, Q4_0_BYTES, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES,
} from '@rama/backend';
import { softmax } from '@rama/core';

const f32 = Math.fround;

// #region rmsnorm
/**
 * RMSNorm: o = weight * (x / sqrt(mean(x^2) + eps)), n values.
 * Unlike LayerNorm it does not subtract the mean: scaling alone keeps the
 * activations in range, for one pass fewer. eps (1e-5) keeps a zero row
 * finite. (docs/guide/rmsnorm.md)
 */
export function rmsnorm(o: Float32Array, oOff: number, x: Float32Array, xOff: number, weight: Float32Array, n: number, eps: number): void {
  let ss = 0;
  for (let j = 0; j < n; j++) ss = f32(ss + f32(x[xOff + j] * x[xOff + j]));
  ss = f32(f32(ss / n) + f32(eps));
  const inv = f32(1 / f32(Math.sqrt(ss)));
  for (let j = 0; j < n; j++) o[oOff + j] = weight[j] * f32(inv * x[xOff + j]);
}
// #endregion rmsnorm

// #region matmul
/**
 * out[i] = sum_j w[i, j] * x[j] for a [d, n] matrix, row-major: W x, one dot
 * product per output. Almost all of a token's arithmetic, and all of its
 * weight reads, are here (docs/guide/batching.md). Accumulated in f64 and
 * rounded once: run.c's -O3 sum order is not reproducible from JavaScript,
 * and the f64 sum is closer to the exact one than any f32 order.
 */
export function matmulF32(out: Float32Array, outOff: number, x: Float32Array, xOff: number, w: Float32Array, n: number, d: number): void {
  for (let i = 0; i < d; i++) {
    const row = i * n;
    let val = 0;
    for (let j = 0; j < n; j++) val += w[row + j] * x[xOff + j];
    out[outOff + i] = val;
  }
}
// #endregion matmul

// #region rope
/**
 * RoPE on one row of `dim` values at position `pos`, head by head: the pair
 * (x[i], x[i+1]) turns by the angle pos * theta^(-j/headSize), j = i mod
 * headSize (even), so pair i/2 of a head turns at frequency theta^(-2i'/headSize).
 * Early pairs turn fast (they tell near positions apart), late ones slowly
 * (far ones). Rotation keeps lengths; q.k of two rotated vectors depends on
 * pos_q - pos_k only. (docs/guide/rope.md)
 */
export function rope(x: Float32Array, off: number, dim: number, headSize: number, pos: number, theta: number, freqFactors?: Float32Array): void {
  for (let i = 0; i < dim; i += 2) {
    const headDim = i % headSize;
    const base = f32(1 / f32(Math.pow(theta, f32(headDim / headSize))));
    // Llama 3.1 slows the low frequencies down by a per-pair factor (long-context rope scaling).
    const freq = freqFactors ? f32(base / freqFactors[headDim / 2]) : base;
    const angle = f32(pos * freq);
    const fcr = f32(Math.cos(angle));
    const fci = f32(Math.sin(angle));
    const v0 = x[off + i];
    const v1 = x[off + i + 1];
    x[off + i] = f32(v0 * fcr) - f32(v1 * fci);
    x[off + i + 1] = f32(v0 * fci) + f32(v1 * fcr);
  }
}
// #endregion rope

// #region attention
/**
 * Attention of one query row over positions 0..last of one layer's cache.
 * `att` is scratch of at least last+1 floats. Per query head h:
 *   score_t = q_h . k_t / sqrt(headSize), t = 0..last (the causal mask:
 *     positions after `last` are never read, as if their score were -inf);
 *   a = softmax(score); out_h = sum_t a_t v_t.
 * Dividing by sqrt(headSize) keeps the scores' spread near 1 whatever the
 * head size (a sum of headSize products grows like sqrt(headSize)), so
 * softmax does not saturate into one-hot. Grouped-query attention: query head
 * h reads key/value head floor(h / (nHeads / nKvHeads)). (docs/guide/attention.md)
 */
export function attention(
  out: Float32Array, outOff: number, q: Float32Array, qOff: number,
  keys: Float32Array, values: Float32Array, layerOff: number,
  last: number, nHeads: number, nKvHeads: number, headSize: number, att: Float32Array,
): void {
  const kvDim = nKvHeads * headSize;
  const kvMul = nHeads / nKvHeads;
  const scale = f32(Math.sqrt(headSize));
  for (let h = 0; h < nHeads; h++) {
    const qh = qOff + h * headSize;
    const kvh = layerOff + Math.floor(h / kvMul) * headSize;
    for (let t = 0; t <= last; t++) {
      const k = kvh + t * kvDim;
      let score = 0;
      for (let i = 0; i < headSize; i++) score = f32(score + f32(q[qh + i] * keys[k + i]));
      att[t] = score / scale;
    }
    softmax(att, last + 1);
    const o = outOff + h * headSize;
    out.fill(0, o, o + headSize);
    for (let t = 0; t <= last; t++) {
      const v = kvh + t * kvDim;
      const a = att[t];
      for (let i = 0; i < headSize; i++) out[o + i] = out[o + i] + f32(a * values[v + i]);
    }
  }
}
// #endregion attention

// #region swiglu
/**
 * SwiGLU's gate: out = silu(gate) * up, silu(g) = g * sigmoid(g) = g / (1 + e^-g).
 * A smooth gate: near 0 it passes little of `up`, for large g almost all.
 * (docs/guide/swiglu.md)
 */
export function swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, off: number, n: number): void {
  for (let i = off; i < off + n; i++) {
    const g = gate[i];
    out[i] = f32(g * f32(1 / f32(1 + f32(Math.exp(-g))))) * up[i];
  }
}
// #endregion swiglu

/** The residual connection: out = a + b, element by element (docs/guide/residual.md). */
export function add(out: Float32Array, a: Float32Array, b: Float32Array, off: number, n: number): void {
  for (let i = off; i < off + n; i++) out[i] = a[i] + b[i];
}

// #region matmul-packed
/**
 * matmulF32 with f16 or bf16 weights: out[i] = sum_j value(w[i, j]) * x[j],
 * where `values` maps the 16 weight bits to their f32 value (f16Table, or
 * bf16's high-half widening). Both widen exactly, so this is the f32 matmul
 * of the widened matrix: the smaller type only halves what is read.
 */
export function matmulHalf(out: Float32Array, outOff: number, x: Float32Array, xOff: number, w: Uint16Array, values: (bits: number) => number, n: number, d: number): void {
  for (let i = 0; i < d; i++) {
    const row = i * n;
    let val = 0;
    for (let j = 0; j < n; j++) val += values(w[row + j]) * x[xOff + j];
    out[outOff + i] = val;
  }
}

/**
 * GGUF's Q4_0 weights (blocks of 32: an f16 scale d, then 16 bytes whose low
 * nibbles are elements 0..15 and high nibbles 16..31, value (nibble - 8) * d)
 * against x quantized to q8_0 in the same blocks of 32 (xq, xs: runq.c's
 * quantize with f32 scales). Per block b, as llama.cpp's vec_dot_q4_0_q8_0:
 *   ival_b = sum_k (nibble_k - 8) * xq_k   (exact, int32)
 * then, as runq.c accumulates its groups:
 *   out[i] = sum_b f32(f32(ival_b * d_b) * xs_b), added in f32, block by block.
 * That is exactly the q8_0 matmul of the same weights converted to q8_0
 * (scale d_b, int8 nibble - 8): Q4_0 runs at its own size with its results.
 */
export function matmulQ40(out: Float32Array, outOff: number, xq: Int8Array, xs: Float32Array, w: Uint8Array, scales: Float32Array, n: number, d: number): void {
  const blocks = n / 32;
  for (let i = 0; i < d; i++) {
    let val = 0;
    for (let b = 0; b < blocks; b++) {
      const at = (i * blocks + b) * 18 + 2;
      const xb = b * 32;
      let ival = 0;
      for (let j = 0; j < 16; j++) {
        const v = w[at + j];
        ival += ((v & 0x0f) - 8) * xq[xb + j] + ((v >> 4) - 8) * xq[xb + j + 16];
      }
      val = f32(val + f32(f32(ival * scales[i * blocks + b]) * xs[b]));
    }
    out[outOff + i] = val;
  }
}

const kq = new Int32Array(QK_K);

/**
 * GGUF's k-quants Q4_K and Q5_K (super-blocks of 256 = 8 sub-blocks of 32;
 * value = d*sc_j*q - dmin*m_j with q in 0..15 resp. 0..31, 6-bit sc_j and
 * m_j, f16 d and dmin) against x quantized to q8_0 in groups of 256 (xq,
 * xs: one f32 scale per super-block). Since
 *   sum_i (d*sc_j*q_i - dmin*m_j) * xq_i = d * sum_j sc_j * sum_i q_i*xq_i - dmin * sum_j m_j * sum_i xq_i,
 * each super-block b needs two exact int32 sums, as llama.cpp's
 * vec_dot_q4_K_q8_K:
 *   isum = sum_j sc_j * (sum over sub-block j of q_i * xq_i)
 *   msum = sum_j m_j  * (sum over sub-block j of xq_i)
 * and then, rounding each step to f32 in this order (so that every backend
 * gives the same bits):
 *   val = val + ((f32(isum) * d) - (f32(msum) * dmin)) * xs_b
 */
export function matmulQ4K(out: Float32Array, outOff: number, xq: Int8Array, xs: Float32Array, w: Uint8Array, n: number, d: number, q5: boolean): void {
  const blocks = n / QK_K;
  const size = q5 ? Q5_K_BYTES : Q4_K_BYTES;
  const dtype = q5 ? 'q5_k' : 'q4_k';
  for (let i = 0; i < d; i++) {
    let val = 0;
    for (let b = 0; b < blocks; b++) {
      const at = (i * blocks + b) * size;
      kquantInts(dtype, w, at, kq);
      const xb = b * QK_K;
      let isum = 0, msum = 0;
      for (let j = 0; j < 8; j++) {
        let dot = 0, sum = 0;
        for (let l = 32 * j; l < 32 * j + 32; l++) {
          dot += kq[l] * xq[xb + l];
          sum += xq[xb + l];
        }
        isum += kScale(w, at, j) * dot;
        msum += kMin(w, at, j) * sum;
      }
      val = f32(val + f32(f32(f32(f32(isum) * kD(w, at)) - f32(f32(msum) * kDmin(w, at))) * xs[b]));
    }
    out[outOff + i] = val;
  }
}

/**
 * GGUF's Q6_K (super-blocks of 256 = 16 sub-blocks of 16; value = d*sc_s*q
 * with q in -32..31, int8 sc_s, f16 d) against x quantized to q8_0 in groups
 * of 256, as llama.cpp's vec_dot_q6_K_q8_K: per super-block b an exact int32
 *   isum = sum_s sc_s * (sum over sub-block s of q_i * xq_i)
 * then, rounded to f32 step by step,
 *   val = val + (f32(isum) * d) * xs_b
 */
export function matmulQ6K(out: Float32Array, outOff: number, xq: Int8Array, xs: Float32Array, w: Uint8Array, n: number, d: number): void {
  const blocks = n / QK_K;
  for (let i = 0; i < d; i++) {
    let val = 0;
    for (let b = 0; b < blocks; b++) {
      const at = (i * blocks + b) * Q6_K_BYTES;
      kquantInts('q6_k', w, at, kq);
      const xb = b * QK_K;
      let isum = 0;
      for (let s = 0; s < 16; s++) {
        let dot = 0;
        for (let l = 16 * s; l < 16 * s + 16; l++) dot += kq[l] * xq[xb + l];
        isum += q6_kScale(w, at, s) * dot;
      }
      val = f32(val + f32(f32(f32(isum) * q6_kD(w, at)) * xs[b]));
    }
    out[outOff + i] = val;
  }
}
// #endregion matmul-packed

/**
 * Row `id` of a packed embedding table (`dim` columns, in its standard
 * layout `bytes`) into out[o..o+dim), each value as the reference decoders
 * of @rama/backend's elements.ts give it (what converting the whole table
 * to f32 at load would give): f16/bf16 widened, q4_0 and the k-quants
 * dequantized block by block as ggml does, q8_0 (llama2.c's: int8 values,
 * then one f32 scale per `groupSize`) as f32(q * scale).
 */
export function embedPackedRow(
  dtype: string, bytes: Uint8Array, id: number, dim: number, out: Float32Array, o: number, groupSize = 0,
): void {
  const row = out.subarray(o, o + dim) as Float32Array<ArrayBuffer>; // the decoders write into it
  // the row's bytes: every layout but q8_0's keeps a row's bytes together
  const rowBytes = (per: number, size: number) => bytes.subarray(id * (dim / per) * size, (id + 1) * (dim / per) * size);
  switch (dtype) {
    case 'f16':
    case 'bf16': {
      const h = new Uint16Array(bytes.buffer, bytes.byteOffset + id * dim * 2, dim);
      const t = f16Table();
      for (let c = 0; c < dim; c++) row[c] = dtype === 'f16' ? t[h[c]] : bf16ToF32(h[c]);
      return;
    }
    case 'q4_0': dequantizeQ4_0(rowBytes(32, Q4_0_BYTES), dim, row); return;
    case 'q4_k': dequantizeQ4_K(rowBytes(QK_K, Q4_K_BYTES), dim, row); return;
    case 'q5_k': dequantizeQ5_K(rowBytes(QK_K, Q5_K_BYTES), dim, row); return;
    case 'q6_k': dequantizeQ6_K(rowBytes(QK_K, Q6_K_BYTES), dim, row); return;
    case 'q8_0': {
      const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const elements = (bytes.byteLength * groupSize) / (groupSize + 4); // values, then a scale per group
      const scales = new DataView(bytes.buffer, bytes.byteOffset + elements);
      for (let c = 0; c < dim; c++) {
        const i = id * dim + c;
        row[c] = q[i] * scales.getFloat32(Math.floor(i / groupSize) * 4, true);
      }
      return;
    }
    default:
      throw new Error(`embedPackedRow: no decoder for ${dtype}`);
  }
}
