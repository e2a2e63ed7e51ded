// Durability under a real `kill -9`: every call that reached the upstream has a record after a
// restart — `completed`, or `interrupted` for calls that were in flight when the process died.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { columns } from "../../src/audit/database.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { spawnProxy } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

/** Users of the calls whose in-flight records sit in the intent log (one JSON row per line). */
function usersInIntentLog(logDb: string): Set<string> {
  const userIndex = columns.indexOf("user_id");
  const lines = readdirSync(dirname(logDb))
    .filter((name) => name.startsWith(`${basename(logDb)}.intents-`))
    .flatMap((name) => readFileSync(join(dirname(logDb), name), "utf8").split("\n"))
    .filter((line) => line.endsWith("]"));
  return new Set(lines.map((line) => String((JSON.parse(line) as unknown[])[userIndex])));
}

function outcomesByUser(logDb: string): Map<string, string | null> {
  const db = new Database(logDb, { readonly: true });
  try {
    const rows = db.query<{ user_id: string; outcome: string | null }, []>("SELECT user_id, outcome FROM audit_records").all();
    return new Map(rows.map((row) => [row.user_id, row.outcome]));
  } finally {
    db.close();
  }
}

for (const killAfterMs of [60, 700]) {
  test(`kill -9 ${killAfterMs} ms into a burst of calls loses no record`, async () => {
    const dir = tempDir();
    const logDb = join(dir, "audit.db");
    const env = { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` };
    const proxy = await spawnProxy(["--log-db", logDb], { cwd: dir, env });
    const tag = `kill${killAfterMs}-`;
    const call = async (i: number) => {
      try {
        const response = await fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-fake-scenario": i % 2 ? "gap:1500" : "" },
          body: JSON.stringify({ model: "gpt-4o", messages: [], stream: i % 2 === 1, user: `${tag}${i}` }),
        });
        await response.text();
        return "answered";
      } catch {
        return "failed";
      }
    };
    const calls = Array.from({ length: 300 }, (_, i) => call(i));
    await Bun.sleep(killAfterMs);
    proxy.child.kill("SIGKILL");
    await proxy.child.exited;
    const results = await Promise.all(calls);

    const forwarded = upstream.requests
      .map((request) => (JSON.parse(request.body) as { user?: string }).user ?? "")
      .filter((user) => user.startsWith(tag));
    expect(forwarded.length).toBeGreaterThan(0);

    // Every forwarded call is on disk already, before any restart: finished in the database, or
    // in flight in the intent log.
    const inDatabase = outcomesByUser(logDb);
    const inFlight = usersInIntentLog(logDb);
    for (const user of forwarded) expect(inDatabase.has(user) || inFlight.has(user)).toBe(true);

    // A restart turns the ones left in flight into `interrupted`.
    const restarted = await spawnProxy(["--log-db", logDb], { cwd: dir, env });
    restarted.child.kill("SIGTERM");
    await restarted.child.exited;
    const after = outcomesByUser(logDb);
    for (const user of forwarded) expect(["completed", "interrupted"]).toContain(after.get(user)!);
    expect([...after.values()].filter((outcome) => outcome === null)).toEqual([]);
    const interrupted = [...after.values()].filter((outcome) => outcome === "interrupted").length;
    if (interrupted > 0) expect(restarted.output()).toContain("recorded as interrupted");
    // Sanity: the burst was really cut short (streams were mid-flight), and later kills also
    // found calls already finished.
    expect(results).toContain("failed");
    if (killAfterMs > 500) expect(results).toContain("answered");
  }, 30_000);
}
