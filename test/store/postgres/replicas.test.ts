// Three proxy processes on one PostgreSQL trail (a schema of this file's own), calls spread
// round-robin: a replica killed with -9 under load, its directory deleted — after the lease every
// call the upstream saw has exactly one record and the one chain verifies; a key revoked through
// one replica is refused by the others on the next call.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openPgAdmin } from "../../../src/store/postgres/index.ts";
import { recordFilterSchema } from "../../../src/store/filters.ts";
import type { AuditRecord } from "../../../src/trail/record.ts";
import { startFakeUpstream, type FakeUpstream } from "../../helpers/fake-upstream.ts";
import { runCli, spawnProxy, type ProxyProcess } from "../../helpers/process.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { pgContext, pgSchema, type PgSchema } from "../../helpers/postgres.ts";
import { dropPrefix, sharedRedisURL, uniquePrefix } from "../../helpers/redis.ts";

let upstream: FakeUpstream;
let pg: PgSchema;
const keyDir = tempDir();
const running: ProxyProcess[] = [];
/** The replicas' limits live in the local Redis under a prefix of this file's own. */
const redisPrefix = uniquePrefix("pg-replicas");
beforeAll(async () => {
  upstream = await startFakeUpstream();
  pg = await pgSchema("replicas");
});
afterAll(async () => {
  for (const proxy of running) {
    proxy.child.kill("SIGKILL");
    await proxy.child.exited;
  }
  await upstream.stop();
  await pg.drop();
  await dropPrefix(redisPrefix);
});

/** A replica: its own working directory and config, the shared trail and signing key. */
async function replica(logDb: string, options: { keys?: boolean } = {}): Promise<{ proxy: ProxyProcess; dir: string }> {
  const dir = tempDir();
  const config = join(dir, "agent-attr.config.ts");
  writeFileSync(
    config,
    `import { defineConfig } from "agent-attr";
import { apiKeys, headerAttribution, openai, postgresAudit, pricing, redisLimiterStore, tiers } from "agent-attr/plugins";
export default defineConfig({
  audit: { signingKey: ${JSON.stringify(join(keyDir, "signing-key"))} },
  plugins: [
    openai(), ${options.keys ? "apiKeys()," : ""} headerAttribution(), pricing(),
    tiers({ tiers: { rpm: { requestsPerMinute: 30, per: ["user"] } }, default: "rpm", store: redisLimiterStore({ url: ${JSON.stringify(sharedRedisURL)}, prefix: ${JSON.stringify(redisPrefix)} }) }),
    postgresAudit({ leaseMs: 1500, heartbeatMs: 300 }),
  ],
});
`,
  );
  const proxy = await spawnProxy(["--log-db", logDb, "--config", config], {
    cwd: dir,
    env: { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`, OPENAI_API_KEY: "sk-proxy-test" },
  });
  running.push(proxy);
  return { proxy, dir };
}

const chat = (proxy: ProxyProcess, user: string, headers: Record<string, string> = {}) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "gpt-4o", stream: true, user, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(15_000),
  }).then(
    async (response) => ({ status: response.status, text: await response.text().catch(() => "") }),
    () => ({ status: 0, text: "" }),
  );

async function allRecords(logDb: string): Promise<AuditRecord[]> {
  const admin = await openPgAdmin({ ...pgContext(logDb, keyDir), create: false });
  try {
    const found: AuditRecord[] = [];
    for (let cursor: string | undefined; ; ) {
      const page = await admin.reader.records(recordFilterSchema.parse({ limit: 1000, cursor }));
      found.push(...page.records);
      if (!page.next_cursor) return found;
      cursor = page.next_cursor;
    }
  } finally {
    await admin.close();
  }
}

test("kill -9 of a replica under load, its directory deleted: after the lease every call the upstream saw has exactly one record, and the chain verifies", async () => {
  const logDb = pg.logDb.replace(/schema=.*$/, `schema=${pg.schema}_kill`);
  const replicas = [await replica(logDb), await replica(logDb), await replica(logDb)];
  const [doomed] = replicas;
  const seenBefore = upstream.requests.length;
  // Calls that finish, and calls still streaming (a 3 s pause mid-answer) when the replica dies.
  const calls: Promise<{ status: number }>[] = [];
  for (let i = 0; i < 60; i++) {
    const target = replicas[i % 3]!.proxy;
    calls.push(chat(target, `kill-${i}`, i % 3 === 0 && i % 2 === 0 ? { "x-fake-scenario": "gap:3000" } : {}));
  }
  await Bun.sleep(1000);
  doomed!.proxy.child.kill("SIGKILL");
  await doomed!.proxy.child.exited;
  rmSync(doomed!.dir, { recursive: true, force: true });
  await Promise.all(calls);
  const users = new Set(upstream.requests.slice(seenBefore).map((r) => (JSON.parse(r.body) as { user: string }).user));
  expect(users.size).toBe(60);
  // The lease is 1.5 s and survivors look every 0.3 s.
  let records: AuditRecord[] = [];
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await Bun.sleep(250)) {
    records = (await allRecords(logDb)).filter((r) => r.user_id?.startsWith("kill-"));
    if (records.length >= users.size) break;
  }
  const perUser = new Map<string, number>();
  for (const r of records) perUser.set(r.user_id!, (perUser.get(r.user_id!) ?? 0) + 1);
  expect([...users].filter((u) => perUser.get(u) !== 1)).toEqual([]);
  expect(records.length).toBe(users.size);
  expect(records.some((r) => r.outcome === "interrupted")).toBe(true);
  const admin = await openPgAdmin({ ...pgContext(logDb, keyDir), create: false });
  try {
    expect(await admin.trail.verify("cli:test")).toMatchObject({ ok: true, failure: null });
    // The dead replica's intent groups went with its recovery: none is left without a live replica.
    const schema = logDb.replace(/^.*schema=/, "");
    const stray = await pg.sql.unsafe(`SELECT replica_id FROM "${schema}".audit_intent_groups g
      WHERE NOT EXISTS (SELECT 1 FROM "${schema}".audit_replicas r WHERE r.replica_id = g.replica_id)`);
    expect(stray).toEqual([]);
  } finally {
    await admin.close();
  }
}, 60_000);

test("a key revoked through one replica is refused by the other two on the next call", async () => {
  const logDb = pg.logDb.replace(/schema=.*$/, `schema=${pg.schema}_keys`);
  const [a, b, c] = [await replica(logDb, { keys: true }), await replica(logDb, { keys: true }), await replica(logDb, { keys: true })];
  const created = await fetch(`${a!.proxy.url}/audit/keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ agents: ["bot"], users: ["*"] }),
  }).then((r) => r.json() as Promise<{ key: string; record: { id: string } }>);
  const auth = { authorization: `Bearer ${created.key}` };
  const first = await chat(b!.proxy, "k-1", auth);
  expect([first.status, first.status === 200 ? "" : first.text.slice(0, 300)]).toEqual([200, ""]);
  expect((await chat(c!.proxy, "k-2", auth)).status).toBe(200);
  const revoked = await fetch(`${a!.proxy.url}/audit/keys/${created.record.id}`, { method: "DELETE" });
  expect(revoked.status).toBe(200);
  expect((await chat(b!.proxy, "k-3", auth)).status).toBe(401);
  expect((await chat(c!.proxy, "k-4", auth)).status).toBe(401);
}, 60_000);

test("audit delete --user through the CLI while three replicas write: the user is gone from every query and export, and audit verify passes", async () => {
  const logDb = pg.logDb.replace(/schema=.*$/, `schema=${pg.schema}_erase`);
  const replicas = [await replica(logDb), await replica(logDb), await replica(logDb)];
  const cli = (...args: string[]) =>
    runCli([...args, "--log-db", logDb], { timeoutMs: 30_000, env: { AGENT_ATTR_SIGNING_KEY: join(keyDir, "signing-key") } });
  const calls: Promise<{ status: number }>[] = [];
  // The user's calls: finished ones, and ones still streaming when the erasure runs (they land redacted).
  for (let i = 0; i < 12; i++) calls.push(chat(replicas[i % 3]!.proxy, "erase-me", i % 2 ? { "x-fake-scenario": "gap:2500" } : {}));
  for (let i = 0; i < 30; i++) calls.push(chat(replicas[i % 3]!.proxy, `other-${i}`));
  await Bun.sleep(800);
  const erased = await cli("audit", "delete", "--user", "erase-me");
  expect([erased.exitCode, erased.stderr]).toEqual([0, ""]);
  // Others keep writing meanwhile and after.
  for (let i = 30; i < 45; i++) calls.push(chat(replicas[i % 3]!.proxy, `other-${i}`));
  expect((await Promise.all(calls)).every((r) => r.status === 200)).toBe(true);
  await Bun.sleep(500); // the last final records reach the chain
  const query = await cli("audit", "query", "--user", "erase-me", "--format", "json");
  expect(query.exitCode).toBe(0);
  expect(query.stdout).not.toContain("erase-me-");
  expect((JSON.parse(query.stdout) as { records: unknown[] }).records).toEqual([]);
  const exported = await cli("audit", "export", "--format", "ndjson");
  expect(exported.exitCode).toBe(0);
  expect(exported.stdout.trim().split("\n").length).toBe(57);
  expect(exported.stdout).not.toContain("erase-me");
  const verified = await cli("audit", "verify", "--format", "json");
  expect(verified.exitCode).toBe(0);
  expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, redacted: 12 });
}, 90_000);

test("a limit of 30 requests per minute admits exactly 30 across three replicas, and the one trail holds every call once", async () => {
  const logDb = pg.logDb.replace(/schema=.*$/, `schema=${pg.schema}_limit`);
  const replicas = [await replica(logDb), await replica(logDb), await replica(logDb)];
  const answers = await Promise.all(
    Array.from({ length: 45 }, (_, i) => chat(replicas[i % 3]!.proxy, "limited", { "x-user-id": "limited" })),
  );
  expect(answers.map((a) => a.status).filter((s) => s !== 200 && s !== 429)).toEqual([]);
  expect(answers.filter((a) => a.status === 200)).toHaveLength(30);
  expect(answers.filter((a) => a.status === 429)).toHaveLength(15);
  let records: AuditRecord[] = [];
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await Bun.sleep(200)) {
    records = (await allRecords(logDb)).filter((r) => r.user_id === "limited");
    if (records.length >= 45) break;
  }
  expect(records.filter((r) => r.outcome === "completed")).toHaveLength(30);
  expect(records.filter((r) => r.outcome === "rejected" && r.status === 429)).toHaveLength(15);
}, 60_000);
