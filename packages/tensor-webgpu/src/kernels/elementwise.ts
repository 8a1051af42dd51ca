import { STEP_WGSL, Params, grid2, type KernelDef, type Recorder, type RowFlow } from './common.js';
import { elemChunks, type GpuTensor } from '../tensor.js';

/**
 * out = f(a, b) elementwise, over any split of the three tensors. `out` may
 * alias `a` or `b`: WebGPU forbids binding one buffer twice when one binding
 * is writable, so an aliased input is read through `out` in a variant kernel.
 */
export function elementwiseKernels(name: string, expr: string): KernelDef[] {
  const variants: [string, boolean, boolean][] = [
    [name, false, false],
    [`${name}_oa`, true, false],
    [`${name}_ob`, false, true],
    [`${name}_oab`, true, true],
  ];
  return variants.map(([vname, oa, ob]) => {
    const decls: string[] = [];
    let binding = 3;
    if (!oa) decls.push(`@group(0) @binding(${binding++}) var<storage, read> ina: array<f32>;`);
    if (!ob) decls.push(`@group(0) @binding(${binding++}) var<storage, read> inb: array<f32>;`);
    return {
      name: vname,
      storage: ['rw', ...(oa ? [] : ['read' as const]), ...(ob ? [] : ['read' as const])],
      wgsl: /* wgsl */ `${STEP_WGSL}
struct P { e0: u32, e1: u32, cols: u32, rowsWord: u32, outE0: u32, aE0: u32, bE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${decls.join('\n')}
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = p.e0 + gid.y * nwg.x * 64u + gid.x;
  if (e >= min(p.e1, rowCount(p.rowsWord) * p.cols)) { return; }
  let a = ${oa ? 'out[e - p.outE0]' : 'ina[e - p.aE0]'};
  let b = ${ob ? 'out[e - p.outE0]' : 'inb[e - p.bE0]'};
  out[e - p.outE0] = ${expr};
}`,
    };
  });
}

/** Applies the kernel to the first rows.count rows (the shader reads the count from the step buffer). */
export function elementwise(rec: Recorder, name: string, out: GpuTensor, a: GpuTensor, b: GpuTensor, rows: RowFlow): void {
  for (const ch of elemChunks([out, a, b], 0, rows.count * out.cols)) {
    const [op, ap, bp] = ch.parts;
    const oa = ap.buffer === op.buffer;
    const ob = bp.buffer === op.buffer;
    const kernel = `${name}${oa || ob ? '_o' : ''}${oa ? 'a' : ''}${ob ? 'b' : ''}`;
    const staticEnd = Math.min(op.e1, ap.e1, bp.e1);
    rec.dispatch(
      kernel,
      `${name}|${out.id}|${a.id}|${b.id}|${ch.e0}|${rows.word}`,
      [out, a, b],
      () => ({
        params: new Params().u(ch.e0).u(staticEnd).u(out.cols).u(rows.word).u(op.e0).u(ap.e0).u(bp.e0),
        buffers: [op.buffer, ...(oa ? [] : [ap.buffer]), ...(ob ? [] : [bp.buffer])],
      }),
      ...grid2(Math.ceil((ch.e1 - ch.e0) / 64)),
    );
  }
}
