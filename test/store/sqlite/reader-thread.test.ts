// The store's reader thread: what the audit API asks of it waits for locks there, up to the busy
// timeout, and fails cleanly past it; a thread that cannot open says why on every request.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { ReaderThread } from "../../../src/store/sqlite/reader-thread.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { trailWith } from "../../helpers/records.ts";
import { holdWriteLock } from "../../helpers/write-lock.ts";

const erasures = (logDb: string) => {
  const db = new Database(logDb, { readonly: true });
  try {
    return db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_events WHERE kind = 'erasure'").get()!.n;
  } finally {
    db.close();
  }
};

test("an erasure that cannot get the write lock within the busy timeout fails and erases nothing; once the lock is free it succeeds", async () => {
  const logDb = await trailWith(3); // user-0, user-1, user-2
  const store = new SqliteAuditStore(logDb, { busyTimeoutMs: 100 });
  const lock = await holdWriteLock(logDb, 1500);
  const failed = await store.trail.eraseUser("user-1", "api").then(
    () => null,
    (error: Error) => error,
  );
  expect(lock.isReleased()).toBe(false);
  expect(failed?.message).toContain("database is locked");
  expect((await store.reader.records({ user: "user-1", limit: 10 })).records).toHaveLength(1);
  await lock.done;
  await store.trail.eraseUser("user-1", "api");
  expect((await store.reader.records({ user: "user-1", limit: 10 })).records).toHaveLength(0);
  await store.close();
  expect(erasures(logDb)).toBe(1);
}, 10_000);

test("a reader thread that cannot open its database fails each request with the reason", async () => {
  const missing = join(tempDir(), "no-such-folder", "audit.db");
  const errors: string[] = [];
  const thread = new ReaderThread({
    settings: { path: missing, busyTimeoutMs: 100, hashKeyHex: "00".repeat(32), signingKeyPath: join(tempDir(), "key") },
    signingKey: generateKeyPairSync("ed25519").privateKey,
    onError: (message) => errors.push(message),
  });
  const failure = await thread.records({ limit: 10 }).then(
    () => null,
    (error: Error) => error.message,
  );
  expect(failure).toContain(`cannot open ${missing} for the audit API`);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toContain(missing);
  await thread.close();
});
