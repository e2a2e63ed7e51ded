/**
 * Measures the tamper-evident trail at scale (not part of `bun run bench`):
 *   bun bench/trail.ts [records=1000000]
 * builds a database of N chained records (plus a signed checkpoint), then runs the real CLI:
 * `audit verify` and `audit export` (CSV and NDJSON), reporting wall time and peak RSS of each
 * (measured with GNU time, /usr/bin/time).
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ChainWriter } from "../src/store/sqlite/chain-writer.ts";
import { defaultCheckpointSettings } from "../src/trail/checkpoint.ts";
import { Checkpointer } from "../src/store/sqlite/checkpointer.ts";
import { openAuditLog } from "../src/store/sqlite/database.ts";
import { toRow } from "../src/trail/row.ts";
import type { AuditRecord } from "../src/trail/record.ts";
import { loadHashKey } from "../src/trail/secret.ts";
import { loadSigningKey, publicKeyPem, signingKeyPath } from "../src/trail/signing.ts";

const total = Number(process.argv[2] ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), "agent-attr-trail-bench-"));
const logDb = join(dir, "audit.db");
const cli = resolve(import.meta.dir, "../src/cli/main.ts");

function record(i: number): AuditRecord {
  return {
    id: `01930000-0000-7000-8000-${String(i).padStart(12, "0")}`,
    seq: 0,
    timestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    duration_ms: 812.4,
    ttfb_ms: 95.1,
    agent_id: `agent-${i % 50}`,
    user_id: `user-${i % 1000}`,
    task_context: `PR review #${i % 5000}`,
    session_id: `session-${i % 20000}`,
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
    input_tokens: 1200 + (i % 300),
    output_tokens: 340,
    cache_read_tokens: 0,
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: null,
    usage_source: "provider",
    cost_usd: 0.0123,
    cost_nano_usd: 12_300_000,
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

const log = openAuditLog(logDb);
const chain = new ChainWriter(log.db, loadHashKey(logDb));
const started = performance.now();
for (let from = 0; from < total; from += 10_000) {
  const rows = [];
  for (let i = from; i < Math.min(total, from + 10_000); i++) rows.push(toRow(record(i)));
  chain.append(rows);
}
const key = loadSigningKey(signingKeyPath(logDb), { create: true })!;
new Checkpointer(chain, key, defaultCheckpointSettings, console.error).checkpoint();
chain.finalize();
log.close();
console.log(
  `built ${total} chained records in ${((performance.now() - started) / 1000).toFixed(1)} s (${(statSync(logDb).size / 1e6).toFixed(0)} MB)`,
);

/** Runs the CLI under GNU time (wall seconds, peak RSS of that process alone). */
async function measure(label: string, args: string[]) {
  const child = Bun.spawn(["/usr/bin/time", "-f", "__measured %e %M", "bun", cli, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const [out, err] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  const [, seconds, kb] = /__measured (\S+) (\d+)/.exec(err) ?? [];
  console.log(`${label}: exit ${child.exitCode}, ${seconds} s, peak RSS ${(Number(kb) / 1024).toFixed(0)} MB`);
  if (child.exitCode !== 0) console.log(out, err);
}

await measure("audit verify", ["audit", "verify", "--log-db", logDb]);
await measure("audit export --format csv", ["audit", "export", "--format", "csv", "--output", join(dir, "all.csv"), "--log-db", logDb]);
await measure("audit export --format ndjson", [
  "audit",
  "export",
  "--format",
  "ndjson",
  "--output",
  join(dir, "all.ndjson"),
  "--log-db",
  logDb,
]);
// The recipient checks the export against the instance's public key, as a real one would.
await Bun.write(join(dir, "pubkey.pem"), publicKeyPem(key));
await measure("audit verify-export (csv)", ["audit", "verify-export", join(dir, "all.csv"), "--public-key", join(dir, "pubkey.pem")]);
rmSync(dir, { recursive: true, force: true });
