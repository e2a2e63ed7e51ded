// The compiled single binary, run from a directory with no node_modules: it loads a TypeScript
// config that imports "agent-attr" and "agent-attr/plugins" plus a local plugin file, proxies a
// call, and reads the record back. Uses AGENT_ATTR_BINARY if set (CI passes each release binary it
// can run here), otherwise compiles its own. AGENT_ATTR_BINARY_RUNNER runs it through an emulator
// ("qemu-aarch64 -L /usr/aarch64-linux-gnu" for the linux-arm64 binary).
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import pkg from "../package.json" with { type: "json" };
import { join, resolve } from "node:path";
import { buildStamp, compile, root } from "../scripts/build-config.ts";
import { gitCommit } from "../src/version.ts";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.ts";
import { tempDir } from "./helpers/proxy.ts";

const runner = (process.env.AGENT_ATTR_BINARY_RUNNER ?? "").split(" ").filter(Boolean);
/** An emulated binary starts in seconds, not milliseconds. */
const slowdown = runner.length > 0 ? 8 : 1;
let binary: string;
let upstream: FakeUpstream;
const work = tempDir();

beforeAll(async () => {
  upstream = await startFakeUpstream();
  if (process.env.AGENT_ATTR_BINARY) {
    binary = resolve(process.env.AGENT_ATTR_BINARY);
    return;
  }
  // Built as `bun run build` builds (scripts/build-config.ts: every entry point, the version stamp).
  binary = join(tempDir(), "agent-attr");
  compile({ outfile: binary, stamp: buildStamp("test build") });
}, 60_000 * slowdown);
afterAll(async () => {
  await upstream.stop();
});

writeFileSync(
  join(work, "stamp.ts"),
  `import { definePlugin } from "agent-attr";
export default definePlugin({ name: "stamp", attribute: (ctx) => ({ session_id: "stamped:" + ctx.endpoint.kind }) });
`,
);
writeFileSync(
  join(work, "agent-attr.config.ts"),
  `import { defineConfig } from "agent-attr";
import { anthropic, headerAttribution, openai, sqliteAudit } from "agent-attr/plugins";
import stamp from "./stamp.ts";
export default defineConfig({ plugins: [openai(), anthropic(), headerAttribution(), stamp, sqliteAudit()] });
`,
);

const run = (args: string[]) =>
  Bun.spawnSync([...runner, binary, ...args], {
    cwd: work,
    env: { ...process.env, NO_COLOR: "1", AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` },
  });

test(
  "the binary loads a config and a plugin from disk, proxies a call and records it",
  async () => {
    const check = run(["config", "check"]);
    expect(check.stdout.toString()).toContain("plugins: openai, anthropic, header-attribution, stamp, sqlite-audit");

    const logDb = join(work, "audit.db");
    const proxy = Bun.spawn([...runner, binary, "proxy", "start", "--port", "0", "--log-db", logDb], {
      cwd: work,
      env: { ...process.env, AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` },
      stdout: "pipe",
    });
    const reader = proxy.stdout.getReader();
    const { value } = await reader.read();
    const url = /listening on (\S+)/.exec(new TextDecoder().decode(value))![1]!;
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "binary-agent" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    expect(((await response.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe("Hello world");
    const verified = await fetch(`${url}/audit/verify`); // runs on the verify worker thread, its event on the reader thread
    expect(((await verified.json()) as { ok: boolean; records: number }).ok).toBe(true);
    const listed = await fetch(`${url}/audit/records?agent=binary-agent`); // served by the reader thread
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { records: unknown[] }).records).toHaveLength(1);
    // The dashboard: its page, script and styles come from inside the binary (no file beside it).
    const dashboard = await fetch(`${url}/dashboard`);
    expect(dashboard.status).toBe(200);
    expect(dashboard.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(await dashboard.text()).toContain('src="/dashboard/app.js"');
    const script = await fetch(`${url}/dashboard/app.js`);
    expect(script.status).toBe(200);
    expect((await script.text()).length).toBeGreaterThan(10_000);
    expect((await fetch(`${url}/dashboard/app.css`)).status).toBe(200);
    const overview = await fetch(`${url}/audit/overview?days=1`);
    expect(((await overview.json()) as { total: { calls: number } }).total.calls).toBe(1);
    proxy.kill("SIGTERM");
    expect(await proxy.exited).toBe(0);

    const query = run(["audit", "query", "--agent", "binary-agent", "--format", "json", "--log-db", logDb]);
    const page = JSON.parse(query.stdout.toString()) as { records: { session_id: string; outcome: string }[] };
    expect(page.records.map(({ session_id, outcome }) => ({ session_id, outcome }))).toEqual([
      { session_id: "stamped:chat.completions", outcome: "completed" },
    ]);
    expect(run(["audit", "verify", "--log-db", logDb]).exitCode).toBe(0);
  },
  30_000 * slowdown,
);

/** A directory with a config whose secondary sinks are third-party files: one sync (listed first), one async (the README's, listed last). */
function sinkDirectory(): string {
  const dir = tempDir();
  writeFileSync(join(dir, "jsonl-sink.ts"), readFileSync(resolve(import.meta.dir, "fixtures/jsonl-sink.ts"), "utf8"));
  writeFileSync(
    join(dir, "sync-sink.ts"),
    `import { appendFileSync } from "node:fs";
import { definePlugin } from "agent-attr";
export default definePlugin({ name: "sync-sink", audit: { write: (record) => appendFileSync("sync.jsonl", JSON.stringify(record) + "\\n") } });
`,
  );
  writeFileSync(
    join(dir, "agent-attr.config.ts"),
    `import { defineConfig } from "agent-attr";
import { headerAttribution, openai } from "agent-attr/plugins";
import { jsonLinesSink } from "./jsonl-sink.ts";
import syncSink from "./sync-sink.ts";
export default defineConfig({ plugins: [syncSink, openai(), headerAttribution(), jsonLinesSink("async.jsonl")] });
`,
  );
  return dir;
}

test(
  "third-party sinks get each committed record, with seq and hash, as JSON lines — sync or async, listed anywhere",
  async () => {
    const dir = sinkDirectory();
    const env = { ...process.env, NO_COLOR: "1", AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` };
    const check = Bun.spawnSync([...runner, binary, "config", "check"], { cwd: dir, env });
    expect(check.exitCode).toBe(0);
    const logDb = join(dir, "audit.db");
    const proxy = Bun.spawn([...runner, binary, "proxy", "start", "--port", "0", "--log-db", logDb], { cwd: dir, env, stdout: "pipe" });
    const { value } = await proxy.stdout.getReader().read();
    const url = /listening on (\S+)/.exec(new TextDecoder().decode(value))![1]!;
    for (const agent of ["sink-a", "sink-b", "sink-c"]) {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-agent-id": agent },
        body: JSON.stringify({ model: "gpt-4o", messages: [] }),
      });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    }
    const refused = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "x-agent-id": "sink-d" }, body: "not json" });
    expect(refused.status).toBe(400);
    proxy.kill("SIGTERM");
    expect(await proxy.exited).toBe(0);

    const stored = new Database(logDb, { readonly: true });
    const chain = stored
      .query<{ id: string; seq: number; hash: string; agent_id: string }, []>(
        "SELECT id, seq, hash, agent_id FROM audit_records ORDER BY seq",
      )
      .all();
    stored.close();
    expect(chain.map((row) => row.agent_id)).toEqual(["sink-a", "sink-b", "sink-c", "sink-d"]);
    for (const file of ["sync.jsonl", "async.jsonl"]) {
      const lines = readFileSync(join(dir, file), "utf8")
        .trimEnd()
        .split("\n")
        .map((line) => JSON.parse(line) as { id: string; seq: number; hash: string; agent_id: string; outcome: string });
      expect({ file, records: lines.map(({ id, seq, hash, agent_id }) => ({ id, seq, hash, agent_id })) }).toEqual({
        file,
        records: chain,
      });
      expect(lines.at(-1)!.outcome).toBe("rejected");
    }
  },
  30_000 * slowdown,
);

test(
  "the binary writes the editor types it carries (agent-attr types), as generated from the sources",
  () => {
    const folder = tempDir();
    expect(run(["types", "--output", folder]).exitCode).toBe(0);
    expect(readFileSync(join(folder, "agent-attr-env.d.ts"), "utf8")).toBe(
      readFileSync(resolve(import.meta.dir, "../src/cli/types/agent-attr-env.d.ts.txt"), "utf8"),
    );
  },
  10_000 * slowdown,
);

test(
  "--version names the version, the commit it was built from and the build date",
  () => {
    const printed = run(["--version"]).stdout.toString();
    const stamp = /^(\S+) \(commit (\S+), built (\S+), ([^)]+)\)\n$/.exec(printed);
    expect(stamp, printed).not.toBeNull();
    const [, version, commit, date] = stamp!;
    expect(version).toBe(pkg.version);
    expect(commit).toBe(gitCommit(root)!);
    expect(new Date(date!).toISOString().replace(".000Z", "Z")).toBe(date!);
    expect(Date.parse(date!)).toBeLessThanOrEqual(Date.now());
    expect(run(["version"]).stdout.toString()).toBe(printed);
  },
  10_000 * slowdown,
);
