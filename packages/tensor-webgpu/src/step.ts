/// <reference types="@webgpu/types" />
import { ArgumentError, type Step, type Tensor } from '@rama/backend';
import * as k from './kernels/index.js';
import type { MatmulKernels, Params, Recorder } from './kernels/common.js';
import type { GpuTensor } from './tensor.js';

/** Services the backend lends a step: checked tensors, cached bind groups, scratch, the queue. */
export interface StepHost {
  tensor(t: Tensor, op: string): GpuTensor;
  record(kernel: string, key: string, tensors: GpuTensor[], make: () => { params: Params; buffers: GPUBuffer[] }): {
    pipeline: GPUComputePipeline;
    bindGroup: GPUBindGroup;
  };
  scratch(kind: string, bytes: number): GPUBuffer;
  ropeTable(headSize: number, theta: number, positions: number): GpuTensor;
  submitStep(pos: number, rows: number, commands: GPUCommandBuffer): void;
  /** Records a copy of a tensor's first `count` elements into a staging buffer; the returned function maps it after submit. */
  recordRead(encoder: GPUCommandEncoder, t: GpuTensor, count: number | undefined): () => Promise<Float32Array | Int32Array>;
  readonly device: GPUDevice;
  readonly packedDot: boolean;
  readonly matmulKernels: MatmulKernels;
}

/** One batch of positions recorded into one command encoder and handed to the queue in one submit. */
export class WebGpuStep implements Step, Recorder {
  private readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private submitted = false;
  /** Reads recorded in this step, mapped once it is submitted. */
  private readonly reads: (() => void)[] = [];

  constructor(
    private readonly host: StepHost,
    readonly pos: number,
    readonly rows: number,
  ) {
    this.encoder = host.device.createCommandEncoder({ label: `step ${pos}+${rows}` });
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
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    this.pass.setPipeline(rec.pipeline);
    this.pass.setBindGroup(0, rec.bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    if (size <= 0) return;
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  scratch(kind: string, bytes: number): GPUBuffer {
    return this.host.scratch(kind, bytes);
  }

  ropeTable(headSize: number, theta: number, positions: number): GpuTensor {
    return this.host.ropeTable(headSize, theta, positions);
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
    k.embed(this, this.t(out, 'embed'), this.t(table, 'embed'), this.t(tokens, 'embed'));
  }
  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    k.rmsnorm(this, this.t(out, 'rmsnorm'), this.t(x, 'rmsnorm'), this.t(weight, 'rmsnorm'), eps);
  }
  matmul(out: Tensor, x: Tensor, w: Tensor): void {
    k.matmul(this, this.t(out, 'matmul'), this.t(x, 'matmul'), this.t(w, 'matmul'));
  }
  rope(x: Tensor, headSize: number, theta: number): void {
    k.rope(this, this.t(x, 'rope'), headSize, theta);
  }
  storeKV(cache: Tensor, layer: number, src: Tensor): void {
    k.storeKV(this, this.t(cache, 'storeKV'), layer, this.t(src, 'storeKV'));
  }
  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void {
    const op = 'attention';
    k.attention(this, this.t(out, op), this.t(q, op), this.t(keys, op), this.t(values, op), layer, headSize);
  }
  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    k.swiglu(this, this.t(out, 'swiglu'), this.t(gate, 'swiglu'), this.t(up, 'swiglu'));
  }
  add(out: Tensor, a: Tensor, b: Tensor): void {
    k.add(this, this.t(out, 'add'), this.t(a, 'add'), this.t(b, 'add'));
  }
  lastRow(out: Tensor, x: Tensor): void {
    k.lastRow(this, this.t(out, 'lastRow'), this.t(x, 'lastRow'));
  }
  argmax(out: Tensor, logits: Tensor): void {
    k.argmax(this, this.t(out, 'argmax'), this.t(logits, 'argmax'));
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
    this.host.submitStep(this.pos, this.rows, this.encoder.finish());
    for (const mapBack of this.reads) mapBack();
  }
}

