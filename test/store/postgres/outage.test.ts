// PostgreSQL stopped mid-load, then restarted (a server of this test's own): calls get 503
// audit_unavailable while it is down, none reaches the upstream unrecorded, every call that was
// answered has exactly one record, and the same proxy process serves again once it is back.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openPgAdmin } from "../../../src/store/postgres/index.ts";
import { recordFilterSchema } from "../../../src/store/filters.ts";
import { startFakeUpstream, type FakeUpstream } from "../../helpers/fake-upstream.ts";
import { spawnProxy, type ProxyProcess } from "../../helpers/process.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { pgContext } from "../../helpers/postgres.ts";
import { startPrivatePostgres, type PrivatePostgres } from "../../helpers/private-postgres.ts";

let upstream: FakeUpstream;
let pg: PrivatePostgres;
let proxy: ProxyProcess | undefined;
const dir = tempDir();
beforeAll(async () => {
  upstream = await startFakeUpstream();
  pg = await startPrivatePostgres();
});
afterAll(async () => {
  proxy?.child.kill("SIGKILL");
  await proxy?.child.exited;
  await upstream.stop();
  await pg.remove();
});

const chat = (user: string) =>
  fetch(`${proxy!.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", user, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(15_000),
  }).then(async (response) => ({ user, status: response.status, body: await response.text() }));

test("PostgreSQL stopped mid-load then restarted: 503 audit_unavailable while down, nothing lost, recovery without a restart", async () => {
  const logDb = pg.url;
  const config = join(dir, "agent-attr.config.ts");
  writeFileSync(
    config,
    `import { defineConfig } from "agent-attr";
export default defineConfig({ audit: { signingKey: ${JSON.stringify(join(dir, "signing-key"))} } });
`,
  );
  proxy = await spawnProxy(["--log-db", logDb, "--config", config], {
    cwd: dir,
    env: { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`, OPENAI_API_KEY: "sk-test" },
  });
  const answers: { user: string; status: number; body: string }[] = [];
  let i = 0;
  let stopLoad = false;
  // Four callers at a time, all along: some calls are in flight (forwarded, final record not yet
  // written) when the server stops.
  const load = Promise.all(
    [0, 1, 2, 3].map(async () => {
      while (!stopLoad) answers.push(await chat(`load-${i++}`));
    }),
  );
  await Bun.sleep(700);
  await pg.stop();
  await Bun.sleep(300);
  const seenWhileDown = upstream.requests.length;
  const down = await Promise.all([0, 1, 2, 3, 4].map(() => chat(`down-${i++}`)));
  expect(down.map((a) => a.status)).toEqual([503, 503, 503, 503, 503]);
  expect(JSON.parse(down[0]!.body)).toMatchObject({ error: { code: "audit_unavailable" } });
  await Bun.sleep(300);
  expect(upstream.requests.length).toBe(seenWhileDown);
  await pg.start();
  // The same process serves again once the database is back (the pool reconnects by itself).
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await Bun.sleep(100)) {
    if (answers.slice(-8).filter((a) => a.status === 200).length === 8) break;
  }
  stopLoad = true;
  await load;
  expect(answers.slice(-8).map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200, 200, 200]);
  expect(answers.some((a) => a.status === 503)).toBe(true);
  const answered = answers.filter((a) => a.status === 200).map((a) => a.user);
  const admin = await openPgAdmin({ ...pgContext(logDb, dir), create: false });
  try {
    const byUser = new Map<string, number>();
    // The queued final records drain in the background once the server is back.
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await Bun.sleep(250)) {
      byUser.clear();
      for (let cursor: string | undefined; ; ) {
        const page = await admin.reader.records(recordFilterSchema.parse({ limit: 1000, cursor }));
        for (const r of page.records) byUser.set(r.user_id!, (byUser.get(r.user_id!) ?? 0) + 1);
        if (!page.next_cursor) break;
        cursor = page.next_cursor;
      }
      if (answered.every((u) => byUser.has(u))) break;
    }
    expect(answered.filter((u) => byUser.get(u) !== 1)).toEqual([]);
    // Every call the upstream saw is recorded.
    const seen = upstream.requests.map((r) => (JSON.parse(r.body) as { user: string }).user);
    expect(seen.filter((u) => byUser.get(u) !== 1)).toEqual([]);
    expect(await admin.trail.verify("cli:test")).toMatchObject({ ok: true });
  } finally {
    await admin.close();
  }
}, 90_000);
