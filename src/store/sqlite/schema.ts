/**
 * The SQLite tables of the audit store (drizzle). Migrations in ./migrations are generated from
 * this file with `bun run db:generate`; never edit them by hand.
 */
import { index, integer, real, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const auditRecords = sqliteTable(
  "audit_records",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    id: text("id").notNull().unique(),
    timestamp: text("timestamp").notNull(),
    duration_ms: real("duration_ms"),
    ttfb_ms: real("ttfb_ms"),
    agent_id: text("agent_id"),
    user_id: text("user_id"),
    task_context: text("task_context"),
    session_id: text("session_id"),
    parent_agent_id: text("parent_agent_id"),
    trace_id: text("trace_id"),
    attribution: text("attribution", { enum: ["verified", "asserted", "default"] }).notNull(),
    key_id: text("key_id"),
    provider: text("provider"),
    endpoint: text("endpoint").notNull(),
    model: text("model"),
    response_model: text("response_model"),
    stream: integer("stream", { mode: "boolean" }).notNull(),
    status: integer("status"),
    outcome: text("outcome", {
      enum: ["completed", "upstream_error", "client_aborted", "rejected", "interrupted"],
    }),
    input_tokens: integer("input_tokens"),
    output_tokens: integer("output_tokens"),
    cache_read_tokens: integer("cache_read_tokens"),
    cache_write_tokens: integer("cache_write_tokens"),
    cache_write_1h_tokens: integer("cache_write_1h_tokens"),
    reasoning_tokens: integer("reasoning_tokens"),
    usage_source: text("usage_source", { enum: ["provider", "estimated", "none"] }).notNull(),
    cost_usd: real("cost_usd"),
    cost_nano_usd: integer("cost_nano_usd"),
    price_source: text("price_source"),
    prompt_hash: text("prompt_hash"),
    response_hash: text("response_hash"),
    error_type: text("error_type"),
    /** JSON: the RFC 8693 `act` delegation chain and claims a verified identity did not allow. */
    delegation: text("delegation"),
    /** JSON object of the call's tags (keys sorted); null without any. */
    tags: text("tags"),
    /** The same for tags declared personal: behind the commitment, erased with the user. */
    personal_tags: text("personal_tags"),
    /** The consent that covered the call, its purpose and lawful basis, and how it was established (../../store/consents.ts). */
    consent_id: text("consent_id"),
    purpose: text("purpose"),
    lawful_basis: text("lawful_basis"),
    consent_source: text("consent_source"),
    // The hash chain (./chain.ts). `salt` is NULL once the record's personal fields are erased;
    // `commitment` keeps them provable without keeping them.
    salt: text("salt"),
    commitment: text("commitment"),
    prev_hash: text("prev_hash"),
    hash: text("hash"),
    /** The record hash version (../../trail/chain.ts `recordVersions`); rows from before it are v2. */
    hash_version: integer("hash_version").notNull().default(2),
  },
  // Only indexes whose inserts land at the end (seq, time, UUIDv7 ids; consents are few): lookups
  // by agent, user and task go through the key tables the writer folds in batches (./key-index.ts).
  (t) => [
    index("audit_records_consent").on(t.consent_id),
    // Time ranges (summaries read whole days from the usage rollup, ./rollup.ts, and only the
    // partial days at the edges from the records), and it covers summaries by task over a range
    // (task contexts are not rolled up). It leads with the time: a record's entry lands at its end.
    index("audit_records_time_task").on(
      t.timestamp,
      t.task_context,
      t.input_tokens,
      t.output_tokens,
      t.cache_read_tokens,
      t.cache_write_tokens,
      t.cache_write_1h_tokens,
      t.reasoning_tokens,
      t.cost_nano_usd,
      t.usage_source,
    ),
  ],
);

/**
 * Audit-of-the-audit events (queries, exports, erasures, verifications, retention runs). They share
 * the seq space and the hash chain with the records, in their own table so record queries never
 * see them.
 */
export const auditEvents = sqliteTable("audit_events", {
  seq: integer("seq").primaryKey(),
  timestamp: text("timestamp").notNull(),
  kind: text("kind").notNull(),
  actor: text("actor").notNull(),
  /** JSON object; never personal data. */
  details: text("details").notNull(),
  prev_hash: text("prev_hash").notNull(),
  hash: text("hash").notNull(),
});

/** The chain's identity: one row, created with the first append. */
export const auditChain = sqliteTable("audit_chain", {
  id: integer("id").primaryKey(),
  chain_id: text("chain_id").notNull(),
  created_at: text("created_at").notNull(),
});

/** Signed checkpoints (chain id, seq, hash, time), Ed25519 over ./signing.ts's payload. */
export const auditCheckpoints = sqliteTable("audit_checkpoints", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  chain_id: text("chain_id").notNull(),
  seq: integer("seq").notNull(),
  hash: text("hash").notNull(),
  time: text("time").notNull(),
  signature: text("signature").notNull(),
});

/**
 * Erased users, as HMACs of their ids (instance hash key), with the erasure time: records of
 * calls that were in flight or in an intent log at that time are redacted as they land.
 */
export const auditErasures = sqliteTable("audit_erasures", {
  user_hmac: text("user_hmac").primaryKey(),
  erased_at: text("erased_at").notNull(),
});

/** Proxy API keys (`agent-attr keys create`): only a SHA-256 hash of each key is stored. */
export const proxyKeys = sqliteTable("proxy_keys", {
  id: text("id").primaryKey(),
  hash: text("hash").notNull().unique(),
  /** JSON array of agent-ID globs the key may act as; a single literal fixes the agent. */
  agents: text("agents").notNull(),
  /** JSON array of user-ID globs the key may act for; null = any user. */
  users: text("users"),
  tier: text("tier"),
  /** JSON object of the tags the key fixes (`--tag team=platform`); null for none. */
  tags: text("tags"),
  created_at: text("created_at").notNull(),
  expires_at: text("expires_at"),
  revoked_at: text("revoked_at"),
  /** Ed25519 signature of the row (../key-signature.ts); null: never signed (refused). */
  signature: text("signature"),
});

/**
 * Consents (`agent-attr consent grant`, ../consents.ts). `user_id` and `task_pattern` are personal
 * (null once erased); `expiry_recorded_at` is when the `consent_expired` event was appended.
 */
export const consents = sqliteTable(
  "consents",
  {
    id: text("id").primaryKey(),
    user_id: text("user_id"),
    /** JSON array of agent-ID globs. */
    agents: text("agents").notNull(),
    purpose: text("purpose").notNull(),
    task_pattern: text("task_pattern"),
    lawful_basis: text("lawful_basis").notNull(),
    granted_at: text("granted_at").notNull(),
    granted_by: text("granted_by").notNull(),
    expires_at: text("expires_at"),
    revoked_at: text("revoked_at"),
    revoked_by: text("revoked_by"),
    expiry_recorded_at: text("expiry_recorded_at"),
    erased_at: text("erased_at"),
  },
  (table) => [index("consents_user").on(table.user_id, table.granted_at)],
);
