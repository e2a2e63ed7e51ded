// A full disk, for real (a small tmpfs): while final records cannot be committed, the backlog is
// bounded (beyond `audit.maxBacklog`, calls get 503 before they are forwarded), it drains once a
// little space is back, and a kill -9 meanwhile keeps the usage of calls the clients saw finish.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startFakeUpstream, type FakeUpstream } from "../../helpers/fake-upstream.ts";
import { spawnProxy } from "../../helpers/process.ts";
import { startTestProxy } from "../../helpers/proxy.ts";
import { canMountTinyDisk, mountTinyDisk } from "../../helpers/tiny-disk.ts";

if (!canMountTinyDisk) console.warn("disk-full tests skipped: mounting a tmpfs needs root");

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

const call = async (url: string, user: string, stream = false) => {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-user-id": user, "x-task-context": `work of ${user}` },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], stream }),
  });
  const body = await response.text();
  return { status: response.status, body };
};

/** Calls `n` calls, `concurrency` at a time; their statuses and error codes. */
async function burst(url: string, prefix: string, n: number, concurrency = 25) {
  const results: { user: string; status: number; code?: string }[] = [];
  for (let i = 0; i < n; i += concurrency) {
    const users = Array.from({ length: Math.min(concurrency, n - i) }, (_, k) => `${prefix}${i + k}`);
    for (const [k, answer] of (await Promise.all(users.map((user) => call(url, user)))).entries()) {
      const code = answer.status === 200 ? undefined : (JSON.parse(answer.body) as { error: { code: string } }).error.code;
      results.push({ user: users[k]!, status: answer.status, code });
    }
  }
  return results;
}

const committedUsers = (logDb: string) => {
  const db = new Database(logDb, { readonly: true });
  try {
    return new Set(
      db
        .query<{ user_id: string }, []>("SELECT user_id FROM audit_records WHERE outcome = 'completed'")
        .all()
        .map((r) => r.user_id),
    );
  } finally {
    db.close();
  }
};

test.skipIf(!canMountTinyDisk)(
  "disk full: past audit.maxBacklog calls get 503 unforwarded; 3 MiB freed, the backlog drains and calls pass again",
  async () => {
    const disk = mountTinyDisk(48)!;
    const logDb = join(disk.dir, "audit.db");
    const errors: string[] = [];
    const log = { info() {}, warn: (m: string) => errors.push(m), error: (m: string) => errors.push(m) };
    const proxy = await startTestProxy(upstream.url, { audit: { maxBacklog: 1000 } }, { logDb, log });
    try {
      expect((await burst(proxy.url, "before-", 500)).every((r) => r.status === 200)).toBe(true);
      await proxy.settled(500);
      disk.fill();

      const forwardedBefore = upstream.requests.length;
      const during = await burst(proxy.url, "full-", 2000);
      const answered = during.filter((r) => r.status === 200);
      const refused = during.filter((r) => r.status !== 200);
      // The backlog is bounded: a call past it is refused before it reaches the upstream.
      expect(answered.length).toBeGreaterThanOrEqual(1000);
      expect(answered.length).toBeLessThanOrEqual(1000 + 25);
      expect(new Set(refused.map((r) => `${r.status} ${r.code}`))).toEqual(new Set(["503 audit_unavailable"]));
      expect(upstream.requests.length - forwardedBefore).toBe(answered.length);
      expect(errors.join("\n")).toContain("final audit records wait to be committed (audit.maxBacklog is 1000)");
      expect(committedUsers(logDb).has(answered[0]!.user)).toBe(false);

      // A little space back: the backlog drains (in small transactions), and calls pass again.
      disk.free(3 * 1024 * 1024);
      const freedAt = performance.now();
      let committed = committedUsers(logDb);
      while (!answered.every((r) => committed.has(r.user)) && performance.now() - freedAt < 30_000) {
        await Bun.sleep(50);
        committed = committedUsers(logDb);
      }
      console.log(
        `disk-full test: ${answered.length} final records drained ${Math.round(performance.now() - freedAt)} ms after 3 MiB were freed`,
      );
      expect(answered.filter((r) => !committed.has(r.user))).toEqual([]);
      // Once the records of the refused calls are in too, the backlog is under its bound: calls pass.
      let after = await call(proxy.url, "after");
      for (let i = 0; after.status !== 200 && i < 100; i++) {
        await Bun.sleep(100);
        after = await call(proxy.url, `after-${i}`);
      }
      expect(after.status).toBe(200);
    } finally {
      await proxy.stop();
      disk.unmount();
    }
  },
  90_000,
);

test.skipIf(!canMountTinyDisk)(
  "disk full: a kill -9 while final records cannot be committed keeps the usage of every answered call",
  async () => {
    const disk = mountTinyDisk(48)!;
    const logDb = join(disk.dir, "audit.db");
    const env = { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` };
    try {
      const proxy = await spawnProxy(["--log-db", logDb], { cwd: disk.dir, env });
      expect((await burst(proxy.url, "warm-", 50)).every((r) => r.status === 200)).toBe(true);
      disk.fill();
      const answered = (await Promise.all(Array.from({ length: 100 }, (_, i) => call(proxy.url, `full-${i}`, i % 2 === 1)))).map(
        (a) => a.status,
      );
      expect(answered.every((status) => status === 200)).toBe(true);
      proxy.child.kill("SIGKILL");
      await proxy.child.exited;

      disk.free(16 * 1024 * 1024);
      const restarted = await spawnProxy(["--log-db", logDb], { cwd: disk.dir, env });
      restarted.child.kill("SIGTERM");
      await restarted.child.exited;
      const db = new Database(logDb, { readonly: true });
      try {
        const rows = db
          .query<{ user_id: string; outcome: string; input_tokens: number | null }, []>(
            "SELECT user_id, outcome, input_tokens FROM audit_records WHERE user_id LIKE 'full-%'",
          )
          .all();
        expect(rows).toHaveLength(100);
        expect(rows.filter((row) => row.outcome !== "completed" || row.input_tokens !== 12)).toEqual([]);
      } finally {
        db.close();
      }
    } finally {
      disk.unmount();
    }
  },
  60_000,
);
