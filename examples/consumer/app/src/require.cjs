// CommonJS: require('@rama/llama') either works (Node >= 20.19 loads ES modules
// with require) or fails with a message that says to use import.
try {
  const { Llama } = require('@rama/llama');
  if (typeof Llama?.load !== 'function') throw new Error('require(@rama/llama) gave no Llama.load');
  console.log('require: works');
} catch (e) {
  if (!/import/.test(String(e?.message))) throw e;
  console.log(`require: refused, saying to use import (${e.code ?? e.name})`);
}
