import { STEP_WGSL, Params, expect, expectDtype, singlePart, type KernelDef, type Recorder } from './common.js';
import { rowChunks, type GpuTensor } from '../tensor.js';

// The embedding lookup (docs/guide/embeddings.md): out[r] = table[tokens[r]]
// for each of the step's rows, one invocation per (column, row): a copy, exact.
// The token is only known on the device (greedy decoding's argmax wrote it), so
// each part of a split table gets its own dispatch and writes the rows it holds.
export const embedKernels: KernelDef[] = [
  {
    name: 'embed',
    storage: ['rw', 'read', 'read'],
    wgsl: /* wgsl */ `${STEP_WGSL}
struct P { cols: u32, rStart: u32, rEnd: u32, outRow0: u32, tab0: u32, tab1: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> tab: array<f32>;
@group(0) @binding(4) var<storage, read> tokens: array<i32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let r = p.rStart + gid.y;
  if (c >= p.cols || r >= p.rEnd || r >= rowCount(0u)) { return; }
  let t = tokens[r];
  if (t < i32(p.tab0) || t >= i32(p.tab1)) { return; }
  out[(r - p.outRow0) * p.cols + c] = tab[(u32(t) - p.tab0) * p.cols + c];
}`,
  },
];

export function embed(rec: Recorder, out: GpuTensor, table: GpuTensor, tokens: GpuTensor): void {
  expectDtype('embed', table, 'f32');
  expectDtype('embed', tokens, 'i32');
  expectDtype('embed', out, 'f32');
  expect(table.cols === out.cols, 'embed', `${out.label} has ${out.cols} columns, ${table.label} has ${table.cols}`);
  const rows = rec.rows;
  expect(tokens.size >= rows, 'embed', `${tokens.label} holds ${tokens.size} tokens, ${rows} needed`);
  const tok = singlePart('embed', tokens);
  for (const ch of rowChunks('embed', [out], rows)) {
    const op = ch.parts[0];
    table.parts.forEach((tp, ti) => {
      rec.dispatch(
        'embed',
        `embed|${out.id}|${table.id}|${tokens.id}|${ch.r0}|${ti}`,
        [out, table, tokens],
        () => ({
          params: new Params().u(out.cols).u(ch.r0).u(ch.end).u(op.r0).u(tp.r0).u(tp.r1),
          buffers: [op.buffer, tp.buffer, tok],
        }),
        Math.ceil(out.cols / 64),
        ch.r1 - ch.r0,
      );
    });
  }
}
