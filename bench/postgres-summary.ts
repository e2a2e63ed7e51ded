/**
 * `bun bench/postgres-summary.ts`: summaries on PostgreSQL at 1,000,000 records over 30 days (50
 * agents, 5,000 users, 100,000 tasks, 8 models), generated server-side into a fresh schema (the rows
 * are not chained: only the reads are timed), then rolled up as a running proxy's heartbeats would
 * (the fold's time is reported too), with the last 1,000 records left past the cursor. Median of 3
 * per grouping; the schema is dropped at the end.
 */
import { SQL } from "bun";
import { PgReader } from "../src/store/postgres/reader.ts";
import { migrate, parseTarget } from "../src/store/postgres/connection.ts";
import { summaryFilterSchema } from "../src/store/filters.ts";
import { advanceRollup } from "../src/store/postgres/rollup.ts";

const server = process.env.AGENT_ATTR_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/test";
const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const schema = `aa_bench_summary_${process.pid}`;
const sql = new SQL(server, { max: 2, connection: { search_path: schema } });
try {
  await migrate(sql, parseTarget(`${server}?schema=${schema}`).schema);
  const t0 = performance.now();
  await sql.unsafe(`INSERT INTO audit_records (seq, id, timestamp, agent_id, user_id, task_context, attribution, provider, endpoint, model, stream,
      status, outcome, input_tokens, output_tokens, usage_source, cost_usd, cost_nano_usd)
    SELECT g, 'r' || g, to_char(timestamp '2026-11-01' + (g * interval '2.592 second'), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
      'agent-' || (g % 50), 'user-' || (g % 5000), 'task ' || (g % 100000), 'asserted', 'openai', '/v1/chat/completions',
      'model-' || (g % 8), 0, 200, 'completed', 1000 + g % 500, 200 + g % 100, 'provider', 0.001, 1000000
    FROM generate_series(1, ${rows}) g`);
  await sql.unsafe("ANALYZE audit_records");
  console.log(
    `generated ${rows.toLocaleString("en-US")} records in ${((performance.now() - t0) / 1000).toFixed(1)} s (load ${(await Bun.file("/proc/loadavg").text()).split(" ")[0]})`,
  );
  const t1 = performance.now();
  for (let cursor = 0; cursor < rows - 1000; ) cursor += await advanceRollup(sql, Math.min(200_000, rows - 1000 - cursor));
  console.log(`rolled up in ${((performance.now() - t1) / 1000).toFixed(1)} s (200,000 records per fold)`);
  const reader = new PgReader(sql);
  console.log("| summary | groups | ms (median of 3) |\n|---|---|---|");
  for (const [label, filter] of [
    ["by agent, all time", { by: "agent" }],
    ["by user, all time", { by: "user" }],
    ["by task, all time", { by: "task" }],
    ["by day, all time", { by: "day" }],
    ["by model, last 7 days", { by: "model", since: "2026-11-24T00:00:00Z" }],
    ["one agent by model", { by: "model", agent: "agent-7" }],
    ["by status, all time", { by: "status" }],
    ["by hour, last 2 days", { by: "hour", since: "2026-11-29T00:00:00Z" }],
  ] as const) {
    const times: number[] = [];
    let groups = 0;
    for (let k = 0; k < 3; k++) {
      const start = performance.now();
      groups = (await reader.summary(summaryFilterSchema.parse(filter))).group_count;
      times.push(performance.now() - start);
    }
    console.log(`| ${label} | ${groups.toLocaleString("en-US")} | ${Math.round(times.sort((a, b) => a - b)[1]!)} |`);
  }
} finally {
  await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await sql.close();
}
