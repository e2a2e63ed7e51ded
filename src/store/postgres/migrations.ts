/**
 * The PostgreSQL tables of the audit store, as ordered SQL migrations the driver applies on open
 * (./connection.ts), each once, under an advisory lock so replicas starting together do not race.
 * Hand-written rather than drizzle-kit output: the driver talks to PostgreSQL through Bun.sql
 * directly (COPY on the append path, which drizzle cannot express, and drizzle's jsonb is
 * double-encoded with Bun.sql), so a drizzle schema would describe tables no code reads through it.
 * Never edit a migration that shipped; add the next one.
 *
 * Types follow what the chain hashes (../../trail/row.ts): `timestamp` is ISO text (a timestamptz
 * round trip would change the hashed string), `stream` is 0/1 as smallint, money and seq are bigint.
 */
import { rollupMigrationSQL } from "./rollup.ts";

const keySignatureSQL = `
  ALTER TABLE proxy_keys ADD COLUMN signature text;
  `;

export const migrations: readonly string[] = [
  `
  CREATE TABLE audit_meta (
    id smallint PRIMARY KEY CHECK (id = 1),
    chain_id text NOT NULL,
    hash_key text NOT NULL,
    created_at text NOT NULL
  );
  CREATE TABLE audit_records (
    seq bigint PRIMARY KEY,
    id text NOT NULL UNIQUE,
    timestamp text NOT NULL,
    duration_ms double precision,
    ttfb_ms double precision,
    agent_id text,
    user_id text,
    task_context text,
    session_id text,
    parent_agent_id text,
    trace_id text,
    attribution text NOT NULL,
    key_id text,
    provider text,
    endpoint text NOT NULL,
    model text,
    response_model text,
    stream smallint NOT NULL,
    status integer,
    outcome text,
    input_tokens integer,
    output_tokens integer,
    cache_read_tokens integer,
    cache_write_tokens integer,
    cache_write_1h_tokens integer,
    reasoning_tokens integer,
    usage_source text NOT NULL,
    cost_usd double precision,
    cost_nano_usd bigint,
    price_source text,
    prompt_hash text,
    response_hash text,
    error_type text,
    delegation text,
    salt text,
    commitment text,
    prev_hash text,
    hash text
  );
  CREATE INDEX audit_records_agent ON audit_records (agent_id, seq);
  CREATE INDEX audit_records_user ON audit_records (user_id, seq);
  CREATE INDEX audit_records_task ON audit_records (task_context, seq);
  CREATE INDEX audit_records_time ON audit_records (timestamp);
  CREATE TABLE audit_events (
    seq bigint PRIMARY KEY,
    timestamp text NOT NULL,
    kind text NOT NULL,
    actor text NOT NULL,
    details text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL
  );
  CREATE TABLE audit_checkpoints (
    id bigserial PRIMARY KEY,
    chain_id text NOT NULL,
    seq bigint NOT NULL,
    hash text NOT NULL,
    time text NOT NULL,
    signature text NOT NULL
  );
  CREATE TABLE audit_erasures (
    user_hmac text PRIMARY KEY,
    erased_at text NOT NULL
  );
  CREATE TABLE proxy_keys (
    id text PRIMARY KEY,
    hash text NOT NULL UNIQUE,
    agents text NOT NULL,
    users text,
    tier text,
    created_at text NOT NULL,
    expires_at text,
    revoked_at text
  );
  -- Calls in flight (final = false) and final records not yet in the chain (final = true), per
  -- replica: what a survivor commits when the replica's lease runs out.
  CREATE TABLE audit_intents (
    id text PRIMARY KEY,
    replica_id text NOT NULL,
    final boolean NOT NULL,
    row text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE INDEX audit_intents_replica ON audit_intents (replica_id);
  CREATE TABLE audit_replicas (
    replica_id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
  );
  -- The public half of the key that signs this trail's checkpoints (../trail.ts: every replica must hold it).
  CREATE TABLE audit_signer (
    id smallint PRIMARY KEY CHECK (id = 1),
    public_key text NOT NULL
  );
  `,
  // Tags (record hash v3, ../../trail/chain.ts): rows before this one keep hash_version 2. A
  // proxy key's fixed tags. Filters by tag use the GIN indexes (containment, `@>`).
  `
  ALTER TABLE audit_records ADD COLUMN tags text;
  ALTER TABLE audit_records ADD COLUMN personal_tags text;
  ALTER TABLE audit_records ADD COLUMN hash_version smallint NOT NULL DEFAULT 2;
  CREATE INDEX audit_records_tags ON audit_records USING gin ((tags::jsonb) jsonb_path_ops);
  CREATE INDEX audit_records_personal_tags ON audit_records USING gin ((personal_tags::jsonb) jsonb_path_ops);
  ALTER TABLE proxy_keys ADD COLUMN tags text;
  `,
  // Consents (../consents.ts): user_id and task_pattern are personal (null once erased).
  `
  CREATE TABLE consents (
    id text PRIMARY KEY,
    user_id text,
    agents text NOT NULL,
    purpose text NOT NULL,
    task_pattern text,
    lawful_basis text NOT NULL,
    granted_at text NOT NULL,
    granted_by text NOT NULL,
    expires_at text,
    revoked_at text,
    revoked_by text,
    expiry_recorded_at text,
    erased_at text
  );
  CREATE INDEX consents_user ON consents (user_id, granted_at);
  `,
  // The consent that covered each call (record hash v3, ../../trail/chain.ts).
  `
  ALTER TABLE audit_records ADD COLUMN consent_id text;
  ALTER TABLE audit_records ADD COLUMN purpose text;
  ALTER TABLE audit_records ADD COLUMN lawful_basis text;
  ALTER TABLE audit_records ADD COLUMN consent_source text;
  CREATE INDEX audit_records_consent ON audit_records (consent_id, seq);
  `,
  // The usage rollup (./rollup.ts).
  rollupMigrationSQL,
  // Intents as one row per group commit (./intents.ts): a JSON array of the group's rows, deleted
  // when the last of its calls has its record. audit_intents stays for what older versions wrote.
  // lz4 (PostgreSQL 14+, when built with it) compresses a group's TOASTed text at a fraction of
  // pglz's CPU; without it the default compression applies.
  `
  CREATE TABLE audit_intent_groups (
    replica_id text NOT NULL,
    n bigint NOT NULL,
    intents text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replica_id, n)
  );
  DO $$ BEGIN
    ALTER TABLE audit_intent_groups ALTER COLUMN intents SET COMPRESSION lz4;
  EXCEPTION WHEN OTHERS THEN NULL;
  END $$;
  `,
  // Signed proxy keys (../key-signature.ts): rows already there are adopted by an open with the
  // key, not by whoever applies this.
  keySignatureSQL,
];
