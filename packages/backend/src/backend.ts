import type { Tensor, TensorDesc } from './tensor.js';

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
   * Starts recording the work for `rows` consecutive positions starting at
   * `pos` (1 row when decoding; a prompt may run as one batch).
   */
  begin(pos: number, rows: number): Step;

  /** Frees every tensor and the device resources. The backend is unusable afterwards. */
  dispose(): void;
}

/**
 * One batch of positions' work. Activation tensors are [maxRows, n]: each op
 * processes `rows` rows of them, except that an op whose output has a single
 * row processes one row (the classifier after `lastRow`).
 * Row r is position `pos + r`.
 */
export interface Step {
  readonly pos: number;
  readonly rows: number;

  /** out[r] = table[tokens[r]]  (table: f32 [vocab, dim], tokens: i32 [maxRows]) */
  embed(out: Tensor, table: Tensor, tokens: Tensor): void;
  /** out[r] = weight * x[r] / sqrt(mean(x[r]^2) + eps) */
  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void;
  /**
   * out[r] = w @ x[r]  (w: [d, n] f32 or q8_0; x: [.., n]; out: [.., d]).
   * With q8_0 weights, x is first quantized to int8 in the weight's groups and
   * each group's dot product accumulates in int32, as llama2.c's runq.c does.
   */
  matmul(out: Tensor, x: Tensor, w: Tensor): void;
  /** Rotates each consecutive pair (x[2i], x[2i+1]) of every head of row r by (pos + r) * theta^(-2i/headSize). */
  rope(x: Tensor, headSize: number, theta: number): void;
  /** cache[layer, pos + r] = src[r]  (cache: [layers, seqLen, kvDim]) */
  storeKV(cache: Tensor, layer: number, src: Tensor): void;
  /**
   * Causal grouped-query attention of query rows q ([.., nHeads * headSize])
   * over positions 0..pos+r of the layer's keys and values
   * ([layers, seqLen, nKvHeads * headSize]); query head h reads KV head
   * floor(h / (nHeads / nKvHeads)).
   */
  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void;
  /** out = silu(gate) * up, elementwise */
  swiglu(out: Tensor, gate: Tensor, up: Tensor): void;
  /** out = a + b, elementwise (out may alias a) */
  add(out: Tensor, a: Tensor, b: Tensor): void;
  /** out[0] = x[rows - 1]: the position whose logits are wanted */
  lastRow(out: Tensor, x: Tensor): void;
  /**
   * out[0] = index of the largest of logits[0] (lowest index wins a tie), as
   * i32; -1 when any logit is NaN or infinite, so a broken model is reported
   * instead of decoding garbage.
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
