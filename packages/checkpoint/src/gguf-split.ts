/**
 * Multi-file GGUF models, as llama.cpp's gguf-split writes them
 * (`model-00001-of-00003.gguf`, ...): every split is a GGUF file with the
 * u16 `split.no` (0-based), u16 `split.count` and i32 `split.tensors.count`
 * (the model's tensors over all splits); the first split carries the model's
 * metadata; each tensor is in exactly one split. Opened together they read
 * as one GGUFFile.
 */
import { ArgumentError, FormatError } from '@rama/core';
import { openGGUF, type GGUFFile, type GGUFTensorInfo, type OpenGGUFOptions } from './gguf.js';

/** One GGUF file: a path (Node), a Blob or File, or its bytes. */
export type GGUFSource = string | Blob | ArrayBuffer | Uint8Array;

/** llama.cpp's split file names: `{prefix}-{no:05}-of-{count:05}.gguf`, `no` 1-based. */
const SPLIT_NAME = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

/** For a path named like a split, every split's path (in order); undefined otherwise. */
export function ggufSplitPaths(path: string): string[] | undefined {
  const m = SPLIT_NAME.exec(path);
  if (!m) return undefined;
  const count = Number(m[3]);
  if (count < 1 || Number(m[2]) < 1 || Number(m[2]) > count) return undefined;
  return Array.from({ length: count }, (_, i) => `${m[1]}-${String(i + 1).padStart(5, '0')}-of-${m[3]}.gguf`);
}

/** A split's `split.*` keys, checked; undefined for a file that is not a split. */
function splitInfo(f: GGUFFile): { no: number; count: number; tensors: number } | undefined {
  const no = f.metadata.get('split.no');
  const count = f.metadata.get('split.count');
  const tensors = f.metadata.get('split.tensors.count');
  if (no === undefined && count === undefined && tensors === undefined) return undefined;
  const int = (key: string, v: unknown, min: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      throw new FormatError(`${f.source}: ${key} is ${String(v)}, expected an integer >= ${min} (a gguf-split file has split.no, split.count and split.tensors.count)`);
    }
    return v;
  };
  return { no: int('split.no', no, 0), count: int('split.count', count, 1), tensors: int('split.tensors.count', tensors, 0) };
}

/**
 * Opens a model's GGUF splits (paths, Blobs or bytes, in any order) as one
 * file: metadata of the first split, tensors of all. Each must be a split of
 * the same model (same split.count, every split.no from 0 once) and their
 * tensors must be split.tensors.count distinct names; anything else is a
 * FormatError naming the file.
 */
export async function openGGUFSplits(sources: readonly GGUFSource[], opts: OpenGGUFOptions = {}): Promise<GGUFFile> {
  if (!Array.isArray(sources) || sources.length === 0) throw new ArgumentError('openGGUFSplits: expected a non-empty array of GGUF splits');
  const files: GGUFFile[] = [];
  try {
    for (const s of sources) files.push(await openGGUF(s, { ...opts, name: undefined }));
    return joinSplits(files);
  } catch (e) {
    await Promise.all(files.map((f) => f.close().catch(() => {})));
    throw e;
  }
}

/** One GGUFFile over already opened splits (which it then owns). */
export function joinSplits(files: readonly GGUFFile[]): GGUFFile {
  const infos = files.map((f) => {
    const info = splitInfo(f);
    if (!info) {
      if (files.length === 1) return { no: 0, count: 1, tensors: f.tensors.size };
      throw new FormatError(`${f.source}: has no split.no/split.count: not a gguf-split file, so it cannot be one of ${files.length} splits`);
    }
    return info;
  });
  const count = infos[0].count;
  const bySplit: GGUFFile[] = new Array(count);
  infos.forEach((info, i) => {
    const f = files[i];
    if (info.count !== count) throw new FormatError(`${f.source}: split.count is ${info.count}, but ${files[0].source} says ${count}: splits of different models?`);
    if (info.no >= count) throw new FormatError(`${f.source}: split.no is ${info.no}, outside 0..${count - 1} (split.count ${count})`);
    if (bySplit[info.no]) throw new FormatError(`${f.source} and ${bySplit[info.no].source} are both split ${info.no + 1} of ${count}`);
    bySplit[info.no] = f;
  });
  // No split is given twice and none is out of range: all are here when the counts agree.
  if (files.length !== count) {
    const which = Array.from({ length: count }, (_, i) => i).filter((i) => !bySplit[i]).map((i) => i + 1);
    throw new FormatError(`${files[0].source}: the model has ${count} splits, ${files.length} given (missing split${which.length === 1 ? '' : 's'} ${which.join(', ')})`);
  }
  const first = bySplit[0];
  const expected = infos[files.indexOf(first)].tensors;
  const tensors = new Map<string, GGUFTensorInfo>();
  const owner = new Map<GGUFTensorInfo, GGUFFile>();
  for (const f of bySplit) {
    const info = infos[files.indexOf(f)];
    if (info.tensors !== expected) throw new FormatError(`${f.source}: split.tensors.count is ${info.tensors}, but ${first.source} says ${expected}`);
    for (const [name, t] of f.tensors) {
      const other = tensors.get(name);
      if (other) throw new FormatError(`${f.source}: tensor ${name} is also in ${owner.get(other)!.source}: a tensor must be in one split only`);
      tensors.set(name, t);
      owner.set(t, f);
    }
  }
  if (tensors.size !== expected) {
    throw new FormatError(`${first.source}: its ${count} splits hold ${tensors.size} tensors, but split.tensors.count is ${expected}: a split is incomplete or from another model`);
  }
  if (count === 1) return first;
  return {
    source: first.source,
    version: first.version,
    fileSize: bySplit.reduce((a, f) => a + f.fileSize, 0),
    alignment: first.alignment,
    dataOffset: first.dataOffset,
    metadata: first.metadata,
    tensors,
    readInto(t, dst, offset) {
      const f = owner.get(t);
      if (!f) throw new ArgumentError(`${first.source}: readInto(${t.name}): not a tensor of this model`);
      return f.readInto(t, dst, offset);
    },
    async close() {
      await Promise.all(bySplit.map((f) => f.close()));
    },
  };
}
