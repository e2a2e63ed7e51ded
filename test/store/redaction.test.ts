// Signed redactions on both drivers. Someone with write access to the database (not to the signing
// key file) nulls a checkpointed record's personal fields and salt, then appends a well-chained
// erasure event naming its seq: verify must not take that event's word for it, and the proxy's
// checkpointer must not sign over it. Lawful redactions (the API, the CLI, retention, on landing)
// are signed and keep verifying with every checkpoint checked; an unsigned event an older version
// wrote under a checkpoint still verifies.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dirname } from "node:path";
import { PgAuditStore } from "../../src/store/postgres/store.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import { ChainHasher } from "../../src/trail/chain.ts";
import { signCheckpoint } from "../../src/trail/checkpoint.ts";
import { loadSigningKey } from "../../src/trail/signing.ts";
import {
  cliOn,
  postgresDriver,
  sqliteDriver,
  trailOn,
  type OpenedTrail,
  type TestDriver,
  type TestStore,
  verifyTrail as verify,
} from "../helpers/drivers.ts";
import { capturedLog, pgContext, pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("redaction");
});
afterAll(async () => {
  await pg.drop();
});

const redact =
  "user_id = NULL, key_id = NULL, task_context = NULL, session_id = NULL, trace_id = NULL, prompt_hash = NULL, response_hash = NULL, delegation = NULL, salt = NULL";
const checkpoint = { everyRecords: 10, everySeconds: 3600 };

/** The chain's last entry (records and events). */
async function tailOf(trail: OpenedTrail): Promise<{ seq: number; hash: string }> {
  const [last] = await trail.query<{ seq: number | string; hash: string }>(
    "SELECT seq, hash FROM (SELECT seq, hash FROM audit_records UNION ALL SELECT seq, hash FROM audit_events) t ORDER BY seq DESC LIMIT 1",
  );
  return { seq: Number(last!.seq), hash: last!.hash };
}

/** Appends a well-chained erasure event by hand, as an attacker with database access can (the hash formula is public); returns its seq. */
async function forgeErasure(trail: OpenedTrail, details: Record<string, unknown>): Promise<number> {
  const tail = await tailOf(trail);
  const seq = tail.seq + 1;
  const timestamp = new Date().toISOString();
  const text = JSON.stringify(details);
  const hash = new ChainHasher().event(tail.hash, timestamp, "erasure", "cli:mallory", text);
  await trail.tamper(
    `INSERT INTO audit_events (seq, timestamp, kind, actor, details, prev_hash, hash) VALUES (${seq}, '${timestamp}', 'erasure', 'cli:mallory', '${text}', '${tail.hash}', '${hash}')`,
  );
  return seq;
}

const lastCheckpoint = async (trail: OpenedTrail) =>
  Number((await trail.query<{ seq: number | string | null }>("SELECT max(seq) AS seq FROM audit_checkpoints"))[0]!.seq ?? 0);

/** A store on the trail, as the proxy opens it, whose log (the checkpointer's complaints) the test reads. */
async function storeWithLog(driver: TestDriver, trail: OpenedTrail): Promise<{ store: TestStore; lines: string[] }> {
  if (driver.name === "sqlite") {
    const lines: string[] = [];
    const store = new SqliteAuditStore(trail.logDb, {
      checkpoint,
      signingKey: trail.signingKey,
      onError: (m) => lines.push(m),
      onWarning: (m) => lines.push(m),
    });
    return { store, lines };
  }
  const log = capturedLog();
  const ctx = pgContext(trail.logDb, dirname(trail.signingKey), log);
  return { store: await PgAuditStore.open({ ...ctx, audit: { ...ctx.audit, checkpoint } }), lines: log.lines };
}

describe.each([sqliteDriver, postgresDriver(() => pg)])("signed redactions on $name", (driver: TestDriver) => {
  test("a record's personal fields nulled by hand, with an unsigned erasure event forged at the tail naming it: unauthorised_redaction at the record's seq", async () => {
    const trail = await trailOn(driver, "forged", 10); // checkpointed up to seq 10 on close
    await trail.tamper(`UPDATE audit_records SET ${redact} WHERE seq = 5`);
    const forged = await forgeErasure(trail, { records: 1, seqs: [[5, 5]] });
    const { failure } = await verify(trail);
    expect(failure).toMatchObject({ seq: 5, reason: "unauthorised_redaction" });
    expect(failure?.message).toBe(
      `seq 5: its personal fields were erased, but the erasure event at seq ${forged} that names it is not signed by this instance's key`,
    );
  });

  test("a lawful erasure's signature copied onto a forged event naming other seqs does not cover them", async () => {
    const trail = await trailOn(driver, "replayed", 10);
    const store = await trail.reopen();
    await store.trail.eraseUser("user-1", "cli:test"); // seqs 1, 4, 7, 10
    await store.close();
    const [lawful] = await trail.query<{ details: string }>("SELECT details FROM audit_events WHERE kind = 'erasure'");
    const { signature } = JSON.parse(lawful!.details) as { signature: string };
    expect(signature).toBeString();
    await trail.tamper(`UPDATE audit_records SET ${redact} WHERE seq = 5`);
    await forgeErasure(trail, { records: 1, seqs: [[5, 5]], signature });
    expect((await verify(trail)).failure).toMatchObject({ seq: 5, reason: "unauthorised_redaction" });
  });

  test("a forged erasure event that covers no redacted record still fails verify (it stops every checkpoint while it stands)", async () => {
    const trail = await trailOn(driver, "stall", 10);
    const forged = await forgeErasure(trail, { records: 0, seqs: [[999_999, 999_999]] });
    const report = await verify(trail);
    expect(report.failure).toMatchObject({ seq: forged, reason: "unauthorised_redaction" });
    expect(report.failure!.message).toContain("no checkpoint is signed");
  });

  test("the proxy's checkpointer signs no checkpoint over a forged erasure event, and says which event and what to run", async () => {
    const trail = await trailOn(driver, "refuse", 10);
    await trail.tamper(`UPDATE audit_records SET ${redact} WHERE seq = 5`);
    const forged = await forgeErasure(trail, { records: 1, seqs: [[5, 5]] });
    const { store, lines } = await storeWithLog(driver, trail);
    // Ten records: a checkpoint is due (every 10 records), and another on close.
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.commit(sampleRecord(100 + i))));
    await store.flush();
    await store.close();
    expect(await lastCheckpoint(trail)).toBe(10);
    const refusals = lines.filter((line) => line.includes(`erasure event at seq ${forged}`));
    expect(refusals).toHaveLength(1); // said once, not at every attempt
    expect(refusals[0]).toContain("no checkpoint signed");
    expect(refusals[0]).toContain("run agent-attr audit verify");
    // Nothing was blessed: verify still names the record.
    expect((await verify(trail)).failure).toMatchObject({ seq: 5, reason: "unauthorised_redaction" });
  });

  test("lawful redactions are signed and checkpointed: retention, an erasure through the store (the API's path), on landing, and through the CLI", async () => {
    const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
    const trail = await trailOn(driver, "lawful", 9, { record: (i) => sampleRecord(i, i <= 3 ? { timestamp: old } : {}) });
    const store = await trail.reopen({ retentionDays: 30 }); // retention runs as the store opens
    const inFlight = sampleRecord(50, { user_id: "user-1", outcome: null });
    await store.begin(inFlight);
    await store.trail.eraseUser("user-1", "api");
    await store.commit({ ...inFlight, outcome: "completed" }); // lands after the erasure: redacted on landing
    await store.flush();
    await store.close();
    const erased = await cliOn(trail, "audit", "delete", "--user", "user-2");
    expect(erased.exitCode).toBe(0);
    const events = (
      await trail.query<{ seq: number | string; kind: string; details: string }>(
        "SELECT seq, kind, details FROM audit_events WHERE kind IN ('erasure', 'retention') ORDER BY seq",
      )
    ).map((e) => ({ seq: Number(e.seq), kind: e.kind, details: JSON.parse(e.details) as Record<string, unknown> }));
    // (SQLite's writer thread runs retention as it opens, concurrently with the erasure: either comes first.)
    expect(events.map((e) => `${e.kind}${e.details.on_landing ? " on landing" : ""}`).sort()).toEqual([
      "erasure",
      "erasure",
      "erasure on landing",
      "retention",
    ]);
    expect(events.every((e) => typeof e.details.signature === "string")).toBe(true);
    // The CLI sealed its erasure: a checkpoint covers every redaction event.
    expect(await lastCheckpoint(trail)).toBe(events.at(-1)!.seq);
    const report = await verify(trail);
    expect(report).toMatchObject({ ok: true, unverified_checkpoints: 0, redacted: 8 });
    expect(report.checkpoints).toBeGreaterThanOrEqual(2);
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
  });

  test("an unsigned erasure event an older version wrote, under a checkpoint it signed, still verifies; later checkpoints are signed again", async () => {
    const trail = await trailOn(driver, "legacy", 10);
    await trail.tamper(`UPDATE audit_records SET ${redact} WHERE seq = 5`);
    const legacy = await forgeErasure(trail, { records: 1, seqs: [[5, 5]] });
    // What the older version's checkpointer did: sign the tail, the unsigned event included.
    const [{ chain_id }] = (await trail.query<{ chain_id: string }>("SELECT chain_id FROM audit_checkpoints LIMIT 1")) as [
      { chain_id: string },
    ];
    const tail = await tailOf(trail);
    const signed = signCheckpoint(loadSigningKey(trail.signingKey, { create: false })!, {
      chain_id,
      seq: tail.seq,
      hash: tail.hash,
      time: new Date().toISOString(),
    });
    await trail.tamper(
      `INSERT INTO audit_checkpoints (chain_id, seq, hash, time, signature) VALUES ('${chain_id}', ${signed.seq}, '${signed.hash}', '${signed.time}', '${signed.signature}')`,
    );
    expect(await verify(trail)).toMatchObject({ ok: true, redacted: 1, checkpoints: 2 });
    const store = await trail.reopen();
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.commit(sampleRecord(100 + i))));
    await store.close();
    expect(await lastCheckpoint(trail)).toBeGreaterThan(legacy);
    expect(await verify(trail)).toMatchObject({ ok: true, redacted: 1 });
  });

  test("audit delete without the signing key refuses (its erasure event could not be signed) and erases nothing", async () => {
    const trail = await trailOn(driver, "keyless", 3);
    // Elsewhere than the repository, whose ./agent-attr.signing-key (PostgreSQL's default) a test may have made.
    const refused = await runCli(["audit", "delete", "--user", "user-1", "--log-db", trail.logDb], { cwd: tempDir(), timeoutMs: 30_000 });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain("erasures are signed");
    expect(await trail.query("SELECT seq FROM audit_records WHERE salt IS NULL")).toEqual([]);
  });
});
