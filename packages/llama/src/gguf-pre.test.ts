/**
 * GGUF `gpt2` vocabularies with each supported `tokenizer.ggml.pre`: the
 * Llama 3 fixture with its "llama-bpe" rewritten to another name
 * (general.name grows or shrinks to keep every offset), read through
 * ggufTokenizer. The pre-tokenizers themselves are checked against Hugging
 * Face's in @rama/tokenizer; here, that the GGUF value picks them and that an
 * unknown one is refused naming it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FormatError } from '@rama/core';
import { openGGUF } from '@rama/checkpoint';
import { missingMessage, sharedFile } from '@rama/testkit';
import { GGUF_PRE_TOKENIZERS, Tokenizer } from '@rama/tokenizer';
import { ggufTokenizer } from './gguf.js';
import { ggufSpec } from './spec.js';

const FIXTURE = 'gguf/llama3-bpe-tiny-f16.gguf';

/** The file with the string value of `key` set to `value`, general.name padded or cut so the header keeps its size. */
function withString(bytes: Uint8Array, key: string, value: string): Uint8Array {
  const buf = Buffer.from(bytes);
  const valueAt = (k: string): { lenAt: number; len: number } => {
    const at = buf.indexOf(k);
    const lenAt = at + k.length + 4; // after the key, its uint32 type
    return { lenAt, len: Number(buf.readBigUInt64LE(lenAt)) };
  };
  const name = valueAt('general.name');
  const pre = valueAt(key);
  expect(name.lenAt).toBeLessThan(pre.lenAt);
  const delta = value.length - pre.len;
  const oldName = buf.subarray(name.lenAt + 8, name.lenAt + 8 + name.len).toString();
  const newName = delta <= 0 ? oldName + 'x'.repeat(-delta) : oldName.slice(0, oldName.length - delta);
  const out = Buffer.concat([
    buf.subarray(0, name.lenAt), u64(newName.length), Buffer.from(newName),
    buf.subarray(name.lenAt + 8 + name.len, pre.lenAt), u64(value.length), Buffer.from(value),
    buf.subarray(pre.lenAt + 8 + pre.len),
  ]);
  expect(out.length).toBe(buf.length);
  return new Uint8Array(out);
}

const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

describe('GGUF tokenizer.ggml.pre picks the pre-tokenizer', () => {
  const text = "I'm 12345 tokens, ①② and 日本語!! x=[1,2]";
  for (const pre of ['qwen2', 'smollm', 'default', 'gpt-2', 'llama3']) {
    it(pre, async (ctx) => {
      const path = sharedFile(FIXTURE);
      if (!path) return ctx.skip(missingMessage(FIXTURE));
      const file = await openGGUF(withString(new Uint8Array(readFileSync(path)), 'tokenizer.ggml.pre', pre));
      try {
        expect(file.metadata.get('tokenizer.ggml.pre')).toBe(pre);
        const tok = ggufTokenizer(file, ggufSpec(file.metadata, file.tensors, file.source));
        const tokens = file.metadata.get('tokenizer.ggml.tokens') as string[];
        const merges = file.metadata.get('tokenizer.ggml.merges') as string[];
        const direct = Tokenizer.fromBPE(tokens, merges, { bosId: 128000, eosId: 128001, pre });
        expect(tok.encode(text)).toEqual(direct.encode(text));
        expect(tok.cleanup).toBe(GGUF_PRE_TOKENIZERS[pre].cleanSpaces ? 'llama.cpp' : 'none');
        // Number runs tell them apart: Qwen2 and SmolLM cut every digit; the others keep "123" (a token here) whole.
        const digits = tok.encode('12345', { bos: false }).map((id) => tokens[id]);
        expect(digits).toEqual(pre === 'qwen2' || pre === 'smollm' ? ['1', '2', '3', '4', '5'] : ['123', '45']);
      } finally {
        await file.close();
      }
    });
  }

  it('an unknown name is a FormatError naming it', async (ctx) => {
    const path = sharedFile(FIXTURE);
    if (!path) return ctx.skip(missingMessage(FIXTURE));
    const file = await openGGUF(withString(new Uint8Array(readFileSync(path)), 'tokenizer.ggml.pre', 'falcon'));
    try {
      expect(() => ggufTokenizer(file, ggufSpec(file.metadata, file.tensors, file.source))).toThrow(FormatError);
      expect(() => ggufTokenizer(file, ggufSpec(file.metadata, file.tensors, file.source))).toThrow(/: tokenizer\.ggml\.pre "falcon" is not a supported pre-tokenizer/);
    } finally {
      await file.close();
    }
  });
});
