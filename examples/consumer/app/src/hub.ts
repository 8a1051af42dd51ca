// The README's "Hub model in three lines", typechecked as an app would write
// it (not run: the tests reach no network; @rama/hub's own tests download from
// a local imitation of the Hub).
import { Llama } from '@rama/llama';

export async function hubStory(): Promise<void> {
  const llama = await Llama.load({ model: 'hf:owner/repo/model-q8_0.gguf', onProgress: (p) => console.log(p.file, p.loaded, p.total) });
  for await (const t of llama.chat([{ role: 'user', content: 'Tell me a story' }])) process.stdout.write(t.text);
  llama.dispose();
}
