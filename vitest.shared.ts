// Shared vitest settings: tests import workspace packages from their TypeScript
// sources (the "@rama/source" export condition), so a change is tested without a rebuild.
import { defineConfig } from 'vitest/config';

export const conditions = ['@rama/source', 'import', 'module', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    pool: 'forks',
    // lifecycle tests call gc() so that what they measure is retained memory, not garbage not yet collected
    poolOptions: { forks: { execArgv: ['--expose-gc'] } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: {
      VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? '/usr/lib/chromium/vk_swiftshader_icd.json',
      NODEVICE_SELECT: '1',
    },
  },
});
