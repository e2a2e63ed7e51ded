/** Audit records for tests, and a trail database filled through the real store. */
import { Database } from "bun:sqlite";
import { join } from "node:path";
import type { CheckpointSettings } from "../../src/trail/checkpoint.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import { tempDir } from "./proxy.ts";

export function sampleRecord(i: number, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: `rec-${i}`,
    seq: 0,
    timestamp: new Date().toISOString(),
    duration_ms: 12.5,
    ttfb_ms: 3,
    agent_id: "reviewer",
    user_id: `user-${i % 3}`,
    task_context: `task ${i}`,
    session_id: "s-1",
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: null,
    provider: "openai",
    endpoint: "/v1/chat/completions",
    model: "gpt-4o",
    response_model: "gpt-4o-2024",
    stream: i % 2 === 0,
    status: 200,
    outcome: "completed",
    input_tokens: 10 + i,
    output_tokens: 5,
    cache_read_tokens: 0,
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: null,
    usage_source: "provider",
    cost_usd: 0.25,
    cost_nano_usd: 250_000_000,
    price_source: "test",
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
    ...overrides,
  };
}

/** A database holding `n` records written by the store (closing it signs a final checkpoint). */
export async function trailWith(
  n: number,
  options: { checkpoint?: CheckpointSettings; record?: (i: number) => AuditRecord } = {},
): Promise<string> {
  const logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb, { checkpoint: options.checkpoint });
  for (let i = 1; i <= n; i++) store.commit((options.record ?? sampleRecord)(i));
  await store.close();
  return logDb;
}

/** Runs SQL against the database directly, as someone with file access would. */
export function tamper(logDb: string, ...statements: string[]): void {
  const db = new Database(logDb);
  db.run("PRAGMA busy_timeout = 2000");
  try {
    for (const sql of statements) db.run(sql);
  } finally {
    db.close();
  }
}
