// The key tables (src/store/sqlite/key-index.ts) edited in the database, as someone with access to
// it could: an added entry brings no record of another key into lookups, filtered summaries or
// filtered exports; a removed one (which would hide a record from them) makes a filtered export
// refuse rather than sign without it; and `verify` reports either, and a cursor moved by hand, as
// `index_mismatch` naming the table and the seq. Closing the store folds every record first.
import { expect, test } from "bun:test";
import { recordFilterSchema, summaryFilterSchema } from "../../../src/store/filters.ts";
import { eventFilterSchema } from "../../../src/trail/events.ts";
import { exportFilterSchema } from "../../../src/trail/export.ts";
import { sqliteDriver, trailOn, type OpenedTrail, verifyTrail as verify } from "../../helpers/drivers.ts";
import { sampleRecord } from "../../helpers/records.ts";

const n = 40;
/** Two agents, three users, four tasks (tasks 1 and 3 the largest) and some calls without one, one UTC day. */
const record = (i: number) => sampleRecord(i, { agent_id: `agent-${i % 2}`, task_context: i % 10 === 0 ? null : `task ${i % 4}` });

interface Stored {
  seq: number;
  agent_id: string;
  user_id: string;
  task_context: string | null;
  day: string;
}

async function foldedTrail(label: string) {
  const trail = await trailOn(sqliteDriver, label, n, { record });
  const [state] = await trail.query<{ seq: number }>("SELECT seq FROM audit_key_index_state");
  expect(state!.seq).toBe(n); // folded at close: lookups read the key tables
  const rows = await trail.query<Stored>(
    "SELECT seq, agent_id, user_id, task_context, substr(timestamp, 1, 10) AS day FROM audit_records ORDER BY seq",
  );
  return { trail, rows };
}

/** What the store answers for one agent, user and task: records, a filtered summary's calls, an export's seqs. */
async function lookups(trail: OpenedTrail, filter: Record<string, string>) {
  const store = await trail.reopen();
  try {
    const page = await store.reader.records(recordFilterSchema.parse({ ...filter, limit: 1000 }));
    const summary = await store.reader.summary(summaryFilterSchema.parse({ by: "model", ...filter }));
    const run = store.trail.export("ndjson", exportFilterSchema.parse(filter), "api:auditor");
    let text = "";
    for await (const chunk of run.stream()) text += new TextDecoder().decode(chunk);
    const exported = text
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => (JSON.parse(line) as { seq: number }).seq);
    return { seqs: page.records.map((r) => r.seq).sort((a, b) => a - b), calls: summary.total.calls, exported };
  } finally {
    await store.close();
  }
}

/** A filtered export to its end: the error it stopped with, why its chain event says it was refused, its manifest. */
async function exportOf(trail: OpenedTrail, filter: Record<string, string>) {
  const store = await trail.reopen();
  try {
    const run = store.trail.export("ndjson", exportFilterSchema.parse(filter), "api:auditor");
    let error: Error | null = null;
    try {
      for await (const _ of run.stream());
    } catch (caught) {
      error = caught as Error;
    }
    const [event] = (await store.trail.events(eventFilterSchema.parse({ kind: "export" }))).events;
    const refused = (event!.details as { refused?: { seq: number; reason: string } }).refused ?? null;
    return { error, refused, manifest: await store.trail.manifest(run.id) };
  } finally {
    await store.close();
  }
}

const seqsOf = (rows: Stored[], keep: (row: Stored) => boolean) => rows.filter(keep).map((r) => r.seq);

test("an entry added to a key table brings in no record of another agent, user or task; verify names the table and the seq", async () => {
  const { trail, rows } = await foldedTrail("added");
  // Each key's first record of another value, filed under agent-1, user-1 and task 1.
  const agentSeq = rows.find((r) => r.agent_id !== "agent-1")!.seq;
  const userSeq = rows.find((r) => r.user_id !== "user-1" && r.seq > agentSeq)!.seq;
  const task = rows.find((r) => r.task_context !== null && r.task_context !== "task 1" && r.seq > userSeq)!;
  const taskless = rows.find((r) => r.task_context === null)!;
  await trail.tamper(`INSERT INTO audit_agent_index (agent_id, seq) VALUES ('agent-1', ${agentSeq})`);
  await trail.tamper(`INSERT INTO audit_user_index (user_id, seq) VALUES ('user-1', ${userSeq})`);
  for (const { day, seq } of [task, taskless]) {
    await trail.tamper(`INSERT INTO audit_task_index (day, task_context, seq) VALUES ('${day}', 'task 1', ${seq})`);
  }
  for (const [filter, keep] of [
    [{ agent: "agent-1" }, (r: Stored) => r.agent_id === "agent-1"],
    [{ user: "user-1" }, (r: Stored) => r.user_id === "user-1"],
    [{ task: "task 1" }, (r: Stored) => r.task_context === "task 1"],
  ] as const) {
    const want = seqsOf(rows, keep);
    expect(await lookups(trail, filter)).toEqual({ seqs: want, calls: want.length, exported: want });
  }
  // A top-N summary by task finds its first groups' records through the task table: still the
  // first two, whole, with the entries added under task 1.
  const store = await trail.reopen();
  const top = await store.reader.summary(summaryFilterSchema.parse({ by: "task", limit: 2 }));
  await store.close();
  expect(top.groups.map((g) => [g.key, g.calls]).sort()).toEqual([
    ["task 1", 10],
    ["task 3", 10],
  ]);
  const failure = (await verify(trail)).failure;
  expect(failure).toMatchObject({ seq: agentSeq, reason: "index_mismatch" });
  expect(failure!.message).toContain("audit_agent_index has an entry the record");
}, 30_000);

test("an entry removed from a key table: verify fails at its seq naming the table; an export filtered by it is refused, not signed without the record", async () => {
  const { trail, rows } = await foldedTrail("removed");
  const hidden = rows.find((r) => r.user_id === "user-2" && r.seq > 10)!;
  await trail.tamper(`DELETE FROM audit_user_index WHERE seq = ${hidden.seq}`);
  const report = await verify(trail);
  expect(report.ok).toBe(false);
  expect(report.failure).toMatchObject({ seq: hidden.seq, reason: "index_mismatch" });
  expect(report.failure!.message).toBe(`seq ${hidden.seq}: audit_user_index has no entry for the record, so lookups by user miss it`);

  const refused = await exportOf(trail, { user: "user-2" });
  expect(refused.refused).toEqual({ seq: hidden.seq, reason: "index_mismatch" });
  expect(refused.error?.message).toContain(`the export was refused at seq ${hidden.seq}`);
  expect(refused.manifest).toBeNull();
  // Exports the removed entry does not touch are signed: another user's, the whole trail's.
  expect((await exportOf(trail, { user: "user-1" })).manifest).toMatchObject({
    record_count: seqsOf(rows, (r) => r.user_id === "user-1").length,
  });
  expect((await exportOf(trail, {})).manifest).toMatchObject({ record_count: n });
}, 30_000);

test("the same for a task's entry, and for an agent's within an export's dates", async () => {
  const { trail: other, rows: others } = await foldedTrail("removed-task");
  const task = others.find((r) => r.task_context === "task 3")!;
  await other.tamper(`DELETE FROM audit_task_index WHERE seq = ${task.seq}`);
  expect((await verify(other)).failure).toMatchObject({ seq: task.seq, reason: "index_mismatch" });
  expect((await exportOf(other, { task: "task 3" })).refused).toEqual({ seq: task.seq, reason: "index_mismatch" });
  await other.tamper(`DELETE FROM audit_agent_index WHERE seq = 7`);
  const dated = { agent: others[6]!.agent_id, start_date: "2000-01-01", end_date: "2999-01-01" };
  expect((await exportOf(other, dated)).refused).toEqual({ seq: 7, reason: "index_mismatch" });
  expect((await verify(other)).failure).toMatchObject({ seq: Math.min(7, task.seq), reason: "index_mismatch" });
}, 30_000);

test("the key index's cursor moved by hand: past the last record, back, or gone, verify fails", async () => {
  for (const [label, sql, seq] of [
    ["ahead", `UPDATE audit_key_index_state SET seq = ${n + 5}`, n + 1],
    // Moved back, the next fold would add the entries the tables already hold.
    ["back", "UPDATE audit_key_index_state SET seq = 25", 26],
    ["gone", "DELETE FROM audit_key_index_state", 1],
  ] as const) {
    const { trail } = await foldedTrail(label);
    expect((await verify(trail)).failure).toBeNull();
    await trail.tamper(sql);
    expect((await verify(trail)).failure, label).toMatchObject({ seq, reason: "index_mismatch" });
  }
}, 30_000);

test("an intact trail verifies after erasure, whose triggers keep the key tables exact", async () => {
  const { trail } = await foldedTrail("erased");
  const store = await trail.reopen();
  await store.trail.eraseUser("user-2", "cli:test");
  await store.close();
  expect(await trail.query("SELECT count(*) AS n FROM audit_user_index WHERE user_id = 'user-2'")).toEqual([{ n: 0 }]);
  expect(await verify(trail)).toMatchObject({ ok: true, failure: null });
});
