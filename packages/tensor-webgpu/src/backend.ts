/// <reference types="@webgpu/types" />
import {
  ArgumentError,
  BackendError,
  byteLengthOf,
  checkStepRows,
  checkSupported,
  kvGeometry,
  type Backend,
  type BackendOptions,
  type DType,
  type Step,
  type StepRows,
  type Tensor,
  type TensorDesc,
  type TensorFill,
  freqFactorsKey,
} from '@rama/backend';
import { acquireDevice, type AcquiredDevice } from './device.js';
import { allKernels } from './kernels/index.js';
import { STEP_HEADER, type MatmulKernels, type Params } from './kernels/common.js';
import { fillRopeTable } from './kernels/rope.js';
import { compileKernel, type Compiled } from './pipelines.js';
import { WebGpuStep, type StepHost } from './step.js';
import { KernelProfiler, type KernelTime } from './profiler.js';
import { GpuTensor, copyIntoPart, isStandardLayout, planParts, type Part } from './tensor.js';

// Numeric flags, so a caller-provided device works without the GPU* globals.
const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ = 0x1;
const TENSOR_USAGE = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;
const STAGING_CAP = 64 << 20;

/** Options of `WebGpuBackend.create`. */
export interface WebGpuBackendOptions extends BackendOptions {
  /** Use this device instead of requesting one (it is not destroyed on dispose). */
  device?: GPUDevice;
  /** Split tensors into buffers of at most this many bytes (default and cap: the device's binding limit). */
  maxBindingSize?: number;
  /** The adapter to ask for when no `device` is given: 'high-performance' (a discrete GPU) or 'low-power'. */
  powerPreference?: GPUPowerPreference;
  /**
   * Matmul kernels: 'rows' (one thread per output, looping over its weight
   * row: fastest on a CPU implementation such as SwiftShader) or 'workgroups'
   * (a workgroup per output with coalesced loads: for GPUs). Default: 'rows'
   * on a CPU adapter (SwiftShader or a fallback adapter), else 'workgroups'.
   */
  matmulKernels?: MatmulKernels;
  /**
   * Time every kernel dispatch on the GPU with timestamp queries (see
   * `kernelTimes()`). Needs the device's `timestamp-query` feature (requested
   * when the adapter has it); each dispatch then gets its own compute pass,
   * so profiled steps run somewhat slower. Default false: no queries at all.
   */
  profile?: boolean;
}

// Pipelines depend only on the device: compiled once per device, shared by its backends.
const compiledByDevice = new WeakMap<GPUDevice, Promise<Map<string, Compiled>>>();

function compiledKernels(a: AcquiredDevice): Promise<Map<string, Compiled>> {
  let p = compiledByDevice.get(a.device);
  if (!p) {
    const defs = allKernels(a.packedDot);
    p = Promise.all(defs.map((def) => compileKernel(a.device, def))).then((cs) => new Map(defs.map((d, i) => [d.name, cs[i]])));
    compiledByDevice.set(a.device, p);
    p.catch(() => compiledByDevice.delete(a.device));
  }
  return p;
}

interface CachedBinding {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  params: GPUBuffer;
}

const mib = (n: number): string => `${(n / (1 << 20)).toFixed(1)} MiB`;

/**
 * The WebGPU Backend: every tensor lives in GPU buffers (split by rows when it
 * is larger than one binding may be), every op is a compute dispatch with a
 * bind group made once, and a Step is one command buffer and one queue submit.
 */
export class WebGpuBackend implements Backend, StepHost {
  readonly name = 'webgpu';
  /** Steps run on the GPU queue after submit returns (see Backend.executesAsync). */
  readonly executesAsync = true;
  readonly description: string;
  readonly maxRows: number;
  /** Largest buffer a tensor part may use (bytes). */
  readonly maxPartBytes: number;
  /** The device every buffer and pipeline belongs to. */
  readonly device: GPUDevice;
  /** Whether WGSL's packed 4x8-bit integer dot product is available (the Q8_0 kernels use it then). */
  readonly packedDot: boolean;
  /** Which matmul kernels run: 'rows' or 'workgroups' (see WebGpuBackendOptions.matmulKernels). */
  readonly matmulKernels: MatmulKernels;
  /** @internal The kernel timer, when created with `profile: true`. */
  readonly profiler: KernelProfiler | undefined;

  private readonly pipelines = new Map<string, Compiled>();
  private readonly bindings = new Map<string, CachedBinding>();
  private readonly bindingsByTensor = new Map<number, Set<string>>();
  private readonly scratchBuffers = new Map<string, GPUBuffer>();
  private readonly staging = new Map<number, GPUBuffer>();
  /** Staging buffers for reads recorded in steps: all of them, and those not in use. */
  private readonly readbacks = new Set<GPUBuffer>();
  private readonly freeReadbacks: GPUBuffer[] = [];
  private readonly tensors = new Set<GpuTensor>();
  /** RoPE rotation tables by `${headSize}|${theta}`, and tables outgrown (kept until dispose). */
  private readonly ropeTables = new Map<string, GpuTensor>();
  private readonly retiredRopeTables: GpuTensor[] = [];
  /** The step buffer every bind group shares (see STEP_WGSL): rows, gathered row counts, (position, slot) per row. */
  private readonly stepBuffer: GPUBuffer;
  private readChain: Promise<unknown> = Promise.resolve();
  private error: BackendError | undefined;
  private disposed = false;

  private readonly onError: (ev: Event) => void;

  private constructor(acquired: AcquiredDevice, opts: WebGpuBackendOptions) {
    this.device = acquired.device;
    this.packedDot = acquired.packedDot;
    this.matmulKernels = opts.matmulKernels ?? (acquired.cpuAdapter ? 'rows' : 'workgroups');
    this.maxRows = opts.maxRows ?? 512;
    this.profiler = opts.profile ? new KernelProfiler(this.device) : undefined;
    const lim = this.device.limits;
    const cap = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    this.maxPartBytes = Math.floor(Math.min(opts.maxBindingSize ?? cap, cap) / 4) * 4;
    this.description = `${acquired.description}, binding limit ${mib(lim.maxStorageBufferBindingSize)}, buffer limit ${mib(lim.maxBufferSize)}${
      opts.maxBindingSize ? `, split at ${this.maxPartBytes} bytes` : ''
    }, ${this.matmulKernels} matmul kernels`;
    this.stepBuffer = this.device.createBuffer({
      label: 'step',
      size: 4 * (STEP_HEADER + 2 * this.maxRows),
      usage: USAGE.STORAGE | USAGE.COPY_DST,
    });
    this.device.lost.then((info) => {
      if (!this.disposed) this.error ??= new BackendError(`WebGPU: device lost (${info.reason}): ${info.message}`);
    });
    this.onError = (ev: Event): void => {
      const msg = (ev as GPUUncapturedErrorEvent).error?.message ?? String(ev);
      this.error ??= new BackendError(`WebGPU: ${msg}`);
    };
    this.device.addEventListener('uncapturederror', this.onError);
  }

  /** Finds a device (navigator.gpu, or Dawn in Node), compiles every kernel; a BackendError when no adapter exists. */
  static async create(opts: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    if (opts.maxRows !== undefined && !(Number.isInteger(opts.maxRows) && opts.maxRows >= 1)) {
      throw new ArgumentError(`maxRows must be a positive integer, got ${opts.maxRows}`);
    }
    if (opts.maxBindingSize !== undefined && !(opts.maxBindingSize >= 256)) {
      throw new ArgumentError(`maxBindingSize must be at least 256 bytes, got ${opts.maxBindingSize}`);
    }
    if (opts.matmulKernels !== undefined && opts.matmulKernels !== 'rows' && opts.matmulKernels !== 'workgroups') {
      throw new ArgumentError(`matmulKernels must be 'rows' or 'workgroups', got ${String(opts.matmulKernels)}`);
    }
    const acquired = await acquireDevice(opts);
    if (opts.profile && !acquired.device.features.has('timestamp-query')) {
      throw new BackendError(`WebGPU: profile needs the 'timestamp-query' feature, which this device was not created with`);
    }
    const pipelines = await compiledKernels(acquired);
    const backend = new WebGpuBackend(acquired, opts);
    for (const [name, c] of pipelines) backend.pipelines.set(name, c);
    return backend;
  }

  /**
   * GPU time per kernel (pipeline name) since the backend was created or
   * `resetKernelTimes()` was called, the most time first. Waits for the
   * timestamps of submitted steps to be read back. Needs `profile: true`.
   */
  kernelTimes(): Promise<KernelTime[]> {
    if (!this.profiler) return Promise.reject(new BackendError('kernelTimes: this WebGPU backend was created without profile: true'));
    return this.profiler.times();
  }

  /** Starts the kernel times afresh (steps begun before this call no longer count). */
  resetKernelTimes(): void {
    this.profiler?.reset();
  }

  private live(what: string): void {
    if (this.disposed) throw new BackendError(`${what}: the WebGPU backend was disposed`);
    if (this.error) throw this.error;
  }

  /** @internal Checks that `t` is a live tensor of this backend, for an op's messages. */
  tensor(t: Tensor, op: string): GpuTensor {
    if (!(t instanceof GpuTensor) || t.owner !== this) throw new ArgumentError(`${op}: ${t?.label ?? t} is not a tensor of this WebGPU backend`);
    if (t.freed) throw new ArgumentError(`${op}: ${t.label} was freed`);
    return t;
  }

  /** f32, i32, llama2.c's q8_0, f16, bf16 and GGUF's q4_0, q4_k, q5_k, q6_k: the types these kernels handle (see Backend.supports). */
  supports(dtype: DType): boolean {
    return ['f32', 'i32', 'q8_0', 'f16', 'bf16', 'q4_0', 'q4_k', 'q5_k', 'q6_k'].includes(dtype);
  }

  private checkDesc(desc: TensorDesc): number {
    if (!Array.isArray(desc.shape) || desc.shape.length === 0 || !desc.shape.every((d) => Number.isInteger(d) && d > 0)) {
      throw new ArgumentError(`${desc.label}: shape must be positive integers, got [${desc.shape}]`);
    }
    checkSupported(this, desc);
    try {
      return byteLengthOf(desc);
    } catch (e) {
      throw new ArgumentError((e as Error).message);
    }
  }

  private createBuffers(desc: TensorDesc, mapped: boolean): { parts: Part[]; check: Promise<void> } {
    const plans = planParts(desc, this.maxPartBytes);
    const total = plans.reduce((s, p) => s + p.bytes, 0);
    const dev = this.device;
    const offered = `the device offers ${mib(dev.limits.maxBufferSize)} per buffer and ${mib(dev.limits.maxStorageBufferBindingSize)} per binding`;
    dev.pushErrorScope('out-of-memory');
    dev.pushErrorScope('validation');
    const parts: Part[] = [];
    try {
      for (const p of plans) {
        const size = Math.max(4, Math.ceil(p.bytes / 4) * 4);
        parts.push({ ...p, buffer: dev.createBuffer({ label: desc.label, size, usage: TENSOR_USAGE, mappedAtCreation: mapped }) });
      }
    } catch (e) {
      void dev.popErrorScope();
      void dev.popErrorScope();
      for (const p of parts) p.buffer.destroy();
      throw new BackendError(`${desc.label}: cannot allocate ${mib(total)} in ${plans.length} buffer(s) (${(e as Error).message}); ${offered}`, { cause: e });
    }
    const validation = dev.popErrorScope();
    const oom = dev.popErrorScope();
    const check = Promise.all([validation, oom]).then(([v, o]) => {
      const err = o ?? v;
      if (err) {
        for (const p of parts) p.buffer.destroy();
        throw new BackendError(`${desc.label}: cannot allocate ${mib(total)} in ${plans.length} buffer(s) (${err.message}); ${offered}`);
      }
    });
    return { parts, check };
  }

  async upload(desc: TensorDesc, data: ArrayBufferView | TensorFill): Promise<Tensor> {
    this.live(`upload ${desc.label}`);
    const byteLength = this.checkDesc(desc);
    if (typeof data !== 'function' && data.byteLength !== byteLength) {
      throw new ArgumentError(`${desc.label}: expected ${byteLength} bytes for [${desc.shape}] ${desc.dtype}, got ${data.byteLength}`);
    }
    const { parts, check } = this.createBuffers(desc, true);
    const plans = parts;
    try {
      if (typeof data === 'function' && isStandardLayout(desc, plans)) {
        await data(new Uint8Array(parts[0].buffer.getMappedRange(), 0, byteLength));
      } else {
        let src: Uint8Array;
        if (typeof data === 'function') {
          src = new Uint8Array(byteLength);
          await data(src);
        } else {
          src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        }
        for (const p of parts) copyIntoPart(desc, src, p, new Uint8Array(p.buffer.getMappedRange()));
      }
    } finally {
      for (const p of parts) p.buffer.unmap();
    }
    await check;
    return this.adopt(new GpuTensor(desc, parts, this));
  }

  alloc(desc: TensorDesc): Tensor {
    this.live(`alloc ${desc.label}`);
    this.checkDesc(desc);
    const { parts, check } = this.createBuffers(desc, false);
    check.catch((e: BackendError) => (this.error ??= e));
    return this.adopt(new GpuTensor(desc, parts, this));
  }

  private adopt(t: GpuTensor): GpuTensor {
    this.tensors.add(t);
    return t;
  }

  write(t: Tensor, data: Float32Array | Int32Array, offset = 0): void {
    this.live('write');
    const g = this.tensor(t, 'write');
    const want = g.dtype === 'f32' ? Float32Array : g.dtype === 'i32' ? Int32Array : undefined;
    if (!want || !(data instanceof want)) {
      throw new ArgumentError(`write: ${g.label} is ${g.dtype}; expected ${want ? want.name : 'an f32 or i32 tensor'}, got ${data.constructor.name}`);
    }
    if (!(Number.isInteger(offset) && offset >= 0 && offset + data.length <= g.size)) {
      throw new ArgumentError(`write: ${data.length} elements at ${offset} do not fit the ${g.size} of ${g.label}`);
    }
    const end = offset + data.length;
    for (const p of g.parts) {
      const s = Math.max(offset, p.e0);
      const e = Math.min(end, p.e1);
      if (s >= e) continue;
      this.device.queue.writeBuffer(p.buffer, 4 * (s - p.e0), data.buffer, data.byteOffset + 4 * (s - offset), 4 * (e - s));
    }
  }

  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    const run = this.readChain.then(() => this.readNow(t, count));
    this.readChain = run.catch(() => undefined);
    return run;
  }

  private async readNow(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    this.live('read');
    const g = this.tensor(t, 'read');
    const n = this.readCount(g, count);
    const out = g.dtype === 'f32' ? new Float32Array(n) : new Int32Array(n);
    const bytes = new Uint8Array(out.buffer);
    const cap = Math.min(STAGING_CAP, this.device.limits.maxBufferSize);
    for (let c0 = 0; c0 < 4 * n || (n === 0 && c0 === 0); c0 += cap) {
      const c1 = Math.min(4 * n, c0 + cap);
      const size = c1 - c0;
      const staging = this.stagingBuffer(Math.max(4, size));
      const enc = this.device.createCommandEncoder({ label: `read ${g.label}` });
      copyOut(enc, g, c0, c1, staging);
      this.device.queue.submit([enc.finish()]);
      bytes.set(await this.mapStaging(g, staging, size), c0);
      if (n === 0) break;
    }
    if (this.error) throw this.error;
    return out;
  }

  private readCount(g: GpuTensor, count: number | undefined): number {
    if (g.dtype !== 'f32' && g.dtype !== 'i32') throw new ArgumentError(`read: ${g.label} is ${g.dtype}; only f32 and i32 tensors can be read`);
    const n = count ?? g.size;
    if (!(Number.isInteger(n) && n >= 0 && n <= g.size)) throw new ArgumentError(`read: count ${count} is outside 0..${g.size} for ${g.label}`);
    return n;
  }

  /** Maps a staging buffer that holds `size` bytes and returns a copy of them. */
  private async mapStaging(g: GpuTensor, staging: GPUBuffer, size: number): Promise<Uint8Array> {
    try {
      await staging.mapAsync(MAP_READ, 0, Math.max(4, size));
    } catch (e) {
      throw this.error ?? new BackendError(`read ${g.label}: mapping the staging buffer failed: ${(e as Error).message}`, { cause: e });
    }
    const copy = new Uint8Array(staging.getMappedRange(0, Math.max(4, size)).slice(0, size));
    staging.unmap();
    return copy;
  }

  recordRead(encoder: GPUCommandEncoder, g: GpuTensor, count: number | undefined): () => Promise<Float32Array | Int32Array> {
    const n = this.readCount(g, count);
    const size = 4 * n;
    // Too big for one staging buffer (never the case for a token id or logits): read after the step instead.
    if (size > Math.min(STAGING_CAP, this.device.limits.maxBufferSize)) return () => this.read(g, count);
    // Each step read gets a staging buffer no other pending read uses; it returns to the pool once mapped back.
    const staging = this.takeReadback(Math.max(4, size));
    copyOut(encoder, g, 0, size, staging);
    return async () => {
      try {
        const bytes = await this.mapStaging(g, staging, size);
        if (this.error) throw this.error;
        return g.dtype === 'f32' ? new Float32Array(bytes.buffer) : new Int32Array(bytes.buffer);
      } finally {
        if (!this.disposed) this.freeReadbacks.push(staging);
      }
    };
  }

  private takeReadback(bytes: number): GPUBuffer {
    const i = this.freeReadbacks.findIndex((b) => b.size >= bytes);
    if (i >= 0) return this.freeReadbacks.splice(i, 1)[0];
    let size = 256;
    while (size < bytes) size *= 2;
    const b = this.device.createBuffer({ label: `readback ${size}`, size, usage: USAGE.MAP_READ | USAGE.COPY_DST });
    this.readbacks.add(b);
    return b;
  }

  private stagingBuffer(bytes: number): GPUBuffer {
    let size = 256;
    while (size < bytes) size *= 2;
    let b = this.staging.get(size);
    if (!b) {
      b = this.device.createBuffer({ label: `staging ${size}`, size, usage: USAGE.MAP_READ | USAGE.COPY_DST });
      this.staging.set(size, b);
    }
    return b;
  }

  free(t: Tensor): void {
    const g = this.tensor(t, 'free');
    g.freed = true;
    this.tensors.delete(g);
    for (const key of this.bindingsByTensor.get(g.id) ?? []) {
      const b = this.bindings.get(key);
      if (b) {
        b.params.destroy();
        this.bindings.delete(key);
      }
    }
    this.bindingsByTensor.delete(g.id);
    for (const p of g.parts) p.buffer.destroy();
  }

  begin(rows: StepRows): Step {
    this.live('begin');
    return new WebGpuStep(this, checkStepRows(rows, this.maxRows));
  }

  /** @internal The bind group of a dispatch, made once per key and cached. */
  record(kernel: string, key: string, tensors: GpuTensor[], make: () => { params: Params; buffers: GPUBuffer[] }): CachedBinding {
    const hit = this.bindings.get(key);
    if (hit) return hit;
    const compiled = this.pipelines.get(kernel);
    if (!compiled) throw new BackendError(`WebGPU: no kernel named ${kernel}`);
    const { params, buffers } = make();
    const bytes = params.bytes();
    const pbuf = this.device.createBuffer({ label: key, size: bytes.byteLength, usage: USAGE.UNIFORM, mappedAtCreation: true });
    new Uint8Array(pbuf.getMappedRange()).set(new Uint8Array(bytes));
    pbuf.unmap();
    const bindGroup = this.device.createBindGroup({
      label: key,
      layout: compiled.layout,
      entries: [this.stepBuffer, pbuf, ...buffers].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const b = { pipeline: compiled.pipeline, bindGroup, params: pbuf };
    this.bindings.set(key, b);
    for (const t of tensors) {
      let s = this.bindingsByTensor.get(t.id);
      if (!s) this.bindingsByTensor.set(t.id, (s = new Set()));
      s.add(key);
    }
    return b;
  }

  /** @internal A scratch buffer of `bytes`, reused per kind and size. */
  scratch(kind: string, bytes: number): GPUBuffer {
    const key = `${kind}|${bytes}`;
    let b = this.scratchBuffers.get(key);
    if (!b) {
      b = this.device.createBuffer({ label: `scratch ${key}`, size: Math.max(16, Math.ceil(bytes / 4) * 4), usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST });
      this.scratchBuffers.set(key, b);
    }
    return b;
  }

  /**
   * The rotation table is sized once, at the first rope call, to the largest
   * seqLen of the KV caches allocated so far (f32 [layers, slots, seqLen, kvDim]
   * or [layers, seqLen, kvDim], kvDim a multiple of headSize), or to the
   * positions the step needs (its highest position + 1) if that is more. Only a
   * step past its capacity rebuilds it, at double the capacity (or more): an
   * allocation happens only when the position range grows, never per token in
   * steady state. An outgrown table may still be used by a recorded step that
   * is not submitted yet, so it is kept until dispose (with doubling, at most
   * as much memory again as the current table).
   */
  ropeTable(headSize: number, theta: number, positions: number, freqFactors?: Float32Array): GpuTensor {
    const key = `${headSize}|${theta}|${freqFactorsKey(freqFactors)}`;
    const cur = this.ropeTables.get(key);
    if (cur && cur.rows >= positions) return cur;
    let cap = positions;
    if (cur) {
      cap = Math.max(cap, 2 * cur.rows);
    } else {
      for (const t of this.tensors) {
        if (t.dtype !== 'f32' || (t.shape.length !== 3 && t.shape.length !== 4)) continue;
        const g = kvGeometry(t, 'rope');
        if (g.kvDim % headSize === 0) cap = Math.max(cap, g.seqLen);
      }
    }
    const desc: TensorDesc = { label: `rope table (head ${headSize}, theta ${theta}${freqFactors ? ', frequency factors' : ''}, ${cap} positions)`, shape: [cap, headSize], dtype: 'f32' };
    const { parts, check } = this.createBuffers(desc, true);
    try {
      for (const p of parts) fillRopeTable(new Float32Array(p.buffer.getMappedRange(), 0, p.e1 - p.e0), headSize, theta, p.r0, p.r1, freqFactors);
    } finally {
      for (const p of parts) p.buffer.unmap();
    }
    check.catch((e: BackendError) => (this.error ??= e));
    const table = new GpuTensor(desc, parts, this);
    if (cur) this.retiredRopeTables.push(cur);
    this.ropeTables.set(key, table);
    return table;
  }

  submitStep(words: Uint32Array<ArrayBuffer>, commands: GPUCommandBuffer): void {
    this.live('submit');
    // Written just before its own submission, so steps recorded out of order still see their own rows.
    this.device.queue.writeBuffer(this.stepBuffer, 0, words);
    this.device.queue.submit([commands]);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tensors) {
      t.freed = true;
      for (const p of t.parts) p.buffer.destroy();
    }
    this.tensors.clear();
    for (const t of [...this.ropeTables.values(), ...this.retiredRopeTables]) {
      t.freed = true;
      for (const p of t.parts) p.buffer.destroy();
    }
    this.ropeTables.clear();
    this.retiredRopeTables.length = 0;
    for (const b of this.bindings.values()) b.params.destroy();
    this.bindings.clear();
    this.bindingsByTensor.clear();
    for (const b of this.scratchBuffers.values()) b.destroy();
    this.scratchBuffers.clear();
    for (const b of this.staging.values()) b.destroy();
    this.staging.clear();
    for (const b of this.readbacks) b.destroy();
    this.freeReadbacks.length = 0;
    this.readbacks.clear();
    this.stepBuffer.destroy();
    this.profiler?.dispose();
    this.pipelines.clear();
    this.device.removeEventListener('uncapturederror', this.onError);
    // Dawn frees destroyed buffers only once a later submission completes. The
    // device itself is shared (or the caller's) and stays.
    this.device.queue.submit([]);
  }
}

/** Encodes the copy of bytes [c0, c1) of a (possibly split) tensor into the start of `staging`. */
function copyOut(enc: GPUCommandEncoder, g: GpuTensor, c0: number, c1: number, staging: GPUBuffer): void {
  for (const p of g.parts) {
    const s = Math.max(c0, 4 * p.e0);
    const e = Math.min(c1, 4 * p.e1);
    if (s < e) enc.copyBufferToBuffer(p.buffer, s - 4 * p.e0, staging, s - c0, e - s);
  }
}
