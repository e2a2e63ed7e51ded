/**
 * Consents on both drivers, through the storage contract: granting and withdrawing as chain
 * events naming the actor, expiries recorded once, erasure of a user's consents with verify still
 * passing, and a withdrawal seen at once by another process (PostgreSQL: another replica).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { newConsentSchema, uncovered } from "../../src/store/consents.ts";
import { openPgAdmin, PgAuditStore } from "../../src/store/postgres/index.ts";
import { sqliteStore } from "../../src/store/sqlite/index.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import { eventFilterSchema } from "../../src/trail/events.ts";
import { postgresDriver, sqliteDriver, type TestDriver } from "../helpers/drivers.ts";
import { capturedLog, pgContext, pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
const keyDir = tempDir();
beforeAll(async () => {
  pg = await pgSchema("consents");
});
afterAll(async () => {
  await pg.drop();
});

const grant = (overrides: Record<string, unknown> = {}) =>
  newConsentSchema.parse({ user: "alice", agents: ["code-review-*"], purpose: "PR review", ...overrides });
const events = eventFilterSchema.parse({ limit: 100 });

describe.each([sqliteDriver, postgresDriver(() => pg, keyDir)])("consents on $name", (driver: TestDriver) => {
  test("grant, look up, withdraw: each change a chain event naming the actor, never the user", async () => {
    const { store } = await driver.open("life");
    try {
      const granted = await store.consents.grant(grant({ task_pattern: "PR #*", lawful_basis: "contract" }), "cli:dpo");
      expect(granted).toMatchObject({
        user_id: "alice",
        purpose: "PR review",
        lawful_basis: "contract",
        status: "active",
        granted_by: "cli:dpo",
      });
      expect(granted.id).toMatch(/^cns_[0-9a-f]{16}$/);
      expect((await store.consents.forUser("alice")).map((c) => c.id)).toEqual([granted.id]);
      expect(await store.consents.forUser("bob")).toEqual([]);
      const call = { user_id: "alice", agent_id: "code-review-bot", task_context: "PR #12", purpose: null };
      expect(uncovered(granted, call)).toBeNull();
      expect(uncovered(granted, { ...call, agent_id: "deploy-bot" })).toContain("agent");
      expect(uncovered(granted, { ...call, task_context: "issue 4" })).toContain("task");
      expect(uncovered(granted, { ...call, purpose: "marketing" })).toContain("purpose");

      const revoked = await store.consents.revoke(granted.id, "api:admin");
      expect(revoked).toMatchObject({ status: "withdrawn", revoked_by: "api:admin" });
      expect(await store.consents.forUser("alice")).toEqual([]);
      expect((await store.consents.find(granted.id))?.status).toBe("withdrawn");
      // Idempotent: a second withdrawal records nothing.
      expect((await store.consents.revoke(granted.id, "api:admin"))?.status).toBe("withdrawn");
      expect(await store.consents.revoke("cns_0000000000000000", "api:admin")).toBeNull();

      const page = await store.trail.events(events);
      const consentEvents = page.events.filter((e) => e.kind.startsWith("consent_")).reverse();
      expect(consentEvents.map((e) => [e.kind, e.actor])).toEqual([
        ["consent_granted", "cli:dpo"],
        ["consent_withdrawn", "api:admin"],
      ]);
      expect(consentEvents[0]!.details).toEqual({
        consent_id: granted.id,
        agents: ["code-review-*"],
        purpose: "PR review",
        lawful_basis: "contract",
        task_pattern: true,
        expires_at: null,
      });
      expect(JSON.stringify(page.events)).not.toContain("alice");
      expect(JSON.stringify(page.events)).not.toContain("PR #*");
      const report = await store.trail.verify("cli:test");
      expect(report.ok).toBe(true);
    } finally {
      await store.close();
    }
  });

  test("a record's consent, purpose or basis edited in the database is caught by verify", async () => {
    const { store, tamper } = await driver.open("tamper");
    try {
      for (let i = 1; i <= 3; i++) {
        const call = sampleRecord(i, {
          consent_id: "cns_00000000000000aa",
          purpose: "PR review",
          lawful_basis: "consent",
          consent_source: "lookup",
        });
        await store.begin({ ...call, outcome: null });
        await store.commit(call);
      }
      await store.flush();
      expect((await store.trail.verify("cli:test")).ok).toBe(true);
      await tamper("UPDATE audit_records SET purpose = 'marketing' WHERE id = 'rec-2'");
      const report = await store.trail.verify("cli:test");
      expect(report.ok).toBe(false);
      expect(report.failure).toMatchObject({ reason: "edited" });
    } finally {
      await store.close();
    }
  });

  test("an expired consent covers nothing, and its expiry is recorded once", async () => {
    const { store } = await driver.open("expiry");
    try {
      const soon = await store.consents.grant(grant({ expires_at: new Date(Date.now() + 300).toISOString() }), "cli:dpo");
      const later = await store.consents.grant(grant({ expires_at: new Date(Date.now() + 86_400_000).toISOString() }), "cli:dpo");
      while ((await store.consents.find(soon.id))?.status === "active") await Bun.sleep(50);
      const call = { user_id: "alice", agent_id: "code-review-bot", task_context: null, purpose: null };
      const covering = (await store.consents.forUser("alice")).filter((c) => uncovered(c, call) === null);
      expect(covering.map((c) => c.id)).toEqual([later.id]);
      expect(await store.consents.recordExpiries()).toBe(1);
      expect(await store.consents.recordExpiries()).toBe(0);
      const expired = (await store.trail.events(events)).events.filter((e) => e.kind === "consent_expired");
      expect(expired).toHaveLength(1);
      expect(expired[0]).toMatchObject({ actor: "expiry", details: { consent_id: soon.id, expired_at: soon.expires_at } });
      expect((await store.consents.list({ status: "expired" })).map((c) => c.id)).toEqual([soon.id]);
      expect((await store.consents.list({ status: "active", user: "alice" })).map((c) => c.id)).toEqual([later.id]);
    } finally {
      await store.close();
    }
  });

  test("erasing a user erases their consents' user and task pattern; the consent's purpose stays and verify passes", async () => {
    const { store } = await driver.open("erase");
    try {
      const mine = await store.consents.grant(grant({ task_pattern: "alice's PRs *" }), "cli:dpo");
      const other = await store.consents.grant(grant({ user: "bob" }), "cli:dpo");
      const call = sampleRecord(1, {
        user_id: "alice",
        consent_id: mine.id,
        purpose: "PR review",
        lawful_basis: "consent",
        consent_source: "lookup",
      });
      await store.begin({ ...call, outcome: null });
      await store.commit(call);
      await store.flush();
      await store.trail.eraseUser("alice", "cli:dpo");
      // The record keeps what the call was for and on which basis; the user is gone.
      expect(await store.reader.record(call.id)).toMatchObject({ user_id: null, consent_id: mine.id, purpose: "PR review" });
      const erased = await store.consents.find(mine.id);
      expect(erased).toMatchObject({ user_id: null, task_pattern: null, purpose: "PR review", status: "erased" });
      expect(await store.consents.forUser("alice")).toEqual([]);
      expect((await store.consents.find(other.id))?.status).toBe("active");
      expect(JSON.stringify(await store.consents.list({}))).not.toContain("alice");
      expect((await store.consents.revoke(mine.id, "cli:dpo"))?.status).toBe("erased");
      expect((await store.trail.verify("cli:test")).ok).toBe(true);
    } finally {
      await store.close();
    }
  });
});

test("SQLite: a consent withdrawn by the CLI no longer covers the proxy's next lookup", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const store = new SqliteAuditStore(logDb, { signingKey: join(dir, "signing-key") });
  const admin = await sqliteStore().openAdmin({
    logDb,
    log: capturedLog(),
    audit: { checkpoint: { everyRecords: 10, everySeconds: 3600 }, signingKey: join(dir, "signing-key") },
    create: false,
  });
  try {
    const granted = await admin.consents.grant(grant(), "cli:dpo");
    expect((await store.consents.forUser("alice")).map((c) => c.id)).toEqual([granted.id]);
    await admin.consents.revoke(granted.id, "cli:dpo");
    expect(await store.consents.forUser("alice")).toEqual([]);
    expect((await store.consents.find(granted.id))?.status).toBe("withdrawn");
    expect((await admin.trail.verify("cli:test")).ok).toBe(true);
  } finally {
    await admin.close();
    await store.close();
  }
});

test("PostgreSQL: a consent withdrawn through one replica no longer covers the next call on another", async () => {
  const logDb = pg.logDb.replace(/schema=.*$/, `schema=${pg.schema}_replicas`);
  const a = await PgAuditStore.open(pgContext(logDb, keyDir));
  const b = await PgAuditStore.open(pgContext(logDb, keyDir));
  const admin = await openPgAdmin({ ...pgContext(logDb, keyDir), create: false });
  try {
    const granted = await a.consents.grant(grant(), "api:admin");
    expect((await b.consents.forUser("alice")).map((c) => c.id)).toEqual([granted.id]);
    await admin.consents.revoke(granted.id, "cli:dpo");
    expect(await a.consents.forUser("alice")).toEqual([]);
    expect(await b.consents.forUser("alice")).toEqual([]);
    expect((await b.consents.find(granted.id))?.status).toBe("withdrawn");
  } finally {
    await admin.close();
    await a.close();
    await b.close();
  }
});
