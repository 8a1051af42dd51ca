// Test helpers (not part of the package): a deterministic corpus of varied strings.
import { prng } from '@rama/testkit';

const FRAGMENTS: readonly string[] = [
  // English, contractions, punctuation
  'Once upon a time', 'the little dog ran home.', "I'm sure it's fine, isn't it?", "DON'T YOU'LL WE'VE THEY'RE", "he'd've",
  'Hello , world !', "a ' b", 'Wait... what?!', '"quoted" (parens) [brackets] {braces}', 'e-mail: a.b@c.org', 'https://example.com/a?b=c&d=e#f',
  // code
  'def foo(x):\n    return x**2  # square\n', 'for (let i = 0; i < n; i++) { sum += a[i]; }', 'x = [1, 2, 3]; y = {\'k\': "v"}',
  '#include <stdio.h>\nint main() { printf("%d\\n", 42); }', '$100.00 + 50% = ???', 'a->b && c || !d ^ ~e | f',
  // whitespace runs
  '   ', '\t\t', '\n\n\n', ' \n ', '\r\n', 'a  b   c    d', '\t tab\tand\nnewline ', '     leading', 'trailing     ',
  // digits
  '0', '12', '123', '1234567', '3.14159', '2024-01-01', '1,000,000', 'v1.2.3', '١٢٣', '①②', 'x²',
  // CJK, other scripts
  '日本語のテキストです。', '中文文本，标点。', '한국어 문장', 'Привет, мир', 'مرحبا بالعالم', 'שלום', 'ελληνικά', 'हिन्दी',
  // emoji
  '🦙', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇺🇸🇫🇷', '😀😃😄', '❤️',
  // accents, composed and combining
  'café naïve résumé', 'cafe\u0301', 'Å Ω ﬁ ㎏', 'Straße', 'Ærøskøbing',
  // special-token texts
  '<s>', '</s>', '<unk>', '<pad>', '<bos>', '<eos>', '<|begin_of_text|>', '<|eot_id|>', '<|start_header_id|>user<|end_header_id|>',
  '<|reserved_special_token_5|>', '<|endoftext|>', '<0x0A>', '<s', '|>',
  // odd characters
  '\u00a0nbsp\u00a0', 'zero\u200bwidth', '▁already▁metaspace', 'Ġbyte', '\u2028\u2029', '~~~', '____', '----', '....',
];

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const SEPARATORS = ['', ' ', ' ', '  ', '\n', '\t', ', ', '. ', '\n\n'];

/**
 * `count` strings, the same on every run: each joins 1-8 fragments (or a
 * random long word, or random code points) with varied separators. The
 * fixed edge cases come first: the empty string, lone whitespace, a very
 * long word, each fragment alone.
 */
export function corpus(count: number, seed = 1): string[] {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const out: string[] = ['', ' ', '  ', '\n', 'a', 'a'.repeat(300), 'supercalifragilisticexpialidocious'.repeat(20), ' '.repeat(100), '1'.repeat(50)];
  out.push(...FRAGMENTS);
  while (out.length < count) {
    const n = 1 + Math.floor(rand() * 8);
    let s = '';
    for (let i = 0; i < n; i++) {
      if (i > 0) s += pick(SEPARATORS);
      const r = rand();
      if (r < 0.75) s += pick(FRAGMENTS);
      else if (r < 0.9) s += Array.from({ length: 1 + Math.floor(rand() * 40) }, () => pick([...LETTERS])).join('');
      else s += randomCodePoints(rand, 1 + Math.floor(rand() * 6));
    }
    out.push(s);
  }
  return out;
}

/** Code points from a few ranges (Latin-1, Greek, CJK, symbols, emoji), no surrogates or controls. */
function randomCodePoints(rand: () => number, n: number): string {
  const ranges: [number, number][] = [[0xa1, 0xff], [0x391, 0x3c9], [0x4e00, 0x4fff], [0x2190, 0x21ff], [0x1f300, 0x1f64f], [0x20, 0x7e]];
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = ranges[Math.floor(rand() * ranges.length)];
    s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
  }
  return s;
}
