export { Tokenizer, BOS_ID, EOS_ID, MAX_TOKENIZER_BYTES, MAX_VOCAB_SIZE, looksLikeTokenizerJson } from './tokenizer.js';
export type { TokenizerOptions, EncodeOptions, LoadOptions, BPEOptions, TokenizerConfig } from './tokenizer.js';
export { GGUF_PRE_TOKENIZERS } from './pretokenize.js';
export type { GgufPreTokenizer } from './pretokenize.js';
export { TextStream, isPrintablePiece } from './text-stream.js';
export { Utf8Assembler } from './utf8.js';
