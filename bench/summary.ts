/**
 * Summary speed on a large log: fills an audit database with N records (default 1,000,000) over
 * the last 30 days through the real schema, rolls them up as the proxy's writer thread would, then
 * times each summary grouping over those 30 days, median of 3, checking that every summary's
 * calls and exact cost equal those of the records. Tags: nine in ten records carry a team and a
 * project; `by tag:team` is timed beside the fixed groupings. Run alone with `bun bench/summary.ts [N]`;
 * `bun run bench` runs it at the end (BENCH_SUMMARY_RECORDS=0 skips it).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openAuditLog } from "../src/store/sqlite/database.ts";
import { columns, toRow } from "../src/trail/row.ts";
import type { AuditRecord } from "../src/trail/record.ts";
import { advanceRollup } from "../src/store/sqlite/rollup.ts";
import { summaryFilterSchema, summaryGroupings } from "../src/store/filters.ts";

const models = [
  ["openai", "gpt-4o"],
  ["openai", "gpt-4o-mini"],
  ["openai", "gpt-5"],
  ["openai", "o3"],
  ["anthropic", "claude-sonnet-4-6"],
  ["anthropic", "claude-haiku-4-5"],
  ["anthropic", "claude-opus-4-1"],
  ["ollama", "llama3.1:8b"],
] as const;

/** The i-th of n generated records, spread evenly over the 30 days before `now` (also used by bench/dashboard.ts). */
export function record(i: number, n: number, now: number): AuditRecord {
  const [provider, model] = models[i % models.length]!;
  const priced = provider !== "ollama" && i % 97 !== 0;
  return {
    id: crypto.randomUUID(),
    seq: 0,
    timestamp: new Date(now - 30 * 86_400_000 + Math.floor((i * 30 * 86_400_000) / n)).toISOString(),
    duration_ms: 800,
    ttfb_ms: 200,
    agent_id: `agent-${i % 200}`,
    user_id: `user-${(i * 7) % 5000}`,
    task_context: `PR review #${i % 100_000}`,
    session_id: `s-${i % 20_000}`,
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: null,
    provider,
    endpoint: "/v1/chat/completions",
    model,
    response_model: model,
    stream: i % 2 === 0,
    status: 200,
    outcome: "completed",
    input_tokens: 1000 + (i % 4000),
    output_tokens: 100 + (i % 900),
    cache_read_tokens: i % 3 ? 0 : 512,
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: null,
    usage_source: "provider",
    cost_usd: priced ? (1234 + (i % 10_000) * 97) / 1e9 : null,
    cost_nano_usd: priced ? 1234 + (i % 10_000) * 97 : null,
    price_source: priced ? "bench" : null,
    prompt_hash: "ab".repeat(32),
    response_hash: "cd".repeat(32),
    error_type: null,
    delegation: null,
    // Nine in ten calls carry a team (12 teams) and a project (40), as a tagging client sends them.
    tags: i % 10 === 9 ? null : JSON.stringify({ project: `p-${i % 40}`, team: `team-${i % 12}` }),
    personal_tags: null,
    consent_id: null,
    purpose: null,
    lawful_basis: null,
    consent_source: null,
  };
}

export async function benchSummaries(n: number, log: (line: string) => void = console.log): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "agent-attr-summary-"));
  try {
    const audit = openAuditLog(join(dir, "audit.db"));
    const insert = audit.db.prepare(`INSERT INTO audit_records (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`);
    const now = Date.now();
    const started = performance.now();
    for (let from = 0; from < n; from += 50_000) {
      audit.db.transaction(() => {
        for (let i = from; i < Math.min(n, from + 50_000); i++) insert.run(...toRow(record(i, n, now)));
      })();
    }
    log(`summary bench: ${n.toLocaleString("en-US")} records written in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    // What the proxy's writer thread does every few seconds, all at once.
    const rolling = performance.now();
    while (advanceRollup(audit.db) > 0);
    log(`summary bench: rolled up in ${((performance.now() - rolling) / 1000).toFixed(1)} s`);
    const since = new Date(now - 30 * 86_400_000).toISOString();
    const exact = audit.db
      .query<{ cost: number }, [string]>("SELECT sum(cost_nano_usd) AS cost FROM audit_records WHERE timestamp >= ?")
      .get(since)!.cost;
    const rows: string[] = ["| summary over 30 days | groups | median ms |", "|---|---|---|"];
    for (const by of [...summaryGroupings, "tag:team"]) {
      const times: number[] = [];
      let groups = 0;
      for (let run = 0; run < 3; run++) {
        const t0 = performance.now();
        const summary = await audit.reader.summary(summaryFilterSchema.parse({ by, since }));
        times.push(performance.now() - t0);
        groups = summary.groups.length;
        if (summary.total.calls !== n) throw new Error(`summary by ${by} counted ${summary.total.calls} calls, expected ${n}`);
        if (summary.total.cost_nano_usd !== exact)
          throw new Error(`summary by ${by} totals ${summary.total.cost_nano_usd} nano-USD, the records ${exact}`);
      }
      rows.push(`| by ${by} | ${groups.toLocaleString("en-US")} | ${times.sort((a, b) => a - b)[1]!.toFixed(1)} |`);
    }
    audit.close();
    return rows.join("\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) console.log(await benchSummaries(Number(process.argv[2] ?? 1_000_000)));
