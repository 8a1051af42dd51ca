/**
 * Incremental UTF-8 assembly for streamed token bytes.
 *
 * Tokens may split one character over several byte tokens (an emoji arrives as
 * four `<0xF0>` `<0x9F>` ... pieces), so bytes are held until their character
 * is complete, and emitted exactly once, whole.
 *
 * Bytes that cannot be part of well-formed UTF-8 (Unicode's table of
 * well-formed byte sequences, Table 3-7) are dropped silently rather than
 * replaced with U+FFFD: llama2.c skips single-byte pieces that are not
 * printable, so a stray high byte never reaches its output, and dropping keeps
 * our text byte-for-byte equal to what llama2.c prints.
 */
export class Utf8Assembler {
  /** Code point bits collected so far for the pending character. */
  private cp = 0;
  /** Continuation bytes still needed (0: nothing pending). */
  private need = 0;
  /** Allowed range of the next continuation byte; tighter than 80..BF right after E0, ED, F0, F4. */
  private lo = 0x80;
  private hi = 0xbf;

  /** True while a multi-byte character has started but not finished. */
  get pending(): boolean {
    return this.need > 0;
  }

  /** Feeds bytes; returns the text of every character they completed. */
  push(bytes: Uint8Array): string {
    let out = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (this.need > 0) {
        if (b >= this.lo && b <= this.hi) {
          this.cp = (this.cp << 6) | (b & 0x3f);
          this.lo = 0x80;
          this.hi = 0xbf;
          if (--this.need === 0) out += String.fromCodePoint(this.cp);
          continue;
        }
        // The pending sequence is broken: drop it, and let this byte start afresh.
        this.need = 0;
      }
      this.start(b);
      if (this.need === 0 && b < 0x80) out += String.fromCharCode(b);
    }
    return out;
  }

  /** Ends the stream: an unfinished character is dropped. Returns '' (kept for symmetry with push). */
  flush(): string {
    this.reset();
    return '';
  }

  /** Drops any unfinished character and starts over. */
  reset(): void {
    this.need = 0;
    this.cp = 0;
    this.lo = 0x80;
    this.hi = 0xbf;
  }

  /** Begins a character at a byte outside any sequence; bytes that cannot lead one are ignored. */
  private start(b: number): void {
    if (b >= 0xc2 && b <= 0xdf) {
      this.need = 1;
      this.cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      this.need = 2;
      this.cp = b & 0x0f;
      // E0 80..9F would be overlong; ED A0..BF would encode a UTF-16 surrogate.
      this.lo = b === 0xe0 ? 0xa0 : 0x80;
      this.hi = b === 0xed ? 0x9f : 0xbf;
    } else if (b >= 0xf0 && b <= 0xf4) {
      this.need = 3;
      this.cp = b & 0x07;
      // F0 80..8F would be overlong; F4 90..BF would pass U+10FFFF.
      this.lo = b === 0xf0 ? 0x90 : 0x80;
      this.hi = b === 0xf4 ? 0x8f : 0xbf;
    }
    // 00..7F is a whole character (the caller emits it); 80..BF (a lone
    // continuation), C0, C1 (always overlong) and F5..FF (beyond U+10FFFF)
    // can never start a character and are dropped.
  }
}
