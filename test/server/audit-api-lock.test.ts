// The audit API never blocks the proxy: while another connection holds the database's write lock,
// audit queries, summaries, exports and erasures wait for it off the event loop, and proxied calls
// sent meanwhile are answered at once.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { proxyBeforeAll } from "../helpers/proxy.ts";
import { holdWriteLock } from "../helpers/write-lock.ts";

const setup = proxyBeforeAll();

const call = (user: string) =>
  fetch(`${setup.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "bot", "x-user-id": user },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

test("audit API calls wait for a locked database off the event loop; a proxied call sent meanwhile finishes before the lock is released", async () => {
  for (const user of ["x", "keep"]) await (await call(user)).arrayBuffer();
  await setup.proxy.records();

  const lock = await holdWriteLock(setup.proxy.logDb, 2500);
  const url = setup.proxy.url;
  // Each of these appends an audit-of-the-audit event (or erases), so each needs the write lock.
  const finishedAfterRelease: boolean[] = [];
  const audit = [
    fetch(`${url}/audit/records?user=keep`),
    fetch(`${url}/audit/summary?by=user`),
    fetch(`${url}/audit/export/ndjson?user=keep`),
    fetch(`${url}/audit/user/x`, { method: "DELETE" }),
  ].map(async (pending) => {
    const response = await pending;
    const body = await response.text();
    finishedAfterRelease.push(lock.isReleased());
    return { status: response.status, body };
  });
  // Let the audit requests reach their handlers first (a blocked event loop would also delay this timer).
  await Bun.sleep(100);
  const proxied = await call("y");
  await proxied.arrayBuffer();
  const proxiedBeforeRelease = !lock.isReleased();

  expect(proxied.status).toBe(200);
  expect(proxiedBeforeRelease).toBe(true);
  const answers = await Promise.all(audit);
  await lock.done;
  expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
  // They were answered only once their chain events could be written, i.e. after the lock.
  expect(finishedAfterRelease).toEqual([true, true, true, true]);
  expect(JSON.parse(answers[0]!.body).records).toHaveLength(1);
  expect(answers[2]!.body.split("\n").filter(Boolean)).toHaveLength(1);

  await setup.proxy.records();
  const db = new Database(setup.proxy.logDb, { readonly: true });
  const kinds = db
    .query<{ kind: string }, []>("SELECT kind FROM audit_events ORDER BY seq")
    .all()
    .map((e) => e.kind);
  db.close();
  expect(kinds.sort()).toEqual(["erasure", "export", "query", "query"]);
}, 20_000);
