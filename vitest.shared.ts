import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { UserConfig } from "vitest/config"

const root = path.dirname(fileURLToPath(import.meta.url))

/**
 * Tests run against the TypeScript sources: `@sluice/x` and `@sluice/x/Module`
 * resolve to `packages/x/src`, so `pnpm test` needs no build first.
 */
export const shared = (name: string): UserConfig => ({
  resolve: {
    alias: [
      { find: /^@sluice\/([a-z-]+)$/, replacement: path.join(root, "packages/$1/src/index.ts") },
      { find: /^@sluice\/([a-z-]+)\/(.+)$/, replacement: path.join(root, "packages/$1/src/$2.ts") }
    ]
  },
  test: {
    name,
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
