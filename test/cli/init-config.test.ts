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

test("the starter config's commented budget alert, uncommented, passes config check once its secret is set", async () => {
  const dir = tempDir();
  expect((await runCli(["init"], { cwd: dir })).exitCode).toBe(0);
  const file = join(dir, "agent-attr.config.ts");
  const starter = readFileSync(file, "utf8");
  const enabled = starter.replace("// alerts: [", "alerts: [").replace("// finance: {", "finance: {");
  expect(enabled).not.toBe(starter);
  expect(enabled).toContain('alerts: [{ budget: "costPerMonth"');
  writeFileSync(file, enabled);
  const env = { AGENT_ATTR_ALERT_SECRET: "" };
  const missing = await runCli(["config", "check"], { cwd: dir, env });
  expect(missing.exitCode).toBe(3);
  expect(missing.stderr).toContain("webhooks.finance.secretEnv names AGENT_ATTR_ALERT_SECRET, which is not set");
  const check = await runCli(["config", "check"], { cwd: dir, env: { AGENT_ATTR_ALERT_SECRET: "0123456789abcdef0123" } });
  expect(check.stderr).toBe("");
  expect(check.exitCode).toBe(0);
});
