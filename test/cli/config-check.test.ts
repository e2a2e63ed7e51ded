// `config check` runs the same validation as `proxy start` (one function, ./src/server/startup-check.ts),
// so a config it passes is one the proxy starts with; it reports every problem at once, with file and
// line where there is one, and never opens a database or a port.
import { expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cliPath, runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

function configIn(text: string): { dir: string; file: string } {
  const dir = tempDir();
  const file = join(dir, "agent-attr.config.ts");
  writeFileSync(file, text);
  return { dir, file };
}

const refused: Record<string, { config: string; env?: Record<string, string>; says: string }> = {
  "two plugins that provide the primary store": {
    config: `import { defineConfig, definePlugin } from "agent-attr";\nimport { openai, sqliteAudit } from "agent-attr/plugins";\nconst mine = definePlugin({ name: "my-store", auditStore: sqliteAudit().auditStore });\nexport default defineConfig({ plugins: [openai(), sqliteAudit(), mine] });\n`,
    says: "Plugins sqlite-audit, my-store each provide the primary audit store",
  },
  "a --log-db URL no store serves (its password never shown)": {
    config: `export default {};\n`,
    env: { AGENT_ATTR_LOG_DB: "mysql://audit:s3cret-pw@db.internal/trail" },
    says: "this build has no audit store for mysql://",
  },
  "a SQLite store in memory": {
    config: `import { defineConfig } from "agent-attr";\nimport { openai, sqliteAudit } from "agent-attr/plugins";\nexport default defineConfig({ plugins: [openai(), sqliteAudit({ path: ":memory:" })] });\n`,
    says: "':memory:' would be lost with the process",
  },
  "two plugins with one name": {
    config: `import { defineConfig } from "agent-attr";\nimport { openai, sqliteAudit } from "agent-attr/plugins";\nexport default defineConfig({ plugins: [openai(), openai(), sqliteAudit()] });\n`,
    says: "Two plugins are named 'openai'",
  },
  "the network without an admin token": {
    config: `export default { server: { host: "0.0.0.0" } };\n`,
    env: { AGENT_ATTR_ADMIN_TOKEN: "" },
    says: "Refusing to listen on 0.0.0.0 without an admin token",
  },
  "a token env that is unset": {
    config: `export default { admin: { tokens: [{ tokenEnv: "CHECK_TEST_UNSET_TOKEN", role: "auditor" }] } };\n`,
    says: "CHECK_TEST_UNSET_TOKEN, but it is not set",
  },
  "a wrong log level": {
    config: `export default {};\n`,
    env: { AGENT_ATTR_LOG_LEVEL: "loud" },
    says: "AGENT_ATTR_LOG_LEVEL is 'loud'",
  },
  "an audit folder that does not exist": {
    config: `export default { audit: { logDb: "/nonexistent-folder/audit.db" } };\n`,
    says: "the folder /nonexistent-folder does not exist",
  },
};

for (const [name, { config, env, says }] of Object.entries(refused)) {
  test(`config check refuses what proxy start refuses: ${name}`, async () => {
    const { dir } = configIn(config);
    const check = await runCli(["config", "check"], { cwd: dir, env });
    const start = await runCli(["proxy", "start", "--port", "0"], { cwd: dir, env, timeoutMs: 10_000 });
    expect({ check: check.exitCode, start: start.exitCode }).toEqual({ check: 3, start: 3 });
    expect(check.stderr).toContain(says);
    expect(start.stderr).toContain(says);
    expect(`${check.stderr}${start.stderr}`).not.toContain("s3cret-pw");
    // Checking created nothing: no database, no key file.
    expect(readdirSync(dir)).toEqual(["agent-attr.config.ts"]);
  }, 15_000);
}

test("every problem at once, each with file and line", async () => {
  const { dir } = configIn(
    [
      `import { defineConfig } from "agent-attr";`,
      `import { openai, sqliteAudit } from "agent-attr/plugins";`,
      `export default defineConfig({`,
      `  server: {`,
      `    host: "0.0.0.0",`,
      `  },`,
      `  plugins: [openai(), openai(), sqliteAudit({ path: ":memory:" })],`,
      `});`,
      ``,
    ].join("\n"),
  );
  const check = await runCli(["config", "check"], { cwd: dir, env: { AGENT_ATTR_ADMIN_TOKEN: "", AGENT_ATTR_LOG_FORMAT: "xml" } });
  expect(check.exitCode).toBe(3);
  for (const problem of [
    "Refusing to listen on 0.0.0.0",
    "Two plugins are named 'openai'",
    "':memory:' would be lost",
    "AGENT_ATTR_LOG_FORMAT is 'xml'",
  ]) {
    expect(check.stderr).toContain(problem);
  }
  expect(check.stderr).toContain("(4 problems)");

  const schema = configIn(`export default {\n  server: {\n    port: "eighty",\n    colour: "blue",\n  },\n};\n`);
  const invalid = await runCli(["config", "check"], { cwd: schema.dir });
  expect(invalid.exitCode).toBe(3);
  expect(invalid.stderr).toContain(`${schema.file}:3: server.port: Invalid input: expected number, received string`);
  expect(invalid.stderr).toContain(`${schema.file}:4: server: Unrecognized key: "colour"`);

  const plugin = configIn(
    `import { openaiCompatible } from "agent-attr/plugins";\n\nexport default { plugins: [openaiCompatible({ name: "x", baseURL: "nope", models: ["m"] })] };\n`,
  );
  const thrown = await runCli(["config", "check"], { cwd: plugin.dir });
  expect(thrown.exitCode).toBe(3);
  expect(thrown.stderr).toContain(`${plugin.file}:3: Invalid options for plugin 'openai-compatible': baseURL: Invalid URL`);
}, 20_000);

test("config check takes proxy start's flags: --host checks the address start would bind", async () => {
  const { dir } = configIn(`export default {};\n`);
  const local = await runCli(["config", "check"], { cwd: dir, env: { AGENT_ATTR_ADMIN_TOKEN: "" } });
  expect(local.exitCode).toBe(0);
  expect(local.stdout).toContain("is valid");
  const wide = await runCli(["config", "check", "--host", "0.0.0.0"], { cwd: dir, env: { AGENT_ATTR_ADMIN_TOKEN: "" } });
  expect(wide.exitCode).toBe(3);
  expect(wide.stderr).toContain("Refusing to listen on 0.0.0.0");
  expect(existsSync(join(dir, "audit.db"))).toBe(false);
}, 15_000);

test("an audit folder this user cannot write (a bind mount owned by another uid) is refused before start, naming the uid", async () => {
  const folder = tempDir();
  const logDb = join(folder, "audit.db");
  // root writes anywhere: check as an unprivileged user instead, as the container's uid would be.
  const asRoot = process.getuid?.() === 0;
  if (!asRoot) chmodSync(folder, 0o555);
  const prefix = asRoot ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
  const child = Bun.spawn([...prefix, "bun", cliPath, "config", "check", "--log-db", logDb], {
    cwd: "/",
    env: { ...process.env, NO_COLOR: "1", HOME: folder },
    stderr: "pipe",
    stdout: "pipe",
  });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect(exitCode).toBe(3);
  expect(stderr).toContain(`The folder ${folder} of the audit database is not writable by user id ${asRoot ? 65534 : process.getuid?.()}`);
}, 15_000);
