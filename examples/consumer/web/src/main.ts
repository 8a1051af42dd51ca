// A browser app built with Vite: WebGPU when there is an adapter, else the CPU.
import { Llama } from '@rama/llama';
import { WebGpuBackend } from '@rama/tensor-webgpu';

const bytes = async (url: string) => new Uint8Array(await (await fetch(url)).arrayBuffer());
const out = document.getElementById('out')!;

const llama = await Llama.load({ model: await bytes('/aidreams260K.bin'), tokenizer: await bytes('/tok512-aidreams.bin'), backend: 'auto' });
for await (const t of llama.generate('I dreamed of', { steps: 40, temperature: 0 })) out.textContent += t.text;
out.dataset.backend = llama.backend.name;
out.dataset.webgpu = String(typeof WebGpuBackend);
llama.dispose();
