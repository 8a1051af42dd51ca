import type { Tokenizer } from './tokenizer.js';
import { Utf8Assembler } from './utf8.js';

/**
 * llama2.c's `safe_printf` filter, applied to a decoded piece: an empty piece
 * prints nothing, and neither does a single ASCII byte that is neither
 * printable (0x20..0x7E) nor whitespace (\t \n \v \f \r) — a control
 * character a model emits as a byte token.
 *
 * A single byte >= 0x80 passes here: it may be one part of a multi-byte
 * character spread over byte tokens, and the UTF-8 assembly in TextStream
 * decides whether it is kept. (llama2.c drops every such lone byte; the two
 * agree whenever the bytes do not form a valid character.)
 */
export function isPrintablePiece(piece: Uint8Array): boolean {
  if (piece.length === 0) return false;
  if (piece.length === 1) {
    const b = piece[0];
    if (b < 0x80 && !(b >= 0x20 && b <= 0x7e) && !(b >= 0x09 && b <= 0x0d)) return false;
  }
  return true;
}

/**
 * Turns generated tokens into text as they arrive. `push` returns only text
 * that is complete: a character split over several byte tokens comes out
 * whole, once, with its last byte; invalid bytes are dropped (see
 * Utf8Assembler).
 */
export class TextStream {
  private readonly utf8 = new Utf8Assembler();

  constructor(private readonly tokenizer: Tokenizer) {}

  /** Decodes `token` following `prev` (llama2.c's decode + safe_printf) and returns the newly completed text. */
  push(prev: number, token: number): string {
    const piece = this.tokenizer.decodePiece(prev, token);
    return isPrintablePiece(piece) ? this.utf8.push(piece) : '';
  }

  /** Ends the stream: an unfinished character is dropped. Returns any remaining text (always '' today). */
  flush(): string {
    return this.utf8.flush();
  }
}
