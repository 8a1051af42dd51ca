/**
 * Models by name. `aidreams260K` ships inside this package (models/, ~0.9 MiB
 * with its 512-token tokenizer; see models/LICENSE.md) and is the default, so
 * rama works offline from a fresh install; `stories15M` is downloaded once
 * into the cache (see download.ts). A -m value that names an existing file is
 * always that file; otherwise it may be one of these names.
 */
import { fileURLToPath } from 'node:url';

/** The built-in model and its tokenizer: `models/` next to `dist/` (and `src/`). */
export const BUILTIN_MODEL = {
  name: 'aidreams260K',
  model: fileURLToPath(new URL('../models/aidreams260K.bin', import.meta.url)),
  tokenizer: fileURLToPath(new URL('../models/tok512-aidreams.bin', import.meta.url)),
} as const;

/** The model `-m stories15M` downloads (with the Llama 2 tokenizer unless -t is given). */
export const DOWNLOADED_MODEL = 'stories15M';

/** Every name -m accepts besides a path. */
export const MODEL_NAMES: readonly string[] = [BUILTIN_MODEL.name, DOWNLOADED_MODEL];
