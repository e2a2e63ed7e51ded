/**
 * The PostgreSQL store's intents, one row per group commit (src/store/postgres/intents.ts), against
 * the local PostgreSQL: a group row lives until the last of its calls has its record (compacted
 * when most of them have), and whatever a replica leaves behind — a group partly landed, a
 * compacted one, an orphan, the one-row-per-call intents of an older version, an append whose
 * COMMIT landed although the client saw it fail — gives exactly one record per call.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { recordFilterSchema } from "../../src/store/filters.ts";
import { PgAuditStore } from "../../src/store/postgres/index.ts";
import { toRow } from "../../src/trail/row.ts";
import { capturedLog, pgContext, pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
const keyDir = tempDir();
beforeAll(async () => {
  pg = await pgSchema("intents");
});
afterAll(async () => {
  await pg.drop();
});

const records = recordFilterSchema.parse({ limit: 1000 });

async function fresh(label: string) {
  const schema = `${pg.schema}_${label}`;
  return {
    schema,
    logDb: pg.logDb.replace(/schema=.*$/, `schema=${schema}`),
    drop: async () => void (await pg.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)),
  };
}

/** What kill -9 leaves: no more heartbeats, no more appends, connections gone. */
async function crash(store: PgAuditStore): Promise<void> {
  const internals = store as unknown as { closed: boolean; heartbeatTimer: Timer };
  internals.closed = true;
  clearInterval(internals.heartbeatTimer);
  await store.sql.close({ timeout: 0 });
}

/** The call ids each stored group holds, in group order. */
async function groups(schema: string): Promise<string[][]> {
  const rows = (await pg.sql.unsafe(`SELECT intents FROM "${schema}".audit_intent_groups ORDER BY created_at, n`)) as { intents: string }[];
  return rows.map((r) => (JSON.parse(r.intents) as string[][]).map((row) => row[0]!));
}

/** Begins calls 0..n-1 at once: their intents are one group commit. */
async function beginAll(store: PgAuditStore, n: number, from = 0): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => store.begin(sampleRecord(from + i, { outcome: null, status: null }))));
}

async function outcomes(store: PgAuditStore): Promise<Record<string, string[]>> {
  const found: Record<string, string[]> = {};
  for (const r of (await store.reader.records(records)).records) (found[r.id] ??= []).push(r.outcome ?? "null");
  return found;
}

test("intents of concurrent calls are one row, kept while any of its calls is open, compacted once three quarters have landed, deleted with the last", async () => {
  const trail = await fresh("group");
  const store = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
  try {
    await beginAll(store, 8);
    expect(await groups(trail.schema)).toEqual([["rec-0", "rec-1", "rec-2", "rec-3", "rec-4", "rec-5", "rec-6", "rec-7"]]);
    await Promise.all([0, 1, 2].map((i) => store.commit(sampleRecord(i))));
    expect((await groups(trail.schema))[0]).toHaveLength(8);
    // 6 of 8 landed: the row is rewritten with the two calls still in flight.
    await Promise.all([3, 4, 5].map((i) => store.commit(sampleRecord(i))));
    expect(await groups(trail.schema)).toEqual([["rec-6", "rec-7"]]);
    await store.commit(sampleRecord(6));
    expect(await groups(trail.schema)).toEqual([["rec-6", "rec-7"]]);
    await store.commit(sampleRecord(7));
    expect(await groups(trail.schema)).toEqual([]);
    expect(Object.keys(await outcomes(store))).toHaveLength(8);
    expect((await store.trail.verify("cli:test")).ok).toBe(true);
  } finally {
    await store.close();
    await trail.drop();
  }
});

test("a replica dying with groups partly landed and compacted: after the lease each call has exactly one record", async () => {
  const trail = await fresh("lease");
  const dying = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { heartbeatMs: 100_000 });
  // A lease long enough that the survivor cannot claim `dying` before its commits land, even on a loaded machine.
  const survivor = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { leaseMs: 1500, heartbeatMs: 100 });
  try {
    await beginAll(dying, 6, 0); // a group of which 3 land
    await beginAll(dying, 8, 10); // a group of which 6 land: compacted to its last 2
    await Promise.all([0, 1, 2, 10, 11, 12, 13, 14, 15].map((i) => dying.commit(sampleRecord(i))));
    expect(await groups(trail.schema)).toEqual([
      ["rec-0", "rec-1", "rec-2", "rec-3", "rec-4", "rec-5"],
      ["rec-16", "rec-17"],
    ]);
    await crash(dying);
    for (let tries = 0; tries < 200 && Object.keys(await outcomes(survivor)).length < 14; tries++) await Bun.sleep(50);
    const done = (ids: number[]) => ids.map((i) => [`rec-${i}`, ["completed"]]);
    const interrupted = (ids: number[]) => ids.map((i) => [`rec-${i}`, ["interrupted"]]);
    expect(await outcomes(survivor)).toEqual(
      Object.fromEntries([...done([0, 1, 2, 10, 11, 12, 13, 14, 15]), ...interrupted([3, 4, 5, 16, 17])]),
    );
    expect(await groups(trail.schema)).toEqual([]);
    expect((await survivor.trail.verify("cli:test")).ok).toBe(true);
  } finally {
    await survivor.close();
    await crash(dying);
    await trail.drop();
  }
});

test("an append whose COMMIT landed though the client saw it fail is retried without a second record, its group still open", async () => {
  const trail = await fresh("retry");
  const store = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
  try {
    await beginAll(store, 3);
    // The next COMMIT reaches the server, then the client loses the answer.
    type Reserved = { unsafe: (query: string) => unknown };
    const pool = store.sql as unknown as { reserve: () => Promise<Reserved> };
    const reserve = pool.reserve.bind(pool);
    let lose = true;
    pool.reserve = async () => {
      const connection = await reserve();
      const unsafe = connection.unsafe.bind(connection);
      connection.unsafe = (query: string) => {
        if (query !== "COMMIT" || !lose) return unsafe(query);
        lose = false;
        return (async () => {
          await unsafe(query);
          throw new Error("connection lost after COMMIT");
        })();
      };
      return connection;
    };
    expect(store.commit(sampleRecord(0))).rejects.toThrow(/connection lost after COMMIT/);
    await store.flush();
    await Promise.all([1, 2].map((i) => store.commit(sampleRecord(i))));
    expect(await outcomes(store)).toEqual({ "rec-0": ["completed"], "rec-1": ["completed"], "rec-2": ["completed"] });
    expect(await groups(trail.schema)).toEqual([]);
    expect((await store.trail.verify("cli:test")).ok).toBe(true);
  } finally {
    await store.close();
    await trail.drop();
  }
});

test("at start a replica records orphan groups (their replica row gone) and the one-row-per-call intents an older version left", async () => {
  const trail = await fresh("orphans");
  const gone = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { heartbeatMs: 100_000 });
  await beginAll(gone, 2, 0);
  await crash(gone);
  const sql = pg.sql;
  // An older version's survivor claimed `gone` (deleting its row) without knowing its groups; and a
  // replica of an older version died with a call in flight and a final record not yet in the chain.
  await sql.unsafe(`DELETE FROM "${trail.schema}".audit_replicas WHERE replica_id = $1`, [gone.replicaId]);
  await sql.unsafe(`INSERT INTO "${trail.schema}".audit_replicas (replica_id, heartbeat_at) VALUES ('old', now() - interval '1 hour')`);
  await sql.unsafe(
    `INSERT INTO "${trail.schema}".audit_intents (id, replica_id, final, row) VALUES ('rec-5', 'old', false, $1), ('rec-6', 'old', true, $2)`,
    [JSON.stringify(toRow(sampleRecord(5, { outcome: null }))), JSON.stringify(toRow(sampleRecord(6)))],
  );
  const survivor = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
  try {
    expect(await survivor.recover()).toEqual({ interrupted: 3, finished: 1 });
    expect(await outcomes(survivor)).toEqual({
      "rec-0": ["interrupted"],
      "rec-1": ["interrupted"],
      "rec-5": ["interrupted"],
      "rec-6": ["completed"],
    });
    expect(await groups(trail.schema)).toEqual([]);
    expect(await sql.unsafe(`SELECT id FROM "${trail.schema}".audit_intents`)).toEqual([]);
    expect((await survivor.trail.verify("cli:test")).ok).toBe(true);
  } finally {
    await survivor.close();
    await trail.drop();
  }
});

test("a replica claimed while it was paused registers again before its next intent lands, so a survivor finds that call if it then dies", async () => {
  const trail = await fresh("claimed");
  const log = capturedLog();
  const paused = await PgAuditStore.open(pgContext(trail.logDb, keyDir, log), { heartbeatMs: 100_000 });
  try {
    // What a survivor's claim leaves of a replica with nothing in flight: no row.
    await pg.sql.unsafe(`DELETE FROM "${trail.schema}".audit_replicas WHERE replica_id = $1`, [paused.replicaId]);
    await paused.begin(sampleRecord(1, { outcome: null, status: null }));
    const rows = await pg.sql.unsafe(`SELECT replica_id FROM "${trail.schema}".audit_replicas`);
    expect(rows).toEqual([{ replica_id: paused.replicaId }]);
    expect(await groups(trail.schema)).toEqual([["rec-1"]]);
    expect(log.lines.some((line) => line.includes("missed its lease"))).toBe(true);
  } finally {
    await crash(paused);
  }
  const survivor = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { leaseMs: 300, heartbeatMs: 100 });
  try {
    for (let tries = 0; tries < 100 && Object.keys(await outcomes(survivor)).length < 1; tries++) await Bun.sleep(50);
    expect(await outcomes(survivor)).toEqual({ "rec-1": ["interrupted"] });
  } finally {
    await survivor.close();
    await trail.drop();
  }
});

test("an erasure drops the landed intents a group row still holds: no settled intent of the erased user stays stored", async () => {
  const trail = await fresh("erase");
  const store = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
  try {
    // rec-0 is user-0's; rec-1 (user-1) stays in flight, so the group is neither deleted nor compacted.
    await beginAll(store, 2);
    await store.commit(sampleRecord(0));
    expect(await groups(trail.schema)).toEqual([["rec-0", "rec-1"]]);
    await store.trail.eraseUser("user-0", "cli:test");
    expect(await groups(trail.schema)).toEqual([["rec-1"]]);
    const stored = (await pg.sql.unsafe(`SELECT intents FROM "${trail.schema}".audit_intent_groups`)) as { intents: string }[];
    expect(stored.map((r) => r.intents).join("")).not.toContain("user-0");
    await store.commit(sampleRecord(1));
    expect(await groups(trail.schema)).toEqual([]);
    expect(await outcomes(store)).toEqual({ "rec-0": ["completed"], "rec-1": ["completed"] });
    expect((await store.trail.verify("cli:test")).ok).toBe(true);
  } finally {
    await store.close();
    await trail.drop();
  }
});
