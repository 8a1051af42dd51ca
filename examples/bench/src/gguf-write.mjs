#!/usr/bin/env node
// Writes an F16 GGUF file from a llama2.c checkpoint, one tensor at a time, so
// a model larger than memory (Llama-2-7B: 27 GB in fp32) converts in a few
// hundred MB. llama.cpp's convert-llama2c-to-ggml holds the whole checkpoint in
// memory twice; this is what pnpm bench --gguf uses for the 7B shape, and its
// output is what llama-quantize takes to make the other types.
//
//   node src/gguf-write.mjs --checkpoint CKPT.bin --vocab-from VOCAB.gguf --out OUT.gguf [--context N]
//
// CKPT.bin: llama2.c v0 (fp32, 7-int header), v1 (fp32, 'ak42' header) or v2
// (q8_0: int8 groups and fp32 scales; values are dequantized, q x scale in f32).
// VOCAB.gguf: a GGUF file with the same vocabulary (e.g. one written by
// llama.cpp's convert-llama2c-to-ggml from tokenizer.bin): its tokenizer.*
// metadata is copied as it is. --context: llama.context_length (default the
// checkpoint's seq_len).
//
// The file holds what llama.cpp's converter writes: matrices F16 (its [out, in]
// rows as they are: GGUF lists the dimensions innermost first, [in, out]), norms
// F32, `output.weight` always (a copy of the embedding when the checkpoint
// shares it), RoPE over the whole head, RMSNorm epsilon 1e-5.
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { basename } from 'node:path';

const GGUF_VERSION = 3;
const ALIGNMENT = 32;
/** GGUF metadata value types (gguf.md). */
const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 };
const SCALAR_BYTES = { [T.U8]: 1, [T.I8]: 1, [T.U16]: 2, [T.I16]: 2, [T.U32]: 4, [T.I32]: 4, [T.F32]: 4, [T.BOOL]: 1, [T.U64]: 8, [T.I64]: 8, [T.F64]: 8 };
/** ggml tensor types written here. */
const GGML_F32 = 0;
const GGML_F16 = 1;
/** general.file_type: LLAMA_FTYPE_MOSTLY_F16. */
const FTYPE_MOSTLY_F16 = 1;
/** Elements converted per read: a multiple of every q8_0 group size. */
const CHUNK = 1 << 22;

function die(msg) {
  console.error(`gguf-write: ${msg}`);
  process.exit(2);
}

function parseArgs(argv) {
  const a = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i] ?? die(`${k} needs a value`);
    if (k === '--checkpoint') a.checkpoint = v();
    else if (k === '--vocab-from') a.vocabFrom = v();
    else if (k === '--out') a.out = v();
    else if (k === '--context') a.context = Number(v());
    else die(`unknown argument ${k}`);
  }
  for (const k of ['checkpoint', 'vocabFrom', 'out']) if (!a[k]) die(`missing --${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  if (a.context !== undefined && !(Number.isInteger(a.context) && a.context > 0)) die('--context must be a positive integer');
  return a;
}

/**
 * The checkpoint's header and where each tensor lies in it. Tensors are listed
 * as { name (GGUF's), rows, cols, offset, q80 } with rows x cols values; a q8_0
 * tensor is rows x cols int8 at `offset`, then its fp32 scales (one per group).
 */
function readCheckpoint(fd) {
  const head = Buffer.alloc(256);
  readSync(fd, head, 0, 256, 0);
  let cfg;
  let pos;
  let version;
  let shared;
  let gs = 0;
  if (head.readUInt32LE(0) === 0x616b3432) {
    version = head.readInt32LE(4);
    if (version !== 1 && version !== 2) die(`checkpoint version ${version} is not 1 (fp32) or 2 (q8_0)`);
    cfg = Array.from({ length: 7 }, (_, i) => head.readInt32LE(8 + 4 * i));
    shared = head[36] === 1;
    if (version === 2) gs = head.readInt32LE(37);
    pos = 256;
  } else {
    version = 0;
    cfg = Array.from({ length: 7 }, (_, i) => head.readInt32LE(4 * i));
    shared = cfg[5] > 0;
    cfg[5] = Math.abs(cfg[5]);
    pos = 28;
  }
  const [dim, hidden, layers, heads, kvHeads, vocab, seq] = cfg;
  if (!(dim > 0 && hidden > 0 && layers > 0 && heads > 0 && kvHeads > 0 && vocab > 0 && seq > 0) || dim % heads) {
    die(`not a llama2.c checkpoint (header ${cfg.join(', ')})`);
  }
  const hs = dim / heads;
  const kvDim = kvHeads * hs;
  const tensors = [];
  // One llama2.c array: `count` tensors of rows x cols, stored one after the other (per layer for layered ones).
  const take = (names, rows, cols, q80 = false) => {
    for (const name of names) {
      tensors.push({ name, rows, cols, offset: pos, q80 });
      pos += q80 ? rows * cols + (rows * cols / gs) * 4 : rows * cols * 4;
    }
  };
  const per = (f) => Array.from({ length: layers }, (_, l) => f(l));
  const norms = () => {
    take(per((l) => `blk.${l}.attn_norm.weight`), 1, dim);
    take(per((l) => `blk.${l}.ffn_norm.weight`), 1, dim);
    take(['output_norm.weight'], 1, dim);
  };
  const matrices = (q80) => {
    take(['token_embd.weight'], vocab, dim, q80);
    take(per((l) => `blk.${l}.attn_q.weight`), dim, dim, q80);
    take(per((l) => `blk.${l}.attn_k.weight`), kvDim, dim, q80);
    take(per((l) => `blk.${l}.attn_v.weight`), kvDim, dim, q80);
    take(per((l) => `blk.${l}.attn_output.weight`), dim, dim, q80);
  };
  const ffn = (q80) => {
    take(per((l) => `blk.${l}.ffn_gate.weight`), hidden, dim, q80);
    take(per((l) => `blk.${l}.ffn_down.weight`), dim, hidden, q80);
    take(per((l) => `blk.${l}.ffn_up.weight`), hidden, dim, q80);
  };
  if (version === 0) {
    // v0: embedding, attention norms, q, k, v, o, ffn norms, w1, w2, w3, final norm, RoPE tables, classifier.
    take(['token_embd.weight'], vocab, dim);
    take(per((l) => `blk.${l}.attn_norm.weight`), 1, dim);
    take(per((l) => `blk.${l}.attn_q.weight`), dim, dim);
    take(per((l) => `blk.${l}.attn_k.weight`), kvDim, dim);
    take(per((l) => `blk.${l}.attn_v.weight`), kvDim, dim);
    take(per((l) => `blk.${l}.attn_output.weight`), dim, dim);
    take(per((l) => `blk.${l}.ffn_norm.weight`), 1, dim);
    ffn(false);
    take(['output_norm.weight'], 1, dim);
    pos += seq * hs * 4; // freq_cis_real and freq_cis_imag, seq x hs/2 each: unused
    if (!shared) take(['output.weight'], vocab, dim);
  } else {
    // v1 and v2: the norms first (fp32), then the matrices (q8_0 in v2), the classifier last.
    norms();
    matrices(version === 2);
    ffn(version === 2);
    if (!shared) take(['output.weight'], vocab, dim, version === 2);
  }
  if (shared) tensors.push({ ...tensors.find((t) => t.name === 'token_embd.weight'), name: 'output.weight' });
  return { version, dim, hidden, layers, heads, kvHeads, vocab, seq, gs, tensors, end: pos };
}

/**
 * f32 to f16, rounding to nearest, ties to even (what F16C's vcvtps2ph does,
 * and so what llama.cpp writes on x86): the f32's 23 mantissa bits keep their
 * top 10, the 13 dropped decide the rounding; a carry into the exponent is
 * the correct next power of two. Subnormal results shift the mantissa (with
 * its implicit 1) further; overflow gives infinity.
 */
function f32ToF16(src, dst) {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    const e = exp - 127 + 15;
    let h;
    if (exp === 0xff) h = sign | 0x7c00 | (mant ? 0x200 : 0);
    else if (e >= 31) h = sign | 0x7c00;
    else if (e <= 0) {
      if (e < -10) h = sign;
      else {
        const m = mant | 0x800000;
        const shift = 14 - e;
        h = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const halfway = 1 << (shift - 1);
        if (rem > halfway || (rem === halfway && h & 1)) h++;
        h |= sign;
      }
    } else {
      h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
      h |= sign;
    }
    dst[i] = h;
  }
}

/** Raw bytes of every `tokenizer.*` metadata entry of a GGUF file, and the vocabulary's size. */
function tokenizerEntries(path) {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  const buf = Buffer.alloc(Math.min(size, 256 * 2 ** 20)); // metadata comes first; 256 MiB holds any vocabulary
  readSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
  if (buf.toString('latin1', 0, 4) !== 'GGUF') die(`${path} is not a GGUF file`);
  let p = 8;
  p += 8; // tensor count
  const kvCount = Number(buf.readBigUInt64LE(p));
  p += 8;
  const str = () => {
    const n = Number(buf.readBigUInt64LE(p));
    const s = buf.toString('utf8', p + 8, p + 8 + n);
    p += 8 + n;
    return s;
  };
  const skip = (type) => {
    if (type === T.STRING) str();
    else if (type === T.ARRAY) {
      const et = buf.readUInt32LE(p);
      const n = Number(buf.readBigUInt64LE(p + 4));
      p += 12;
      if (et === T.STRING || et === T.ARRAY) for (let i = 0; i < n; i++) skip(et);
      else p += n * (SCALAR_BYTES[et] ?? die(`${path}: unknown array type ${et}`));
    } else p += SCALAR_BYTES[type] ?? die(`${path}: unknown value type ${type}`);
  };
  const out = [];
  let vocab;
  for (let i = 0; i < kvCount; i++) {
    const start = p;
    const key = str();
    const type = buf.readUInt32LE(p);
    p += 4;
    if (key === 'tokenizer.ggml.tokens') vocab = Number(buf.readBigUInt64LE(p + 4));
    skip(type);
    if (key.startsWith('tokenizer.')) out.push({ key, bytes: buf.subarray(start, p) });
  }
  if (vocab === undefined) die(`${path} has no tokenizer.ggml.tokens`);
  return { entries: out, vocab };
}

/** GGUF encoding of one metadata entry (key, type, value). */
function kv(key, type, value) {
  const k = Buffer.from(key, 'utf8');
  const head = Buffer.alloc(8 + k.length + 4);
  head.writeBigUInt64LE(BigInt(k.length), 0);
  k.copy(head, 8);
  head.writeUInt32LE(type, 8 + k.length);
  let v;
  if (type === T.STRING) {
    const s = Buffer.from(value, 'utf8');
    v = Buffer.alloc(8 + s.length);
    v.writeBigUInt64LE(BigInt(s.length), 0);
    s.copy(v, 8);
  } else if (type === T.U32) (v = Buffer.alloc(4)).writeUInt32LE(value, 0);
  else if (type === T.F32) (v = Buffer.alloc(4)).writeFloatLE(value, 0);
  else throw new Error(`kv: type ${type} not written here`);
  return Buffer.concat([head, v]);
}

const align = (n) => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

function main() {
  const a = parseArgs(process.argv.slice(2));
  const src = openSync(a.checkpoint, 'r');
  const ck = readCheckpoint(src);
  if (ck.end > fstatSync(src).size) die(`${a.checkpoint} is ${fstatSync(src).size} bytes, its header says at least ${ck.end}`);
  const tok = tokenizerEntries(a.vocabFrom);
  if (tok.vocab !== ck.vocab) die(`${a.vocabFrom} has ${tok.vocab} tokens, the checkpoint ${ck.vocab}`);

  const meta = [
    kv('general.architecture', T.STRING, 'llama'),
    kv('general.name', T.STRING, basename(a.checkpoint).replace(/\.bin$/, '')),
    kv('general.file_type', T.U32, FTYPE_MOSTLY_F16),
    kv('llama.context_length', T.U32, a.context ?? ck.seq),
    kv('llama.embedding_length', T.U32, ck.dim),
    kv('llama.feed_forward_length', T.U32, ck.hidden),
    kv('llama.block_count', T.U32, ck.layers),
    kv('llama.attention.head_count', T.U32, ck.heads),
    kv('llama.attention.head_count_kv', T.U32, ck.kvHeads),
    kv('llama.rope.dimension_count', T.U32, ck.dim / ck.heads),
    kv('llama.attention.layer_norm_rms_epsilon', T.F32, 1e-5),
    ...tok.entries.map((e) => e.bytes),
  ];
  // GGUF's order: the embedding, the output norm and classifier, then layer by layer.
  const order = (t) => (t.name === 'token_embd.weight' ? [-3, 0] : t.name === 'output_norm.weight' ? [-2, 0] : t.name === 'output.weight' ? [-1, 0]
    : [Number(/^blk\.(\d+)\./.exec(t.name)[1]), ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_down', 'ffn_up'].indexOf(t.name.split('.')[2])]);
  const tensors = [...ck.tensors].sort((x, y) => order(x)[0] - order(y)[0] || order(x)[1] - order(y)[1]);
  let dataOffset = 0;
  const infos = tensors.map((t) => {
    t.type = t.rows === 1 ? GGML_F32 : GGML_F16;
    t.bytes = t.rows * t.cols * (t.type === GGML_F32 ? 4 : 2);
    t.dataOffset = dataOffset;
    dataOffset = align(dataOffset + t.bytes);
    const name = Buffer.from(t.name, 'utf8');
    const dims = t.rows === 1 ? [t.cols] : [t.cols, t.rows];
    const b = Buffer.alloc(8 + name.length + 4 + 8 * dims.length + 4 + 8);
    let p = b.writeBigUInt64LE(BigInt(name.length), 0);
    p += name.copy(b, p);
    p = b.writeUInt32LE(dims.length, p);
    for (const d of dims) p = b.writeBigUInt64LE(BigInt(d), p);
    p = b.writeUInt32LE(t.type, p);
    b.writeBigUInt64LE(BigInt(t.dataOffset), p);
    return b;
  });
  const header = Buffer.alloc(24);
  header.write('GGUF', 0, 'latin1');
  header.writeUInt32LE(GGUF_VERSION, 4);
  header.writeBigUInt64LE(BigInt(tensors.length), 8);
  header.writeBigUInt64LE(BigInt(meta.length), 16);
  const front = Buffer.concat([header, ...meta, ...infos]);

  const out = openSync(a.out, 'w');
  let written = 0;
  const put = (b) => {
    let off = 0;
    while (off < b.length) off += writeSync(out, b, off, b.length - off);
    written += b.length;
  };
  const pad = () => put(Buffer.alloc(align(written) - written));
  put(front);
  pad();
  const dataStart = written;
  const f32 = new Float32Array(CHUNK);
  const f16 = new Uint16Array(CHUNK);
  const q = new Int8Array(CHUNK);
  const s = new Float32Array(ck.gs ? CHUNK / ck.gs : 0);
  const t0 = performance.now();
  for (const t of tensors) {
    if (written - dataStart !== t.dataOffset) throw new Error(`${t.name}: at ${written - dataStart}, expected ${t.dataOffset}`);
    const n = t.rows * t.cols;
    for (let i = 0; i < n; i += CHUNK) {
      const m = Math.min(CHUNK, n - i);
      const x = f32.subarray(0, m);
      if (t.q80) {
        // q8_0: value = q x scale of its group (fp32 product, as llama2.c's dequantize)
        const ng = m / ck.gs;
        readSync(src, new Uint8Array(q.buffer, 0, m), 0, m, t.offset + i);
        readSync(src, new Uint8Array(s.buffer, 0, ng * 4), 0, ng * 4, t.offset + n + (i / ck.gs) * 4);
        for (let j = 0; j < m; j++) x[j] = q[j] * s[(j / ck.gs) | 0];
      } else readSync(src, new Uint8Array(x.buffer, 0, m * 4), 0, m * 4, t.offset + i * 4);
      if (t.type === GGML_F32) put(Buffer.from(x.buffer, 0, m * 4));
      else {
        f32ToF16(x, f16);
        put(Buffer.from(f16.buffer, 0, m * 2));
      }
    }
    pad();
  }
  closeSync(out);
  closeSync(src);
  console.log(`wrote ${a.out}: ${tensors.length} tensors, ${(written / 1e9).toFixed(2)} GB, dim ${ck.dim}, hidden ${ck.hidden}, layers ${ck.layers}, ` +
    `heads ${ck.heads}/${ck.kvHeads}, vocab ${ck.vocab}, context ${a.context ?? ck.seq} (from a v${ck.version} checkpoint, ${((performance.now() - t0) / 1e3).toFixed(0)} s)`);
}

main();
