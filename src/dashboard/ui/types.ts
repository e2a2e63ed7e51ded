// The shapes the audit API answers with (see /openapi.json); only what the pages read.
export type Role = "admin" | "auditor";

export interface SummaryRow {
  key: string | null;
  calls: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  reasoning_tokens: number;
  cost_usd: number;
  cost_nano_usd: number;
  unpriced_calls: number;
}

export interface Summary {
  by: string;
  groups: SummaryRow[];
  group_count: number;
  total: SummaryRow;
}

export interface Overview {
  since: string | null;
  until: string | null;
  bucket: "hour" | "day";
  total: SummaryRow;
  series: SummaryRow[];
  top: { agent: SummaryRow[]; user: SummaryRow[]; task: SummaryRow[]; model: SummaryRow[] };
  statuses: SummaryRow[];
  inflight: number;
}

export interface AuditRecord {
  id: string;
  seq: number;
  timestamp: string;
  agent_id: string | null;
  user_id: string | null;
  task_context: string | null;
  parent_agent_id: string | null;
  key_id: string | null;
  provider: string | null;
  model: string | null;
  status: number | null;
  outcome: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cost_nano_usd: number | null;
  delegation: string | null;
  [field: string]: unknown;
}

export interface ChainEntry {
  seq: number;
  kind: "record" | "event";
  prev_hash: string | null;
  hash: string | null;
  commitment: string | null;
  redacted: boolean;
  checkpoint: { seq: number; time: string } | null;
}

export interface ChainEventEntry {
  seq: number;
  timestamp: string;
  kind: string;
  actor: string;
  details: Record<string, unknown>;
}

export interface TrailStatus {
  chain_id: string | null;
  last_seq: number;
  last_checkpoint: { seq: number; hash: string; time: string } | null;
  last_verification: ChainEventEntry | null;
}

export interface VerifyReport {
  ok: boolean;
  records: number;
  events: number;
  last_seq: number;
  /** The newest signed checkpoint the chain matches (0: none); `external_checkpoints` were kept outside the database. */
  signed_through: number;
  external_checkpoints: number;
  failure: { seq: number; reason: string; message: string } | null;
}

export interface LimitUsage {
  plugin: string;
  tier: string;
  scope: string;
  who: string;
  limit: string;
  unit: "requests" | "tokens" | "nano_usd";
  max: number;
  used: number;
  held: number;
  remaining: number;
  resets_at: string;
  last_seen: string;
}

export interface ProxyKey {
  id: string;
  agents: string[];
  users: string[] | null;
  tier: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
}
