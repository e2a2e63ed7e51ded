/**
 * `bun run bench:pg-store`: the PostgreSQL store's sustained records per second into the one chain,
 * with 1, 2 and 3 writer processes (replicas) on one database. Each writer runs the real store
 * (src/store/postgres/): every record is first made durable (its intent, group-committed), then
 * appended to the chain in batches (COPY, under the chain lock) with its intent group settled in
 * the same transaction. The figures are records landed per second over the measured window and the
 * CPU per record of the writers (client) and of the server; the chain is verified after each round.
 *
 * By default the bench starts a PostgreSQL of its own (./postgres-private.ts: fsync and
 * synchronous_commit on), seeds a trail of BENCH_SEED records (default 300,000) once, and runs
 * each round on a copy of it. AGENT_ATTR_BENCH_PG=postgres://… uses that server instead (a fresh
 * schema per round, dropped after; no server CPU). BENCH_WRITERS (default 1,2,3), BENCH_SECONDS
 * (8), BENCH_ROUNDS (1), BENCH_BATCH_ROWS (the store's batchRows); BENCH_STORE_ROOTS=dirA,dirB runs
 * the store of each checkout in alternating rounds (A/B in one run).
 */
import { SQL } from "bun";
import { openPgAdmin, PgAuditStore } from "../src/store/postgres/index.ts";
import { append } from "../src/store/postgres/chain.ts";
import { advanceRollup } from "../src/store/postgres/rollup.ts";
import { transaction } from "../src/store/postgres/writer.ts";
import { toRow } from "../src/trail/row.ts";
import type { AuditRecord } from "../src/trail/record.ts";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cpuMs } from "./procs.ts";
import { startBenchPostgres, type BenchPostgres } from "./postgres-private.ts";

/** `private` (default): a PostgreSQL of the bench's own, whose CPU is counted; or a server's URL. */
const target = process.env.AGENT_ATTR_BENCH_PG ?? "private";
const writerCounts = (process.env.BENCH_WRITERS ?? "1,2,3").split(",").map(Number);
/** Another checkout whose store the writers run instead (A/B against a baseline, in one run). */
const storeRoots = (process.env.BENCH_STORE_ROOTS ?? resolve(import.meta.dir, "..")).split(",");
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

function record(i: number): AuditRecord {
  return {
    id: Bun.randomUUIDv7(), // as the proxy makes them (time-ordered)
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
async function writer(logDb: string, root: string): Promise<void> {
  const { PgAuditStore } = (await import(join(root, "src/store/postgres/store.ts"))) as typeof import("../src/store/postgres/store.ts");
  const batchRows = process.env.BENCH_BATCH_ROWS ? Number(process.env.BENCH_BATCH_ROWS) : undefined;
  const store = await PgAuditStore.open(context(logDb), { batchRows });
  // For profiling (`bun --cpu-prof`): a writer that exits by itself writes its profile.
  if (process.env.BENCH_WRITER_SECONDS) setTimeout(() => process.exit(0), Number(process.env.BENCH_WRITER_SECONDS) * 1000);
  const inflight = 2000;
  let i = 0;
  // As the proxy does: the intent before forwarding (refused past maxBacklog), the final record after.
  const lane = async () => {
    for (;;) {
      const r = record(i++);
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

interface Round {
  rps: number;
  clientUs: number;
  /** Server CPU per record (µs), when the server is the bench's own. */
  serverUs: number | null;
  load: string;
  ok: boolean;
}

const loadAverage = async () => (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
const seedRecords = Number(process.env.BENCH_SEED ?? 300_000);
const databaseUrl = (server: string, name: string) => server.replace(/\/[^/?]*(\?.*)?$/, `/${name}`);

/**
 * A database holding a trail of `seedRecords` records (chained, rolled up, vacuumed and analysed):
 * every round starts from a copy of it (CREATE DATABASE … TEMPLATE), so it measures a trail in its
 * steady state, not a fresh table whose every 10% of growth sets off an ANALYZE.
 */
async function seedDatabase(server: string): Promise<string> {
  const name = "bench_seed";
  const admin = new SQL(server, { max: 1 });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.close();
  const logDb = `${databaseUrl(server, name)}?schema=bench`;
  const store = await PgAuditStore.open(context(logDb));
  for (let done = 0; done < seedRecords; ) {
    const rows = Array.from({ length: Math.min(5000, seedRecords - done) }, (_, k) => toRow(record(done + k)));
    await transaction(store.sql, 60_000, (tx) => append(tx, null, rows));
    done += rows.length;
  }
  while ((await advanceRollup(store.sql)) > 0);
  await store.close();
  const seed = new SQL(databaseUrl(server, name), { max: 1 });
  await seed.unsafe("VACUUM ANALYZE");
  await seed.unsafe("CHECKPOINT");
  await seed.close();
  return name;
}

async function round(server: string, pg: BenchPostgres | null, seed: string | null, writers: number, root: string): Promise<Round> {
  const name = `aa_bench_${process.pid}_${writers}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new SQL(server, { max: 1 });
  // From the seeded trail (a private server), or a fresh schema on the given server.
  if (seed) await admin.unsafe(`CREATE DATABASE ${name} TEMPLATE ${seed}`);
  const schema = seed ? "bench" : name;
  const logDb = `${seed ? databaseUrl(server, name) : server}?schema=${schema}`;
  const sql = new SQL(seed ? databaseUrl(server, name) : server, { max: 1 });
  // max(seq), not count(*): an index probe, not a scan the server's CPU figure would include.
  const landed = async () =>
    Number(((await sql.unsafe(`SELECT coalesce(max(seq), 0) AS n FROM "${schema}".audit_records`)) as { n: string }[])[0]!.n);
  const children = Array.from({ length: writers }, () =>
    Bun.spawn(["bun", import.meta.path, "writer", logDb, root], { stdout: "inherit", stderr: "inherit" }),
  );
  try {
    for (let tries = 0; ; tries++) {
      try {
        await landed();
        break;
      } catch {
        if (tries > 100) throw new Error("the writers did not create the schema");
        await Bun.sleep(100);
      }
    }
    await Bun.sleep(2000); // warm-up
    const cpu0 = children.map((c) => cpuMs(c.pid) ?? 0);
    const server0 = pg?.cpuMs() ?? 0;
    const n0 = await landed();
    const t0 = performance.now();
    await Bun.sleep(seconds * 1000);
    const n1 = await landed();
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = children.reduce((sum, c, k) => sum + ((cpuMs(c.pid) ?? 0) - cpu0[k]!), 0);
    const serverCpu = pg ? pg.cpuMs() - server0 : null;
    const load = await loadAverage();
    for (const child of children) child.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exited));
    const trail = await openPgAdmin({ ...context(logDb), create: false });
    // The killed writers' leftovers are intents, not chain entries: the chain itself must verify.
    const report = await trail.trail.verify("bench");
    await trail.close();
    const count = Math.max(1, n1 - n0);
    return {
      rps: (n1 - n0) / elapsed,
      clientUs: (cpu * 1000) / count,
      serverUs: serverCpu === null ? null : (serverCpu * 1000) / count,
      load,
      ok: report.ok,
    };
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await sql.close();
    if (seed) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    else await admin.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await admin.close();
  }
}

if (process.argv[2] === "writer") {
  await writer(process.argv[3]!, process.argv[4]!);
} else {
  const pg = target === "private" ? startBenchPostgres() : null;
  const server = pg?.url ?? target;
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  try {
    const seed = pg && seedRecords > 0 ? await seedDatabase(server) : null;
    console.log(
      `PostgreSQL store (${pg ? "a private PostgreSQL 15, fsync and synchronous_commit on" : server}), ${seconds} s per round, on a trail of ${seed ? seedRecords.toLocaleString("en-US") : 0} records`,
    );
    console.log(
      "| store | writers | records/s into the chain | client CPU per record | server CPU per record | load average | chain verifies |",
    );
    console.log("|---|---|---|---|---|---|---|");
    // Rounds interleave the stores (A, B, A, B…), so both see the same machine.
    for (let k = 0; k < rounds; k++) {
      for (const writers of writerCounts) {
        for (const root of storeRoots) {
          const r = await round(server, pg, seed, writers, root);
          const us = (n: number | null) => (n === null ? "–" : `${n.toFixed(1)} µs`);
          console.log(
            `| ${root} | ${writers} | ${Math.round(r.rps).toLocaleString("en-US")} | ${us(r.clientUs)} | ${us(r.serverUs)} | ${r.load} | ${r.ok ? "yes" : "NO"} |`,
          );
        }
      }
    }
  } finally {
    pg?.remove();
  }
}
