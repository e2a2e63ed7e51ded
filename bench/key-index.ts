/**
 * Lookups by agent, user and task, and `audit verify`, on a large SQLite trail (not part of `bun run bench`):
 *   bun bench/key-index.ts [records=1000000] [--db PATH]
 * builds a chained, signed trail of N records with bench/summary.ts's generator (or reuses PATH),
 * folds it into the key tables as the writer thread would, then times (median of 5) a page of
 * records, a filtered summary and a filtered export's count and rows for one agent, user and task,
 * and (median of 3) a filtered export's check before it signs, the key tables' check in verify,
 * and the whole `verifyChain` that `audit verify` runs.
 */
import { createPublicKey } from "node:crypto";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChainWriter } from "../src/store/sqlite/chain-writer.ts";
import { Checkpointer } from "../src/store/sqlite/checkpointer.ts";
import { openAuditLog } from "../src/store/sqlite/database.ts";
import { sqliteExportSource } from "../src/store/sqlite/export-rows.ts";
import { foldKeyIndex } from "../src/store/sqlite/key-index.ts";
import { keyIndexMismatch } from "../src/store/sqlite/key-index-check.ts";
import { advanceRollup } from "../src/store/sqlite/rollup.ts";
import { verifyChain } from "../src/store/sqlite/verify.ts";
import { recordFilterSchema, summaryFilterSchema } from "../src/store/filters.ts";
import { defaultCheckpointSettings } from "../src/trail/checkpoint.ts";
import { exportFilterSchema } from "../src/trail/export.ts";
import { toRow } from "../src/trail/row.ts";
import { loadHashKey } from "../src/trail/secret.ts";
import { loadSigningKey, signingKeyPath } from "../src/trail/signing.ts";
import { record } from "./summary.ts";

const args = process.argv.slice(2);
const dbAt = args.indexOf("--db");
const reuse = dbAt >= 0 ? args[dbAt + 1]! : null;
const total = Number(args.find((a, i) => /^\d+$/.test(a) && args[i - 1] !== "--db") ?? 1_000_000);
const logDb = reuse ?? join(mkdtempSync(join(tmpdir(), "agent-attr-key-index-bench-")), "audit.db");

if (!existsSync(logDb)) {
  const t0 = performance.now();
  const log = openAuditLog(logDb);
  const chain = new ChainWriter(log.db, loadHashKey(logDb));
  const now = Date.now();
  for (let from = 0; from < total; from += 10_000) {
    chain.append(Array.from({ length: Math.min(10_000, total - from) }, (_, k) => toRow(record(from + k, total, now))));
  }
  const key = loadSigningKey(signingKeyPath(logDb), { create: true })!;
  new Checkpointer(chain, key, defaultCheckpointSettings, console.error).checkpoint();
  while (advanceRollup(log.db) > 0);
  while (foldKeyIndex(log.db) > 0);
  chain.finalize();
  log.close();
  console.log(`built ${total.toLocaleString("en-US")} records at ${logDb} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

const log = openAuditLog(logDb);
while (foldKeyIndex(log.db) > 0);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
async function time(label: string, runs: number, body: () => unknown): Promise<void> {
  const ms: number[] = [];
  let answer: unknown;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    answer = await body();
    ms.push(performance.now() - t0);
  }
  console.log(`${label.padEnd(44)} ${median(ms).toFixed(1).padStart(8)} ms  (${JSON.stringify(answer)})`);
}

// bench/summary.ts's spread: 200 agents, 5,000 users, 100,000 tasks.
for (const [key, value] of [
  ["agent", "agent-7"],
  ["user", "user-77"],
  ["task", "PR review #777"],
] as const) {
  await time(`records ${key}=${value} (page of 50)`, 5, async () => {
    const page = await log.reader.records(recordFilterSchema.parse({ [key]: value, limit: 50 }));
    return page.records.length;
  });
  await time(`summary by model, ${key}=${value}`, 5, async () => {
    const summary = await log.reader.summary(summaryFilterSchema.parse({ by: "model", [key]: value }));
    return summary.total.calls;
  });
  await time(`export ${key}=${value} (count and rows)`, 5, () => {
    const source = sqliteExportSource(log.db, exportFilterSchema.parse({ format: "json", [key]: value }));
    let rows = 0;
    const chunks = source.rows() as Iterator<readonly unknown[]>;
    for (let chunk = chunks.next(); !chunk.done; chunk = chunks.next()) rows += chunk.value.length;
    return [source.count?.(), rows];
  });
  await time(`export ${key}=${value} (its check before signing)`, 3, async () => {
    const anchor = await sqliteExportSource(log.db, exportFilterSchema.parse({ format: "json", [key]: value })).anchor();
    return anchor.hiddenRecord ?? null;
  });
}
const db = log.db;
await time("the key tables' check alone (in verify)", 3, () => db.transaction(() => keyIndexMismatch(db, total))());
const signing = loadSigningKey(signingKeyPath(logDb), { create: false });
const publicKey = signing ? createPublicKey(signing) : null;
await time("verifyChain (the whole trail)", 3, () => {
  const report = verifyChain(log.db, publicKey);
  return [report.ok, report.records, report.failure?.reason ?? null];
});
log.close();
