/**
 * `bun run bench:pg-store`: the PostgreSQL store's sustained records per second into the one chain,
 * with 1, 2 and 3 writer processes (replicas) on one database. Each writer runs the real store
 * (src/store/postgres/): every record is first made durable (group-committed intent rows), then
 * appended to the chain in batches (COPY, under the chain lock) with its intent deleted in the same
 * transaction. The figure is rows landed in audit_records per second over the measured window; the
 * chain is verified at the end. Uses a fresh schema on AGENT_ATTR_BENCH_PG (default the local
 * server's database `test`) and drops it.
 */
import { SQL } from "bun";
import { PgAuditStore } from "../src/store/postgres/store.ts";
import { openPgAdmin } from "../src/store/postgres/index.ts";
import type { AuditRecord } from "../src/trail/record.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuMs } from "./procs.ts";

const server = process.env.AGENT_ATTR_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/test";
const seconds = Number(process.env.BENCH_SECONDS ?? 8);
const quietLog = { info() {}, warn() {}, error: (m: string) => console.error(m) };
const context = (logDb: string) => ({
  logDb,
  log: quietLog,
  audit: {
    checkpoint: { everyRecords: 10_000, everySeconds: 60 },
    signingKey: join(tmpdir(), "agent-attr-bench-pg.signing-key"),
    maxBacklog: 20_000,
  },
});

function record(i: number, writer: string): AuditRecord {
  return {
    id: `${writer}-${i}-${crypto.randomUUID()}`,
    seq: 0,
    timestamp: new Date().toISOString(),
    duration_ms: 812.5,
    ttfb_ms: 210,
    agent_id: `agent-${i % 50}`,
    user_id: `user-${i % 1000}`,
    task_context: `task ${i % 200}`,
    session_id: "sess-1",
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: null,
    provider: "openai",
    endpoint: "/v1/chat/completions",
    model: "gpt-4o",
    response_model: "gpt-4o-2024-08-06",
    stream: i % 2 === 0,
    status: 200,
    outcome: "completed",
    input_tokens: 1200,
    output_tokens: 300,
    cache_read_tokens: 0,
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: null,
    usage_source: "provider",
    cost_usd: 0.006,
    cost_nano_usd: 6_000_000,
    price_source: "bench",
    prompt_hash: "ab".repeat(32),
    response_hash: "cd".repeat(32),
    error_type: null,
    delegation: null,
    tags: null,
    personal_tags: null,
    consent_id: null,
    purpose: null,
    lawful_basis: null,
    consent_source: null,
  };
}

/** A writer process: begins and commits calls, keeping `inflight` outstanding, until killed. */
async function writer(logDb: string, name: string): Promise<void> {
  const store = await PgAuditStore.open(context(logDb));
  const inflight = 2000;
  let i = 0;
  // As the proxy does: the intent before forwarding (refused past maxBacklog), the final record after.
  const lane = async () => {
    for (;;) {
      const r = record(i++, name);
      try {
        await store.begin({ ...r, outcome: null });
        await store.commit(r);
      } catch {
        await Bun.sleep(5);
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
}

async function round(writers: number): Promise<{ rps: number; cpuPerRecordUs: number; ok: boolean }> {
  const schema = `aa_bench_${process.pid}_${writers}`;
  const logDb = `${server}?schema=${schema}`;
  const sql = new SQL(server, { max: 1 });
  const count = async () => Number(((await sql.unsafe(`SELECT count(*) AS n FROM "${schema}".audit_records`)) as { n: string }[])[0]!.n);
  const children = Array.from({ length: writers }, (_, w) =>
    Bun.spawn(["bun", import.meta.path, "writer", logDb, `w${w}`], { stdout: "inherit", stderr: "inherit" }),
  );
  try {
    for (let tries = 0; ; tries++) {
      try {
        await count();
        break;
      } catch {
        if (tries > 100) throw new Error("the writers did not create the schema");
        await Bun.sleep(100);
      }
    }
    await Bun.sleep(2000); // warm-up
    const cpu0 = children.map((c) => cpuMs(c.pid) ?? 0);
    const n0 = await count();
    const t0 = performance.now();
    await Bun.sleep(seconds * 1000);
    const n1 = await count();
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = children.reduce((sum, c, k) => sum + ((cpuMs(c.pid) ?? 0) - cpu0[k]!), 0);
    for (const child of children) child.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exited));
    const admin = await openPgAdmin({ ...context(logDb), create: false });
    // The killed writers' leftovers are intents, not chain entries: the chain itself must verify.
    const report = await admin.trail.verify("bench");
    await admin.close();
    return { rps: (n1 - n0) / elapsed, cpuPerRecordUs: (cpu * 1000) / Math.max(1, n1 - n0), ok: report.ok };
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await sql.close();
  }
}

if (process.argv[2] === "writer") {
  await writer(process.argv[3]!, process.argv[4]!);
} else {
  console.log(
    `PostgreSQL store, ${seconds} s per round (load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")})`,
  );
  console.log("| writers | records/s into the chain | client CPU per record | chain verifies |");
  console.log("|---|---|---|---|");
  for (const writers of [1, 2, 3]) {
    const r = await round(writers);
    console.log(
      `| ${writers} | ${Math.round(r.rps).toLocaleString("en-US")} | ${r.cpuPerRecordUs.toFixed(1)} µs | ${r.ok ? "yes" : "NO"} |`,
    );
  }
}
