// The running proxy's log, as an operator reads it: a value a client chose (here a model name)
// cannot forge a log line or send a terminal sequence; `server.log` / AGENT_ATTR_LOG_FORMAT give
// JSON lines and AGENT_ATTR_LOG_LEVEL / `server.log.level` filter them.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli, spawnProxy } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let env: Record<string, string>;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  env = { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` };
});
afterAll(async () => {
  await upstream.stop();
});

const control = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** Sends a call whose model name is unpriced (so the proxy logs a warning naming it) and stops the proxy. */
async function logOf(args: string[], extraEnv: Record<string, string>, model: string) {
  const dir = tempDir();
  const proxy = await spawnProxy(["--log-db", join(dir, "audit.db"), ...args], { cwd: dir, env: { ...env, ...extraEnv } });
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [] }),
  });
  await response.text();
  proxy.child.kill("SIGTERM");
  expect(await proxy.child.exited).toBe(0);
  return proxy.output();
}

test("a model name with a newline and ESC writes one escaped line, never a forged one", async () => {
  const output = await logOf([], {}, "gpt-x\nagent-attr: error: FORGED\u001b[2J");
  const lines = output.split("\n");
  expect(lines.filter((line) => line.startsWith("agent-attr: error: FORGED"))).toEqual([]);
  expect(output).not.toMatch(control);
  expect(output).toContain("no price is known for openai/gpt-x\\nagent-attr: error: FORGED\\x1b[2J");
}, 20_000);

test("AGENT_ATTR_LOG_FORMAT=json: every line the proxy writes is a JSON object with ts, level and msg", async () => {
  const model = 'gpt-x\n{"level":"error"}';
  const output = await logOf([], { AGENT_ATTR_LOG_FORMAT: "json" }, model);
  const lines = output.split("\n").filter(Boolean);
  expect(lines.length).toBeGreaterThanOrEqual(3); // listening, the warning, stopping
  const entries = lines.map((line) => JSON.parse(line) as { ts: string; level: string; msg: string });
  for (const entry of entries) {
    expect(Object.keys(entry)).toEqual(["ts", "level", "msg"]);
    expect(Number.isNaN(Date.parse(entry.ts))).toBe(false);
  }
  expect(entries[0]).toMatchObject({ level: "info", msg: expect.stringContaining("proxy listening on http://") });
  expect(entries.find((e) => e.level === "warn")!.msg).toContain(`no price is known for openai/${model}`);
}, 20_000);

test("server.log in the config: json at level warn drops the info lines and keeps the warning", async () => {
  const dir = tempDir();
  const config = join(dir, "agent-attr.config.ts");
  writeFileSync(config, `export default { server: { log: { format: "json", level: "warn" } } };\n`);
  // At level warn the "listening" line is not written: find the port by asking the OS for a free one.
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = probe.port;
  probe.stop(true);
  const child = Bun.spawn(
    [
      "bun",
      join(import.meta.dir, "../../src/cli/main.ts"),
      "proxy",
      "start",
      "--port",
      String(port),
      "--config",
      config,
      "--log-db",
      join(dir, "audit.db"),
    ],
    {
      cwd: dir,
      env: { ...process.env, ...env, NO_COLOR: "1" },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const up = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (i > 200) throw new Error("the proxy did not start");
    await Bun.sleep(25);
  }
  await (
    await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-unpriced", messages: [] }),
    })
  ).text();
  child.kill("SIGTERM");
  expect(await child.exited).toBe(0);
  const stdout = await new Response(child.stdout).text();
  const stderr = await new Response(child.stderr).text();
  expect(stdout).toBe("");
  const entries = stderr
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { level: string; msg: string });
  expect(entries.map((e) => e.level)).toEqual(["warn"]);
  expect(entries[0]!.msg).toContain("no price is known for openai/gpt-unpriced");
}, 20_000);

test("the CLI's own error messages go through the same escaping", async () => {
  const result = await runCli(["audit", "quer\nagent-attr: error: FORGED\u001b[2J"]);
  expect(result.exitCode).toBe(2);
  expect(result.stderr.split("\n").filter((line) => line.startsWith("agent-attr: error: FORGED"))).toEqual([]);
  expect(result.stderr).not.toMatch(control);
  expect(result.stderr).toContain("Unknown command 'quer\\nagent-attr: error: FORGED\\x1b[2J'");
});
