import { defineConfig } from "vitest/config"

// Projects are listed in vitest.workspace.ts. On CI a JSON report is written too,
// so .ci/run can print one plain "N passed, N failed" line.
export default defineConfig({
  test: {
    reporters: process.env["CI"] ? ["default", ["json", { outputFile: ".ci/test-results.json" }]] : ["default"]
  }
})
