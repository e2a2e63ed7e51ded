// `agent-attr init` and `agent-attr config check`: a starter config, and config errors that name
// the option and what was expected.
import { expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

test("init writes a commented starter config that passes config check, and never overwrites silently", async () => {
  const dir = tempDir();
  const init = await runCli(["init"], { cwd: dir });
  expect(init.exitCode).toBe(0);
  const file = join(dir, "agent-attr.config.ts");
  expect(existsSync(file)).toBe(true);
  expect(readFileSync(file, "utf8")).toContain("defineConfig");
  const check = await runCli(["config", "check"], { cwd: dir });
  expect(check.exitCode).toBe(0);
  expect(check.stdout).toContain("openai, anthropic, header-attribution, pricing, tiers, sqlite-audit");
  const again = await runCli(["init"], { cwd: dir });
  expect(again.exitCode).toBe(2);
  expect(again.stderr).toContain("--force");
});

test("a wrong option is reported by its path with what was expected", async () => {
  const dir = tempDir();
  writeFileSync(
    join(dir, "agent-attr.config.ts"),
    `import { defineConfig } from "agent-attr";\nexport default defineConfig({ server: { port: "eighty" as unknown as number, colour: "blue" } as never });\n`,
  );
  const check = await runCli(["config", "check"], { cwd: dir });
  expect(check.exitCode).toBe(3);
  expect(check.stderr).toContain("server.port");
  expect(check.stderr).toContain("expected number");
  expect(check.stderr).toContain("colour");
});

test("a wrong plugin option fails at start with the plugin's name", async () => {
  const dir = tempDir();
  writeFileSync(
    join(dir, "agent-attr.config.ts"),
    `import { defineConfig } from "agent-attr";\nimport { openaiCompatible } from "agent-attr/plugins";\nexport default defineConfig({ plugins: [openaiCompatible({ name: "ollama", baseURL: "not a url", models: [] })] });\n`,
  );
  const check = await runCli(["config", "check"], { cwd: dir });
  expect(check.exitCode).toBe(3);
  expect(check.stderr).toContain("openai-compatible");
  expect(check.stderr).toContain("baseURL");
  expect(check.stderr).toContain("models");
});

test("a config file given by --config that does not exist is named", async () => {
  const check = await runCli(["config", "check", "--config", "/nope/agent-attr.config.ts"]);
  expect(check.exitCode).toBe(3);
  expect(check.stderr).toContain("/nope/agent-attr.config.ts");
  expect(check.stderr).toContain("agent-attr init");
});
