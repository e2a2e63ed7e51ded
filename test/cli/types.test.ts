// Types for users of the binary: `agent-attr init` writes agent-attr-env.d.ts beside the config
// (and references it), so a config and a plugin outside this repository, with no node_modules,
// type-check with tsc — and a misspelled option is a type error, not `any`. The declarations are
// generated from the sources (src/cli/types/generate.ts); the committed copy must be current.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { declarationFile, generateDeclarations } from "../../src/cli/types/generate.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { typeCheck } from "../helpers/tsc.ts";

test("the committed declarations are the ones the sources give (run 'bun run types' after changing the public API)", async () => {
  expect(await generateDeclarations()).toBe(readFileSync(declarationFile, "utf8"));
}, 30_000);

test("init writes the types beside the config: it and a plugin outside the repo type-check with tsc; a misspelled option does not", async () => {
  const dir = tempDir();
  const init = await runCli(["init"], { cwd: dir });
  expect(init.exitCode).toBe(0);
  expect(readFileSync(join(dir, "agent-attr-env.d.ts"), "utf8")).toBe(readFileSync(declarationFile, "utf8"));
  expect(readFileSync(join(dir, "agent-attr.config.ts"), "utf8")).toStartWith('/// <reference path="./agent-attr-env.d.ts" />\n');
  // The README's plugin example, and a config using it with typed options.
  writeFileSync(
    join(dir, "team-tags.ts"),
    `import { ProxyError, definePlugin } from "agent-attr";
const owners: Record<string, string> = { "code-review-bot": "platform" };
export default definePlugin({
  name: "team-tags",
  attribute(ctx) {
    const agent = ctx.request.headers.get("x-agent-id");
    return agent && owners[agent] ? { session_id: \`team:\${owners[agent]}\` } : null;
  },
  limit: { check(ctx) { if (!ctx.attribution.agent_id) throw new ProxyError("forbidden", "no agent"); } },
});
`,
  );
  writeFileSync(
    join(dir, "team.config.ts"),
    `/// <reference path="./agent-attr-env.d.ts" />
import { defineConfig } from "agent-attr";
import { apiKeys, openai, sqliteAudit, tiers } from "agent-attr/plugins";
import teamTags from "./team-tags.ts";
export default defineConfig({
  server: { port: 9090, log: { format: "json", level: "warn" } },
  plugins: [openai({ models: ["gpt-*"] }), apiKeys({ onMismatch: "record" }), teamTags, tiers({ tiers: { free: { requestsPerMinute: 5 } }, default: "free" }), sqliteAudit()],
  audit: { checkpoint: { everyRecords: 100 } },
});
`,
  );
  const good = typeCheck(dir, ["agent-attr.config.ts", "team.config.ts"]);
  expect(good.output).toBe("");
  expect(good.exitCode).toBe(0);

  writeFileSync(
    join(dir, "typo.config.ts"),
    `/// <reference path="./agent-attr-env.d.ts" />
import { defineConfig } from "agent-attr";
import { openai } from "agent-attr/plugins";
export default defineConfig({ server: { prot: 8080 }, plugins: [openai({ baseUrl: "http://x" })], audit: { failOpen: "yes" } });
`,
  );
  const typo = typeCheck(dir, ["typo.config.ts"]);
  expect(typo.exitCode).not.toBe(0);
  expect(typo.output).toContain("'prot' does not exist");
  expect(typo.output).toContain("Did you mean to write 'baseURL'?");
  expect(typo.output).toContain("typo.config.ts(4,");
}, 30_000);

test("agent-attr types writes only the types, and says how to reference them from an existing config", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "agent-attr.config.ts"), "export default {};\n");
  const result = await runCli(["types"], { cwd: dir });
  expect(result.exitCode).toBe(0);
  expect(readFileSync(join(dir, "agent-attr-env.d.ts"), "utf8")).toBe(readFileSync(declarationFile, "utf8"));
  expect(result.stdout).toContain('/// <reference path="./agent-attr-env.d.ts" />');
  expect(readFileSync(join(dir, "agent-attr.config.ts"), "utf8")).toBe("export default {};\n");
});
