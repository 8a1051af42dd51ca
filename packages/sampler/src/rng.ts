/**
 * llama2.c's xorshift* generator (64-bit state), so that a seed reproduces
 * llama2.c's samples bit for bit.
 */
const MASK64 = (1n << 64n) - 1n;

/** llama2.c's random number generator: seed it with llama2.c's `-s` value to get its coins. */
export class Rng {
  private state: bigint;

  constructor(seed: number | bigint) {
    this.state = BigInt.asUintN(64, BigInt(seed));
  }

  /** random_u32: s ^= s >> 12; s ^= s << 25; s ^= s >> 27; (s * 0x2545F4914F6CDD1D) >> 32 */
  nextU32(): number {
    let s = this.state;
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & MASK64;
    s ^= s >> 27n;
    this.state = s;
    return Number(((s * 0x2545f4914f6cdd1dn) & MASK64) >> 32n);
  }

  /** random_f32: a float in [0, 1) from the top 24 bits. */
  nextF32(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }
}
