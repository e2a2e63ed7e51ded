// `agent-attr pricing show MODEL`: the price a call would be charged, and where it comes from.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

test("catalog prices of both providers, per million tokens, with their source", async () => {
  const dir = tempDir();
  const sonnet = await runCli(["pricing", "show", "claude-sonnet-4-6"], { cwd: dir });
  expect(sonnet.exitCode).toBe(0);
  expect(sonnet.stdout).toContain("claude-sonnet-4-6 via anthropic: genai-prices@0.1.8:anthropic/claude-sonnet-4-6");
  expect(sonnet.stdout).toMatch(/cache write \(1 hour\)\s+\$6\.00/);
  expect(sonnet.stdout).toMatch(/output\s+\$15\.00/);
  expect(sonnet.stdout).not.toContain("via openai"); // a provider that knows no price is noise here
  const gpt = await runCli(["pricing", "show", "gpt-4o", "--format", "json"], { cwd: dir });
  expect(JSON.parse(gpt.stdout)).toEqual({
    model: "gpt-4o",
    input_tokens: 1000,
    providers: expect.arrayContaining([
      {
        provider: "openai",
        source: "genai-prices@0.1.8:openai/gpt-4o",
        rates: { input: "2.50", cached_input: "1.25", cache_write: "2.50", cache_write_1h: "2.50", output: "10.00" },
      },
    ]),
  });
});

test("config prices, long-context tiers, local models and unknown models", async () => {
  const dir = tempDir();
  writeFileSync(
    join(dir, "agent-attr.config.ts"),
    `import { defineConfig } from "agent-attr";
import { headerAttribution, openai, openaiCompatible, pricing, sqliteAudit } from "agent-attr/plugins";
export default defineConfig({
  plugins: [
    openaiCompatible({ name: "ollama", baseURL: "http://127.0.0.1:9/v1", models: ["llama*"] }),
    openaiCompatible({ name: "google", baseURL: "http://127.0.0.1:9/v1", models: ["gemini*"], catalog: "google" }),
    openai(),
    headerAttribution(),
    pricing({ models: { "house-*": { input: 0.5, cachedInput: 0.05, output: 1.5 } } }),
    sqliteAudit(),
  ],
});
`,
  );
  const house = await runCli(["pricing", "show", "house-7b"], { cwd: dir });
  expect(house.stdout).toContain("house-7b via openai: config:models[house-*]");
  expect(house.stdout).toMatch(/cached input\s+\$0\.05/);
  const small = await runCli(["pricing", "show", "gemini-2.5-pro", "--format", "json"], { cwd: dir });
  expect(JSON.parse(small.stdout).providers[0].rates).toMatchObject({ input: "1.25", output: "10.00" });
  const long = await runCli(["pricing", "show", "gemini-2.5-pro", "--input-tokens", "300000", "--format", "json"], { cwd: dir });
  expect(JSON.parse(long.stdout).providers[0].rates).toMatchObject({ input: "2.50", output: "15.00" });
  const local = await runCli(["pricing", "show", "llama3.1:8b"], { cwd: dir });
  expect(local.stdout).toContain("llama3.1:8b via ollama: free:ollama");
  expect(local.stdout).toMatch(/input\s+\$0\.00/);
  const unknown = await runCli(["pricing", "show", "mystery-9"], { cwd: dir });
  expect(unknown.exitCode).toBe(0);
  expect(unknown.stdout).toContain("mystery-9 via openai: unpriced");
  const none = await runCli(["pricing", "show", "gpt-4o", "--provider", "nope"], { cwd: dir });
  expect(none.exitCode).toBe(2);
  expect(none.stderr).toContain("No configured provider serves model 'gpt-4o' as 'nope'");
});
