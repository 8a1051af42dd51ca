export { Tokenizer, BOS_ID, EOS_ID, MAX_TOKENIZER_BYTES, MAX_VOCAB_SIZE } from './tokenizer.js';
export type { TokenizerOptions, EncodeOptions } from './tokenizer.js';
export { TextStream, isPrintablePiece } from './text-stream.js';
export { Utf8Assembler } from './utf8.js';
