/** A chained trail of varied records written straight through the chain writer (fast), for the dashboard's tests. */
import { join } from "node:path";
import { ChainWriter } from "../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../src/store/sqlite/database.ts";
import { toRow } from "../../src/trail/row.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { loadHashKey } from "../../src/trail/secret.ts";
import { sampleRecord } from "./records.ts";
import { tempDir } from "./proxy.ts";

const outcomes: [AuditRecord["outcome"], number][] = [
  ["completed", 200],
  ["completed", 200],
  ["completed", 200],
  ["completed", 200],
  ["rejected", 429],
  ["completed", 200],
  ["rejected", 402],
  ["upstream_error", 502],
  ["rejected", 401],
  ["rejected", 403],
];

/** The i-th seeded record: 5 agents, 10 users, 3 models, refusals and upstream errors, over the last 60 hours. */
export function seededRecord(i: number, now = Date.now()): AuditRecord {
  const [outcome, status] = outcomes[i % outcomes.length]!;
  const used = outcome === "completed";
  const priced = used && i % 13 !== 0;
  return sampleRecord(i, {
    id: `0193aaaa-0000-7000-8000-${String(i).padStart(12, "0")}`,
    timestamp: new Date(now - 60 * 3_600_000 + i * 600_000).toISOString(),
    agent_id: `agent-${i % 5}`,
    user_id: `user-${i % 10}`,
    task_context: `task ${i % 7}`,
    parent_agent_id: i % 4 === 0 ? "orchestrator" : null,
    key_id: i % 3 === 0 ? "key_seeded" : null,
    model: ["gpt-4o", "claude-sonnet-4-6", "o3"][i % 3]!,
    provider: i % 3 === 1 ? "anthropic" : "openai",
    outcome,
    status,
    input_tokens: used ? 100 + i : null,
    output_tokens: used ? 20 + (i % 9) : null,
    usage_source: used ? "provider" : "none",
    cost_nano_usd: priced ? 1_000_000 * (1 + (i % 17)) : null,
    cost_usd: priced ? (1_000_000 * (1 + (i % 17))) / 1e9 : null,
    delegation: i % 4 === 0 ? JSON.stringify({ act: { sub: "orchestrator", act: { sub: "planner" } } }) : null,
    tags: i % 5 === 4 ? null : JSON.stringify({ team: ["platform", "search", "research"][i % 3]! }),
  });
}

/** A database with `n` seeded records, hash-chained (verify passes). */
export function seededTrail(n: number): string {
  const logDb = join(tempDir(), "audit.db");
  const log = openAuditLog(logDb);
  const chain = new ChainWriter(log.db, loadHashKey(logDb));
  const now = Date.now();
  chain.append(Array.from({ length: n }, (_, i) => toRow(seededRecord(i + 1, now))));
  chain.finalize();
  log.close();
  return logDb;
}
