/**
 * Tags on both storage drivers: recorded inside the hash chain (record hash v3), filters and
 * summaries by tag, a personal tag erased with its user, a trail begun by 0.1 (v2 rows) that
 * still verifies after v3 records follow it, and proxy keys that fix tags.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { recordFilterSchema, summaryFilterSchema } from "../../src/store/filters.ts";
import { exportFilterSchema } from "../../src/trail/export.ts";
import { PgAuditStore } from "../../src/store/postgres/index.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import { ChainHasher, genesisHash, recordVersions, storedRecordColumns } from "../../src/trail/chain.ts";
import { columns, toRow, type SQLValue } from "../../src/trail/row.ts";
import { postgresDriver, sqliteDriver, type TestDriver, type TestStore } from "../helpers/drivers.ts";
import { pgContext, pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
const keyDir = tempDir();
beforeAll(async () => {
  pg = await pgSchema("tags");
});
afterAll(async () => {
  await pg.drop();
});

async function call(store: TestStore, i: number, overrides = {}) {
  const record = sampleRecord(i, overrides);
  await store.begin({ ...record, outcome: null, status: null });
  await store.commit(record);
}

const records = (filter: object) => recordFilterSchema.parse({ limit: 1000, ...filter });
const summary = (filter: object) => summaryFilterSchema.parse(filter);
const sqlLiteral = (value: SQLValue) =>
  value === null ? "NULL" : typeof value === "number" ? String(value) : `'${value.replaceAll("'", "''")}'`;

/** INSERTs of `n` records hashed as agent-attr 0.1 did (record hash v2, no tags), from the genesis. */
function v2Rows(n: number): { sql: string; tail: string } {
  const hasher = new ChainHasher();
  const v2 = recordVersions[2]!;
  let prev = genesisHash;
  const inserts: string[] = [];
  for (let seq = 1; seq <= n; seq++) {
    const row = toRow(sampleRecord(100 + seq, { user_id: seq === 1 ? "old-alice" : "old-bob" }));
    const salt = "5a".repeat(16);
    const commitment = hasher.commitment(
      salt,
      v2.personalIndexes.map((i) => row[i]!),
    );
    const hash = hasher.record(
      prev,
      v2.clearIndexes.map((i) => row[i]!),
      commitment,
      v2,
    );
    const values = [seq, ...row, salt, commitment, prev, hash, 2];
    inserts.push(`INSERT INTO audit_records (${storedRecordColumns.join(", ")}) VALUES (${values.map(sqlLiteral).join(", ")})`);
    prev = hash;
  }
  expect(columns.length + 6).toBe(storedRecordColumns.length);
  return { sql: inserts.join(";\n"), tail: prev };
}

describe.each([sqliteDriver, postgresDriver(() => pg, keyDir)])("tags on $name", (driver: TestDriver) => {
  test("exports filtered by tags carry only the matching records; the manifest names the tag keys, not their values", async () => {
    const { store } = await driver.open("export");
    try {
      for (let i = 1; i <= 6; i++) {
        const team = i % 3 === 0 ? null : i % 2 ? "platform" : "search";
        await call(store, i, {
          tags: team ? JSON.stringify({ team }) : null,
          personal_tags: i === 5 ? JSON.stringify({ email: "alice@example.com" }) : null,
        });
      }
      await store.flush();
      const exported = async (tag: string | string[]) => {
        const run = store.trail.export("ndjson", exportFilterSchema.parse({ tag }), "test");
        const text = await new Response(run.stream()).text();
        const ids = text.trim()
          ? text
              .trim()
              .split("\n")
              .map((line) => (JSON.parse(line) as { id: string }).id)
          : [];
        return { ids: ids.sort(), manifest: await store.trail.manifest(run.id) };
      };
      const platform = await exported("team=platform");
      expect(platform.ids).toEqual(["rec-1", "rec-5"]);
      expect(platform.manifest?.record_count).toBe(2);
      expect(platform.manifest?.filters.tags).toEqual(["team"]);
      // A personal tag filters too; its value is never written into the manifest.
      const alice = await exported(["team=platform", "email=alice@example.com"]);
      expect(alice.ids).toEqual(["rec-5"]);
      expect(alice.manifest?.filters.tags).toEqual(["email", "team"]);
      expect(JSON.stringify(alice.manifest)).not.toContain("alice@example.com");
      expect((await exported("team=nobody")).ids).toEqual([]);
    } finally {
      await store.close();
    }
  });

  test("recorded in the chain: filters and summaries by tag; an edited tag is reported at its seq", async () => {
    const { store, tamper } = await driver.open("dims");
    try {
      for (let i = 1; i <= 6; i++) {
        const team = i % 3 === 0 ? null : i % 2 ? "platform" : "search";
        await call(store, i, { tags: team ? JSON.stringify({ project: `p${i % 2}`, team }) : null });
      }
      await store.flush();
      const platform = await store.reader.records(records({ tag: "team=platform" }));
      expect(platform.records.map((r) => r.id).sort()).toEqual(["rec-1", "rec-5"]);
      const both = await store.reader.records(records({ tag: ["team=search", "project=p0"] }));
      expect(both.records.map((r) => r.id).sort()).toEqual(["rec-2", "rec-4"]);
      expect((await store.reader.records(records({ tag: "team=nobody" }))).records).toHaveLength(0);

      const byTeam = await store.reader.summary(summary({ by: "tag:team" }));
      const calls = Object.fromEntries(byTeam.groups.map((g) => [String(g.key), g.calls]));
      expect(calls).toEqual({ platform: 2, search: 2, null: 2 });
      expect(byTeam.total.calls).toBe(6);
      const modelOfPlatform = await store.reader.summary(summary({ by: "model", tag: "team=platform" }));
      expect(modelOfPlatform.total.calls).toBe(2);
      expect(modelOfPlatform.total.cost_nano_usd).toBe(2 * 250_000_000);

      expect((await store.trail.verify("cli:test")).ok).toBe(true);
      await tamper(`UPDATE audit_records SET tags = '{"project":"p1","team":"finance"}' WHERE id = 'rec-5'`);
      const report = await store.trail.verify("cli:test");
      expect(report.ok).toBe(false);
      const seq = (await store.reader.record("rec-5"))!.seq;
      expect(report.failure).toMatchObject({ seq, reason: "edited" });
    } finally {
      await store.close();
    }
  });

  test("a personal tag is behind the commitment: erasing its user clears it, verify passes; editing it is caught", async () => {
    const { store, tamper } = await driver.open("personal");
    try {
      await call(store, 1, { user_id: "alice", tags: '{"team":"platform"}', personal_tags: '{"email":"alice@example.com"}' });
      await call(store, 2, { user_id: "bob", tags: '{"team":"platform"}', personal_tags: '{"email":"bob@example.com"}' });
      await store.flush();
      expect((await store.reader.records(records({ tag: "email=alice@example.com" }))).records).toHaveLength(1);
      await store.trail.eraseUser("alice", "cli:test");
      const alice = await store.reader.record("rec-1");
      expect(alice).toMatchObject({ user_id: null, personal_tags: null, tags: '{"team":"platform"}' });
      expect((await store.reader.records(records({ tag: "email=alice@example.com" }))).records).toHaveLength(0);
      const byEmail = await store.reader.summary(summary({ by: "tag:email" }));
      expect(byEmail.groups.map((g) => g.key).sort()).toEqual(["bob@example.com", null]);
      expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, redacted: 1 });
      await tamper(`UPDATE audit_records SET personal_tags = '{"email":"eve@example.com"}' WHERE id = 'rec-2'`);
      expect((await store.trail.verify("cli:test")).failure).toMatchObject({ reason: "edited" });
    } finally {
      await store.close();
    }
  });

  test("a trail begun by 0.1 (record hash v2 rows) verifies with v3 records after it; a tag added to a v2 row is an edit", async () => {
    const { store, tamper } = await driver.open("upgrade");
    try {
      const old = v2Rows(3);
      await tamper(old.sql);
      await call(store, 1, { tags: '{"team":"platform"}' });
      await call(store, 2, { tags: null });
      await store.flush();
      const first = (await store.reader.record("rec-1"))!;
      expect(first.seq).toBe(4);
      expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, records: 5 });
      // The v2 rows are erasable as they always were.
      await store.trail.eraseUser("old-alice", "cli:test");
      expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, redacted: 1 });
      await tamper(`UPDATE audit_records SET tags = '{"team":"finance"}' WHERE seq = 2`);
      expect((await store.trail.verify("cli:test")).failure).toMatchObject({ seq: 2, reason: "edited" });
    } finally {
      await store.close();
    }
  });
});

test("proxy keys keep the tags they fix, on both drivers", async () => {
  const dir = tempDir();
  const sqlite = new SqliteAuditStore(join(dir, "audit.db"), { signingKey: join(dir, "signing-key") });
  const postgres = await PgAuditStore.open(pgContext(pg.logDb.replace(/schema=.*$/, `schema=${pg.schema}_keys`), keyDir));
  try {
    for (const keys of [sqlite.keys, postgres.keys]) {
      const { key, record } = await keys.create({ agents: ["bot"], tags: { team: "platform", "cost-center": "cc-42" } }, "cli:test");
      expect(record.tags).toEqual({ "cost-center": "cc-42", team: "platform" });
      expect((await keys.find(key))!.tags).toEqual({ "cost-center": "cc-42", team: "platform" });
      const { key: plain } = await keys.create({ agents: ["bot"] }, "cli:test");
      expect((await keys.find(plain))!.tags).toEqual({});
      expect((await keys.list()).map((k) => k.tags)).toContainEqual({ "cost-center": "cc-42", team: "platform" });
    }
  } finally {
    await sqlite.close();
    await postgres.close();
  }
});
