/// <reference types="@webgpu/types" />
import { ArgumentError, checkGatherRows, type CheckedRows, type Step, type Tensor } from '@rama/backend';
import * as k from './kernels/index.js';
import { STEP_HEADER, type MatmulKernels, type Params, type Recorder, type RowFlow } from './kernels/common.js';
import type { GpuTensor } from './tensor.js';
import type { KernelProfiler, ProfileFrame } from './profiler.js';

/** Services the backend lends a step: checked tensors, cached bind groups, scratch, the queue. */
export interface StepHost {
  tensor(t: Tensor, op: string): GpuTensor;
  record(kernel: string, key: string, tensors: GpuTensor[], make: () => { params: Params; buffers: GPUBuffer[] }): {
    pipeline: GPUComputePipeline;
    bindGroup: GPUBindGroup;
  };
  scratch(kind: string, bytes: number): GPUBuffer;
  ropeTable(headSize: number, theta: number, positions: number, freqFactors?: Float32Array): GpuTensor;
  /** Writes the step buffer's words (see STEP_WGSL), then submits the step's commands. */
  submitStep(words: Uint32Array<ArrayBuffer>, commands: GPUCommandBuffer): void;
  /** Records a copy of a tensor's first `count` elements into a staging buffer; the returned function maps it after submit. */
  recordRead(encoder: GPUCommandEncoder, t: GpuTensor, count: number | undefined): () => Promise<Float32Array | Int32Array>;
  readonly device: GPUDevice;
  readonly packedDot: boolean;
  readonly matmulKernels: MatmulKernels;
  /** Present when the backend times its kernels (see WebGpuBackendOptions.profile). */
  readonly profiler?: KernelProfiler;
}

/**
 * One step's rows (positions of one or more sequences) recorded into one
 * command encoder and handed to the queue in one submit.
 *
 * How many rows an op processes follows the data, as in the CPU reference:
 * the step's rows, except for a gather's output and what is computed from it
 * (`held`). Each distinct gathered row count of the step gets a word of the
 * step buffer, which the kernels read (see RowFlow).
 */
export class WebGpuStep implements Step, Recorder {
  readonly rows: number;
  readonly positions: readonly number[];
  readonly slots: readonly number[];
  private readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private submitted = false;
  /** Reads recorded in this step, mapped once it is submitted. */
  private readonly reads: (() => void)[] = [];
  /** Rows each tensor holds in this step, where not the step's rows. */
  private readonly held = new Map<GpuTensor, number>();
  /** Gathered row counts of this step; count i is step-buffer word 1 + i. */
  private readonly gatheredCounts: number[] = [];
  /** Timestamps of this step's dispatches, when the backend profiles: then each dispatch gets its own pass. */
  private readonly profile: ProfileFrame | undefined;

  constructor(
    private readonly host: StepHost,
    readonly layout: CheckedRows,
  ) {
    this.rows = layout.positions.length;
    this.positions = layout.positions;
    this.slots = layout.slots;
    this.encoder = host.device.createCommandEncoder({ label: `step of ${this.rows} rows` });
    this.profile = host.profiler?.frame();
  }

  /** Rows `t` holds in this step. */
  private rowsIn(t: GpuTensor): number {
    return this.held.get(t) ?? this.rows;
  }

  /** The RowFlow of `count` rows: word 0 for the step's rows, else a gathered count's word. */
  private rowFlow(count: number, op: string): RowFlow {
    if (count === this.rows) return { count, word: 0 };
    let i = this.gatheredCounts.indexOf(count);
    if (i < 0) {
      if (this.gatheredCounts.length >= STEP_HEADER - 1) {
        throw new ArgumentError(`${op}: a step may gather at most ${STEP_HEADER - 1} different row counts`);
      }
      i = this.gatheredCounts.push(count) - 1;
    }
    return { count, word: 1 + i };
  }

  /** Rows `input` holds, which `out` then holds too. */
  private flow(out: GpuTensor, input: GpuTensor, op: string): RowFlow {
    const n = this.rowsIn(input);
    if (n === this.rows) this.held.delete(out);
    else this.held.set(out, n);
    if (out.rows < n) throw new ArgumentError(`${op}: ${out.label} has ${out.rows} rows, the step writes ${n}`);
    return this.rowFlow(n, op);
  }

  get packedDot(): boolean {
    return this.host.packedDot;
  }

  get matmulKernels(): MatmulKernels {
    return this.host.matmulKernels;
  }

  private open(op: string): void {
    if (this.submitted) throw new ArgumentError(`${op}: this step was already submitted`);
  }

  dispatch(
    kernel: string,
    key: string,
    tensors: GpuTensor[],
    make: () => { params: Params; buffers: GPUBuffer[] },
    x: number,
    y = 1,
    z = 1,
  ): void {
    if (x <= 0 || y <= 0 || z <= 0) return;
    const rec = this.host.record(kernel, key, tensors, make);
    if (this.profile) this.endPass();
    if (!this.pass) this.pass = this.encoder.beginComputePass(this.profile?.pass(kernel));
    this.pass.setPipeline(rec.pipeline);
    this.pass.setBindGroup(0, rec.bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    if (this.profile) this.endPass();
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    if (size <= 0) return;
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  scratch(kind: string, bytes: number): GPUBuffer {
    return this.host.scratch(kind, bytes);
  }

  ropeTable(headSize: number, theta: number, positions: number, freqFactors?: Float32Array): GpuTensor {
    return this.host.ropeTable(headSize, theta, positions, freqFactors);
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  private t(t: Tensor, op: string): GpuTensor {
    this.open(op);
    return this.host.tensor(t, op);
  }

  embed(out: Tensor, table: Tensor, tokens: Tensor): void {
    const o = this.t(out, 'embed');
    this.held.delete(o);
    if (o.rows < this.rows) throw new ArgumentError(`embed: ${o.label} has ${o.rows} rows, the step has ${this.rows}`);
    k.embed(this, o, this.t(table, 'embed'), this.t(tokens, 'embed'));
  }
  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    const op = 'rmsnorm';
    const o = this.t(out, op), xi = this.t(x, op);
    k.rmsnorm(this, o, xi, this.t(weight, op), eps, this.flow(o, xi, op));
  }
  matmul(out: Tensor, x: Tensor, w: Tensor): void {
    const op = 'matmul';
    const o = this.t(out, op), xi = this.t(x, op);
    k.matmul(this, o, xi, this.t(w, op), this.flow(o, xi, op));
  }
  rope(x: Tensor, headSize: number, theta: number, freqFactors?: Float32Array): void {
    const xi = this.t(x, 'rope');
    k.rope(this, xi, headSize, theta, this.flow(xi, xi, 'rope'), freqFactors);
  }
  storeKV(cache: Tensor, layer: number, src: Tensor): void {
    k.storeKV(this, this.t(cache, 'storeKV'), layer, this.t(src, 'storeKV'));
  }
  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void {
    const op = 'attention';
    const o = this.t(out, op), qi = this.t(q, op);
    k.attention(this, o, qi, this.t(keys, op), this.t(values, op), layer, headSize, this.flow(o, qi, op));
  }
  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    const op = 'swiglu';
    const o = this.t(out, op), g = this.t(gate, op);
    k.swiglu(this, o, g, this.t(up, op), this.flow(o, g, op));
  }
  add(out: Tensor, a: Tensor, b: Tensor): void {
    const op = 'add';
    const o = this.t(out, op), ai = this.t(a, op);
    k.add(this, o, ai, this.t(b, op), this.flow(o, ai, op));
  }
  gather(out: Tensor, x: Tensor, rows: ArrayLike<number>): void {
    const op = 'gather';
    const o = this.t(out, op), xi = this.t(x, op);
    const which = checkGatherRows(rows, this.rowsIn(xi), o.rows, o.label);
    k.gather(this, o, xi, which);
    if (which.length === this.rows) this.held.delete(o);
    else this.held.set(o, which.length);
  }
  argmax(out: Tensor, logits: Tensor): void {
    const op = 'argmax';
    const o = this.t(out, op), l = this.t(logits, op);
    const n = this.rowsIn(l);
    if (o.size < n) throw new ArgumentError(`argmax: ${o.label} holds ${o.size} ids, the step has ${n} rows of logits`);
    k.argmax(this, o, l, this.rowFlow(n, op));
  }

  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    const g = this.t(t, 'read');
    this.endPass();
    const finish = this.host.recordRead(this.encoder, g, count);
    return new Promise((resolve, reject) => this.reads.push(() => finish().then(resolve, reject)));
  }

  submit(): void {
    this.open('submit');
    this.endPass();
    this.submitted = true;
    // The step buffer: row count, gathered row counts, then (position, slot) per row.
    const words = new Uint32Array(STEP_HEADER + 2 * this.rows);
    words[0] = this.rows;
    words.set(this.gatheredCounts, 1);
    for (let r = 0; r < this.rows; r++) {
      words[STEP_HEADER + 2 * r] = this.positions[r];
      words[STEP_HEADER + 2 * r + 1] = this.slots[r];
    }
    this.profile?.resolve(this.encoder);
    this.host.submitStep(words, this.encoder.finish());
    this.profile?.submitted();
    for (const mapBack of this.reads) mapBack();
  }
}

