// Test helpers (not part of the package): tokenizer.bin images built in memory.

/** Builds a tokenizer.bin image: header, then {score, len, bytes} per entry. */
export function build(maxLen: number, entries: [number, number[] | string][]): Uint8Array {
  const parts = entries.map(([score, piece]) => {
    const p = typeof piece === 'string' ? new TextEncoder().encode(piece) : Uint8Array.from(piece);
    const e = new Uint8Array(8 + p.length);
    const v = new DataView(e.buffer);
    v.setFloat32(0, score, true);
    v.setInt32(4, p.length, true);
    e.set(p, 8);
    return e;
  });
  const out = new Uint8Array(4 + parts.reduce((n, p) => n + p.length, 0));
  new DataView(out.buffer).setInt32(0, maxLen, true);
  let at = 4;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A tiny vocab with byte fallback: <unk> <s> </s>, 256 byte tokens, then merges. */
export function tiny(extra: [number, string][] = []): Uint8Array {
  const bytes: [number, string][] = Array.from({ length: 256 }, (_, b) => [0, `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`]);
  return build(8, [[0, '<unk>'], [0, '\n<s>\n'], [0, '\n</s>\n'], ...bytes, [-1, ' '], ...extra]);
}
