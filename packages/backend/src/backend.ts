import type { DType, Tensor, TensorDesc } from './tensor.js';

/**
 * Writes a tensor's bytes, in the standard layout, into memory the backend
 * owns (a WASM heap, a mapped GPU buffer). This lets weights go straight from a
 * file into the device without an intermediate copy.
 */
export type TensorFill = (dst: Uint8Array) => void | Promise<void>;

/**
 * A compute device for the Llama forward pass.
 *
 * The contract (what `@rama/llama` relies on, and what the conformance suite
 * checks):
 * - Memory lives on the device. Weights, the KV cache and activations are
 *   handles allocated once at load; nothing is allocated per token.
 * - Destination passing. Every op writes into a preallocated output.
 * - Deferred, ordered execution. Ops recorded in a Step may run later, but
 *   always in the order recorded, and steps run in the order submitted.
 *   `write` is ordered the same way: after steps submitted before it, before
 *   steps submitted after it.
 * - `read` is the only host synchronisation: it waits for every submitted step
 *   and returns a copy.
 */
export interface Backend {
  /** "cpu", "webgpu", ... */
  readonly name: string;
  /** Human description of the device, for logs and the CLI. */
  readonly description: string;
  /** The most positions one Step may hold. */
  readonly maxRows: number;
  /**
   * Whether submitted steps run later, on a device queue (a GPU), rather
   * than before `submit` returns (the CPU). Then the host can record and
   * submit the next step while it waits for a read, and @rama/llama does so
   * for greedy decoding (pipelining); where steps run at submit, it would
   * only add work.
   */
  readonly executesAsync?: boolean;
  /**
   * The most bytes all of this backend's tensors may take together, where
   * the backend has such a limit (the CPU backend's WebAssembly memory);
   * undefined where it cannot tell (a GPU's memory). @rama/llama checks a
   * model against it before loading.
   */
  readonly memoryLimit?: number;
  /**
   * The most bytes one tensor (or one TensorDesc.colocate group) may take,
   * where the backend has such a limit (one WebAssembly memory of the CPU
   * backend, 4 GiB at most); @rama/llama checks a model against it too.
   */
  readonly maxTensorBytes?: number;
  /**
   * Why this backend runs below what the machine offers, when it does, in
   * words a site owner can act on (e.g. the CPU backend on one thread because
   * the page is not cross-origin isolated); undefined otherwise.
   */
  readonly notice?: string;

  /**
   * Whether this backend stores tensors of a registered element type (see
   * registerDType) and has kernels for them, so the model can ask before it
   * uploads (and convert, or pick another backend). `upload` and `alloc` of
   * a type it does not support throw an ArgumentError naming the tensor and
   * the type (checkSupported).
   */
  supports(dtype: DType): boolean;
  /** Allocates a tensor and fills it (weights). */
  upload(desc: TensorDesc, data: ArrayBufferView | TensorFill): Promise<Tensor>;
  /** Allocates a zero-filled tensor (activations, KV cache). */
  alloc(desc: TensorDesc): Tensor;
  /** Queues a host-to-device copy of f32 or i32 elements at an element offset. */
  write(t: Tensor, data: Float32Array | Int32Array, offset?: number): void;
  /** Waits for all submitted work, then copies the first `count` elements (default: all) to the host. */
  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array>;
  /** Frees one tensor. Using it afterwards is an error. */
  free(t: Tensor): void;

  /**
   * Starts recording one step's work. Each row of the step is one position of
   * one sequence: row r is position `rows.positions[r]` of the sequence whose
   * KV cache is slot `rows.slots[r]` (default: every row in slot 0). Rows of
   * several sequences may share a step (batched decoding: one row per
   * sequence, and a prompt's rows beside them); each row only ever reads and
   * writes its own slot, so a sequence's results do not depend on what else
   * the step holds.
   */
  begin(rows: StepRows): Step;
  /** Frees every tensor and the device resources. The backend is unusable afterwards. */
  dispose(): void;
}

/** The rows of a step (see Backend.begin). */
export interface StepRows {
  /** Position of each row within its sequence; its length is the step's row count (1..maxRows). */
  readonly positions: ArrayLike<number>;
  /** KV slot of each row's sequence (default: all 0). */
  readonly slots?: ArrayLike<number>;
}

/** `count` consecutive positions from `pos` of the sequence in `slot` (a prompt, or one decoding row). */
export function contiguousRows(pos: number, count: number, slot = 0): StepRows {
  return { positions: Array.from({ length: count }, (_, r) => pos + r), slots: new Array<number>(count).fill(slot) };
}

/**
 * One step's work. Activation tensors are [maxRows, n]; row r of them belongs
 * to row r of the step. How many rows an op processes follows the data: the
 * step's row count for tensors computed from `embed`'s output, and `k` for the
 * output of a `gather` of k rows and everything computed from it (the
 * classifier runs only on the rows whose logits are wanted).
 *
 * KV caches are [layers, slots, seqLen, kvDim] (or [layers, seqLen, kvDim]:
 * one slot).
 */
export interface Step {
  /** Rows of this step. */
  readonly rows: number;
  /** Position of each row. */
  readonly positions: readonly number[];
  /** KV slot of each row. */
  readonly slots: readonly number[];

  /**
   * out[r] = table[tokens[r]]  (table: [vocab, dim], tokens: i32 [maxRows]).
   * The table is f32, or any packed matrix type the backend supports (f16,
   * bf16, q8_0, q4_0, q4_k, q5_k, q6_k): a model's token table stays in its
   * file's type and only the looked-up rows are decoded, each value exactly
   * as the decoders of elements.ts give it (the row of the table converted
   * to f32, bit for bit).
   */
  embed(out: Tensor, table: Tensor, tokens: Tensor): void;
  /** out[r] = weight * x[r] / sqrt(mean(x[r]^2) + eps) */
  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void;
  /**
   * out[r] = w @ x[r]  (w: [d, n] f32, f16, bf16, q8_0 or q4_0; x: [.., n]; out: [.., d]).
   * f16 and bf16 weights are widened exactly and multiply the f32 x. With
   * q8_0 weights, x is first quantized to int8 in the weight's groups and
   * each group's dot product accumulates in int32, as llama2.c's runq.c does;
   * with q4_0 weights the same, in its blocks of 32.
   */
  matmul(out: Tensor, x: Tensor, w: Tensor): void;
  /**
   * Rotates each consecutive pair (x[2i], x[2i+1]) of every head of row r by
   * positions[r] * theta^(-2i/headSize), divided by freqFactors[i] where given
   * (Llama 3.1's rope scaling; headSize / 2 factors). See ropeFrequencies.
   */
  rope(x: Tensor, headSize: number, theta: number, freqFactors?: Float32Array): void;
  /**
   * cache[layer, slots[r], positions[r]] = src[r]  (src f32). The cache is
   * f32 or, on a backend that supports f16, f16: then each value is rounded
   * to the nearest f16, ties to even, past 65504 to infinity (f32ToF16), half
   * the memory of an f32 cache.
   */
  storeKV(cache: Tensor, layer: number, src: Tensor): void;
  /**
   * Causal grouped-query attention of query rows q ([.., nHeads * headSize]):
   * row r attends over positions 0..positions[r] of its own slot's keys and
   * values (cache[layer, slots[r]], rows of nKvHeads * headSize); query head
   * h reads KV head floor(h / (nHeads / nKvHeads)). Keys and values are both
   * f32 or both f16 (on a backend that supports f16); f16 ones are widened
   * exactly, so the result is that of an f32 cache holding the same values.
   */
  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void;
  /** out = silu(gate) * up, elementwise */
  swiglu(out: Tensor, gate: Tensor, up: Tensor): void;
  /** out = a + b, elementwise (out may alias a) */
  add(out: Tensor, a: Tensor, b: Tensor): void;
  /**
   * out[i] = x[rows[i]] for each i: the rows whose logits are wanted (each
   * sequence's last row). Ops on `out` and what is computed from it process
   * rows.length rows.
   */
  gather(out: Tensor, x: Tensor, rows: ArrayLike<number>): void;
  /**
   * out[i] = index of the largest of logits[i] (lowest index wins a tie), as
   * i32, for each row logits holds in this step; -1 when any logit of that row
   * is NaN or infinite, so a broken model is reported instead of decoding
   * garbage.
   */
  argmax(out: Tensor, logits: Tensor): void;

  /**
   * Reads the first `count` elements (default: all) of an f32 or i32 tensor as
   * they are when this step's work is done. The copy travels with the step
   * (on WebGPU, in the same queue submission), so a token costs one submission
   * and one small readback. Resolves after `submit()`.
   */
  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array>;

  /** Hands the recorded work to the device (CPU: it already ran; WebGPU: one queue submission). */
  submit(): void;
}

/** Options every backend accepts. */
export interface BackendOptions {
  /** Largest number of positions one Step may hold (prompt batch size). */
  maxRows?: number;
}
