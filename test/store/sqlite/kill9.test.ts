// Durability under a real `kill -9`: every call that reached the upstream has a record after a
// restart — `completed`, or `interrupted` for calls that were in flight when the process died;
// a call whose client had the whole answer keeps its usage even if it was not committed yet.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { columns } from "../../../src/trail/row.ts";
import { readSegment } from "../../../src/store/sqlite/intent-recovery.ts";
import { startFakeUpstream, type FakeUpstream } from "../../helpers/fake-upstream.ts";
import { spawnProxy } from "../../helpers/process.ts";
import { tempDir } from "../../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

/** Users of the calls the intent log holds (in flight, or finished and not yet committed). */
function usersInIntentLog(logDb: string): Set<string> {
  const userIndex = columns.indexOf("user_id");
  const rows = readdirSync(dirname(logDb))
    .filter((name) => name.startsWith(`${basename(logDb)}.intents-`))
    .flatMap((name) => readSegment(readFileSync(join(dirname(logDb), name), "utf8")));
  return new Set(rows.map((row) => String(row[userIndex])));
}

function outcomesByUser(logDb: string): Map<string, string | null> {
  return new Map([...recordsByUser(logDb)].map(([user, record]) => [user, record.outcome]));
}

interface Outcome {
  outcome: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  usage_source: string;
}

function recordsByUser(logDb: string): Map<string, Outcome> {
  const db = new Database(logDb, { readonly: true });
  try {
    const rows = db
      .query<Outcome & { user_id: string }, []>("SELECT user_id, outcome, input_tokens, output_tokens, usage_source FROM audit_records")
      .all();
    return new Map(rows.map(({ user_id, ...rest }) => [user_id, rest]));
  } finally {
    db.close();
  }
}

/**
 * When to kill, by what the test can see rather than by the clock (a fixed delay made the early
 * kill land before any call reached the upstream on a loaded machine): right after the first calls
 * of the burst reached the upstream, and once some calls have been answered while the streamed
 * ones (which pause 1.5 s upstream) are still mid-flight.
 */
const moments = [
  {
    name: "as the first calls of a burst reach the upstream",
    tag: "early-",
    ready: (seen: { forwarded: number; answered: number }) => seen.forwarded >= 1,
  },
  {
    name: "once calls have been answered, streams mid-flight",
    tag: "late-",
    ready: (seen: { forwarded: number; answered: number }) => seen.answered >= 1,
  },
];

for (const moment of moments) {
  test(`kill -9 ${moment.name} loses no record`, async () => {
    const dir = tempDir();
    const logDb = join(dir, "audit.db");
    const env = { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` };
    const proxy = await spawnProxy(["--log-db", logDb], { cwd: dir, env });
    const tag = `kill-${moment.tag}`;
    const forwardedUsers = () =>
      upstream.requests.map((request) => (JSON.parse(request.body) as { user?: string }).user ?? "").filter((user) => user.startsWith(tag));
    let answered = 0;
    const call = async (i: number) => {
      try {
        const response = await fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-fake-scenario": i % 2 ? "gap:1500" : "" },
          body: JSON.stringify({ model: "gpt-4o", messages: [], stream: i % 2 === 1, user: `${tag}${i}` }),
        });
        await response.text();
        answered++;
        return "answered";
      } catch {
        return "failed";
      }
    };
    const calls = Array.from({ length: 300 }, (_, i) => call(i));
    const deadline = Date.now() + 15_000;
    while (!moment.ready({ forwarded: forwardedUsers().length, answered })) {
      if (Date.now() > deadline) throw new Error(`the burst never got there: ${forwardedUsers().length} forwarded, ${answered} answered`);
      await Bun.sleep(2);
    }
    proxy.child.kill("SIGKILL");
    await proxy.child.exited;
    const results = await Promise.all(calls);

    const forwarded = forwardedUsers();
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
    // Sanity: the burst was really cut short (streams were mid-flight), and the later kill also
    // found calls already finished.
    expect(results).toContain("failed");
    if (moment.tag === "late-") expect(results).toContain("answered");
  }, 30_000);
}

test("kill -9 after clients had their whole answers, before the database took them: their usage is kept", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const env = { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` };
  const proxy = await spawnProxy(["--log-db", logDb], { cwd: dir, env });
  const lock = new Database(logDb);
  lock.run("BEGIN IMMEDIATE"); // the proxy's writer cannot commit: every final record waits
  const tag = "answered-";
  try {
    const answers = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const response = await fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-fake-scenario": i % 4 === 3 ? "chunked-json" : "" },
          body: JSON.stringify({ model: "gpt-4o", messages: [], stream: i % 2 === 1, user: `${tag}${i}` }),
        });
        return { status: response.status, body: await response.text() };
      }),
    );
    expect(answers.every((answer) => answer.status === 200 && answer.body.length > 0)).toBe(true);
    proxy.child.kill("SIGKILL");
    await proxy.child.exited;
  } finally {
    lock.run("ROLLBACK");
    lock.close();
  }
  expect(outcomesByUser(logDb).size).toBe(0); // nothing was committed before the kill

  const restarted = await spawnProxy(["--log-db", logDb], { cwd: dir, env });
  restarted.child.kill("SIGTERM");
  await restarted.child.exited;
  const after = recordsByUser(logDb);
  for (let i = 0; i < 20; i++) {
    expect([`${tag}${i}`, after.get(`${tag}${i}`)]).toEqual([
      `${tag}${i}`,
      { outcome: "completed", input_tokens: 12, output_tokens: 7, usage_source: "provider" },
    ]);
  }
  expect(restarted.output()).toContain("20 call(s) had finished but were not committed when the proxy last stopped");
}, 30_000);
