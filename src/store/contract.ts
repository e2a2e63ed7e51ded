/**
 * The storage contract: what the proxy, the audit API and the CLI need from wherever the audit
 * trail is kept. Drivers implement it side by side — SQLite in ./sqlite/, PostgreSQL beside it —
 * and nothing above this file knows which one runs: the runtime takes the store a plugin provides
 * (`Plugin.auditStore`), else the one `--log-db` names (./open.ts: a path is SQLite). Every
 * operation is asynchronous and every value that crosses it is plain data (records, pages, reports,
 * byte chunks), never a connection, a statement or a driver's class, so a driver may do its work on
 * another thread or another machine.
 *
 * What is not the driver's is shared code above it, so every driver means the same by a record, a
 * hash or a manifest: the record's row order and the hash formulas (../trail/row.ts,
 * ../trail/chain.ts), checkpoint signing and publishing (../trail/checkpoint.ts), export
 * formatting and manifests (../trail/export.ts), verify reports (../trail/verify.ts), filters and
 * answers (./filters.ts, ./results.ts, ../trail/events.ts), proxy-key hashing (./keys.ts).
 *
 * One primary store per runtime. Secondary sinks (`Plugin.audit`) are not stores: they are fed the
 * records this store reports committed (`onCommitted`).
 */
import type { KeyObject } from "node:crypto";
import type { ParsedRecordFilter, ParsedSummaryFilter } from "./filters.ts";
import type { Consent, ConsentFilter, NewConsentRequest } from "./consents.ts";
import type { NewKeyRequest, ProxyKey } from "./keys.ts";
import type { RecordPage, Summary } from "./results.ts";
import type { Logger } from "../log.ts";
import type { ChainEvent } from "../trail/chain.ts";
import type { Checkpoint, CheckpointSettings } from "../trail/checkpoint.ts";
import type { ChainEntry, EventPage, ParsedEventFilter, TrailStatus } from "../trail/events.ts";
import type { ExportFormat, ExportManifest, ParsedExportFilter } from "../trail/export.ts";
import type { AuditRecord } from "../trail/record.ts";
import type { VerifyReport } from "../trail/verify.ts";

/**
 * `openAdmin` found no trail where the settings point (and was not asked to create one). Its
 * message says where it looked and how to point elsewhere.
 */
export class TrailNotFoundError extends Error {
  override name = "TrailNotFoundError";
}

/**
 * The trail's schema lacks a table (or trigger) its migrations made: someone dropped it. Reported
 * as tampering (`audit verify` exits 1), not as an unreadable database. The message names it.
 */
export class SchemaDamagedError extends Error {
  override name = "SchemaDamagedError";
}

/** A record as the chain holds it: its place (`seq`, from 1) and its chain hash. */
export type CommittedRecord = AuditRecord & { seq: number; hash: string };

/** The primary store: exactly one per runtime, opened by the runtime and closed by it. */
export interface AuditStore {
  /**
   * Makes a call's in-flight record durable before the call is forwarded: once this resolves, the
   * call can no longer go missing — if the process dies, `recover` (here or in a surviving replica)
   * records it as `interrupted`. Rejects when the record cannot be made durable, or when the store
   * refuses more work (`audit.maxBacklog` final records wait for their commit): the pipeline then
   * answers 503 and does not forward, unless `audit.failOpen`.
   */
  begin(record: AuditRecord): Promise<void>;
  /**
   * The final record of a call (also of calls refused before `begin`, which have no intent). When
   * this returns — or, when it returns a promise, once that resolves — the record is durable: the
   * pipeline releases the call's last byte to the client only then, so a call the client saw finish
   * keeps its usage and cost across a crash. Committing it to the chain comes after and may be
   * grouped with other calls'; each committed record is reported to `onCommitted`. A rejection is
   * logged by the pipeline (the client's answer is not changed); a store that keeps the record
   * queued for a later commit says so in its own log.
   */
  commit(record: AuditRecord): void | Promise<void>;
  /**
   * Calls `listener` with the records committed from now on, in seq order, as they are stored —
   * `seq` and `hash` set; a record whose user was erased while its call was in flight arrives
   * redacted. Records `recover` commits are reported too. A listener must not throw (the runtime's
   * own catches and logs). Returns a function that removes the listener.
   */
  onCommitted(listener: (records: readonly CommittedRecord[]) => void): () => void;
  /** Queries and summaries (the audit API, the dashboard). */
  readonly reader: AuditReader;
  /** The tamper-evident trail: verify, erase, export, audit-of-the-audit events. */
  readonly trail: AuditTrail;
  /** The proxy keys (keys mode looks each call's key up here; `agent-attr keys` and `/audit/keys` manage them). */
  readonly keys: ProxyKeyStore;
  /** The consents calls are checked against (`consent` in the config) and `agent-attr consent` / `/audit/consents` manage. */
  readonly consents: ConsentStore;
  /**
   * The instance secret that keys prompt and response hashes (HMAC-SHA256) and erased users' HMACs.
   * The store keeps it, so every process that writes one trail uses the same secret.
   */
  readonly hashKey: Uint8Array;
  /**
   * Commits what a process that died left behind: its final records as they are, its in-flight
   * records as `interrupted`. The runtime calls it once, after attaching its `onCommitted`
   * listener and before the first call.
   */
  recover(): Promise<Recovery>;
  /** Resolves once every record given to `commit` so far is committed, or failed to be and is queued again (logged). */
  flush(): Promise<void>;
  /**
   * Final records given to `commit` and not yet committed to the chain (`/metrics` shows it as
   * `agent_attr_audit_backlog_records`). Optional: a store without it shows no backlog.
   */
  readonly backlog?: number;
  /** Commits what is queued, then releases connections, threads and timers. A second call does nothing. */
  close(): Promise<void>;
}

/** What `recover` committed. */
export interface Recovery {
  /** In-flight records of calls that never ended, committed as `interrupted`. */
  interrupted: number;
  /** Final records that were durable but not yet committed, committed as they were. */
  finished: number;
}

export interface AuditReader {
  /** Records matching the filter, newest first, with keyset pagination over seq. */
  records(filter: ParsedRecordFilter): Promise<RecordPage>;
  /** Calls, tokens and cost grouped by agent, user, task, model, provider, key, day, hour or status. */
  summary(filter: ParsedSummaryFilter): Promise<Summary>;
  /**
   * Several summaries (answers in the filters' order) from one snapshot of the trail, each as
   * `summary` answers it; records they all read (a range's partial days) may be read once.
   * Optional: without it, callers (the dashboard's Overview) ask `summary` for each.
   */
  summaries?(filters: ParsedSummaryFilter[]): Promise<Summary[]>;
  /** One record by its id (the X-Audit-Record-ID a call's response carried), or null. */
  record(id: string): Promise<AuditRecord | null>;
}

/**
 * The trail's operations, for the audit API and the CLI. Every operation that reads or changes the
 * trail on someone's behalf is itself a chain event naming the actor (`api:admin`, `cli:<os user>`).
 */
export interface AuditTrail {
  /**
   * Recomputes the chain and checks the signed checkpoints, then records the verification as an
   * event. `recorded` says whether that event could be written (a read-only copy can be verified;
   * the caller decides what an unrecorded verification means).
   */
  verify(actor: string, options?: VerifyOptions): Promise<VerifyReport & { recorded: boolean }>;
  /**
   * Erases a user's personal data (every form of the id, ../identifiers.ts `erasureForms`), keeps
   * an HMAC of it so records of calls in flight now land redacted, and appends an erasure event —
   * in one transaction. Resolves once the erased values are gone from the storage too (no copy in
   * free pages, a log or an intent), or that is reported as a problem. Reveals nothing about
   * whether the user had records.
   */
  eraseUser(userId: string, actor: string): Promise<void>;
  /** A streamed export; its signed manifest is recorded as a chain event once the last byte is produced. */
  export(format: ExportFormat, filter: ParsedExportFilter, actor: string): AuditExport;
  /** The manifest of an export this trail produced (from its chain event), or null. */
  manifest(exportId: string): Promise<ExportManifest | null>;
  /** Appends an audit-of-the-audit event; rejects if it cannot be written (the caller decides what that means). */
  recordEvent(event: ChainEvent): Promise<void>;
  /** The checkpoint key's public half, SPKI PEM; throws when the trail has no signing key. */
  publicKey(): string;
  /** Chain events, newest first (keyset pagination over seq). */
  events(filter: ParsedEventFilter): Promise<EventPage>;
  /** The chain's tail, its last signed checkpoint and its last verification. */
  status(): Promise<TrailStatus>;
  /** One entry's hashes and the checkpoint that covers it; null when no entry has that seq. */
  entry(seq: number): Promise<ChainEntry | null>;
}

export interface VerifyOptions {
  /** Pins the key checkpoints must be signed with (default: the trail's own). */
  publicKey?: KeyObject;
  /** Checkpoints kept outside the database; default: those of the configured checkpoint file. */
  checkpoints?: readonly Checkpoint[];
}

/** One export in progress: `stream()` it once. */
export interface AuditExport {
  /** Named before the first byte (response headers carry it); the manifest's `export_id`. */
  readonly id: string;
  /** Records produced so far. */
  readonly exported: number;
  /**
   * The export as a pull-based byte stream: rows are read as the consumer pulls, so memory holds
   * about one chunk however slow the consumer is. When the stream closes, the manifest is in the
   * chain (`AuditTrail.manifest(id)`). A cancel (the client went away, a write failed, Ctrl-C)
   * ends the export without a manifest and records it as cancelled, with the records produced.
   */
  stream(): ReadableStream<Uint8Array>;
  /** How many records the export will hold, for a progress display; a driver may leave it out. */
  total?(): Promise<number>;
}

/**
 * The proxy API keys. `create` and `revoke` are admin actions, each recorded as a chain event
 * (`key_created`, `key_revoked`) in the same transaction as the change, where the keys live beside
 * a trail (a key store of its own, `apiKeys({ path })`, has no chain to record them in).
 */
export interface ProxyKeyStore {
  /**
   * The key whose secret this is — revoked and expired keys included, the caller decides — or null.
   * Null too, exactly as for an unknown secret, when the driver cannot vouch for the key's row (the
   * built-in drivers: its signature does not verify, or the chain revokes it; ./key-signature.ts).
   * Runs on every call in keys mode: a driver whose lookup is a round trip to a server may cache
   * answers for a short, bounded time, and must document how long a revocation can take to apply.
   */
  find(secret: string): Promise<ProxyKey | null>;
  /** Every key, newest first (never a secret). */
  list(): Promise<ProxyKey[]>;
  /** Creates a key; `key` is the only copy of the secret. Throws without the signing key where rows are signed. */
  create(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }>;
  /** Revokes a key (idempotent: a revoked key is returned as it is, and nothing is recorded); null when no key has that id. Throws without the signing key where rows are signed. */
  revoke(id: string, actor: string): Promise<ProxyKey | null>;
}

/**
 * Consents (./consents.ts). `grant` and `revoke` are admin actions, each recorded as a chain event
 * (`consent_granted`, `consent_withdrawn`) in the same transaction as the change; erasing a user
 * (`AuditTrail.eraseUser`) erases their consents' personal fields in the erasure's transaction.
 */
export interface ConsentStore {
  /**
   * The user's consents that are not withdrawn or erased (expired ones included: the caller holds
   * them to the time), newest first. Runs on every call when consent is checked, so a driver
   * answers it with one indexed read and must not cache it: a withdrawal applies from the next
   * call, in every process and replica that shares the store.
   */
  forUser(userId: string): Promise<Consent[]>;
  /** One consent by id, whatever its status, or null (also on the call path: a claimed consent id). */
  find(id: string): Promise<Consent | null>;
  /** Consents passing the filter, newest first. */
  list(filter: ConsentFilter): Promise<Consent[]>;
  grant(request: NewConsentRequest, actor: string): Promise<Consent>;
  /** Withdraws a consent (idempotent: an ended one is returned as it is, nothing recorded); null when no consent has that id. */
  revoke(id: string, actor: string): Promise<Consent | null>;
  /** Appends a `consent_expired` event for each consent past its end that has none yet; returns how many. */
  recordExpiries(): Promise<number>;
}

/**
 * The CLI's handle on a trail: reading, the trail's operations and the keys, without the proxy's
 * write path (no intent log, no writer thread, no `begin`/`commit`).
 */
export interface AuditAdmin {
  readonly reader: AuditReader;
  readonly trail: AuditTrail;
  readonly keys: ProxyKeyStore;
  readonly consents: ConsentStore;
  /**
   * The trail holds its signing key: checkpoints are checked with it, exports are signed, and the
   * events this handle appends are sealed by a signed checkpoint. Without it the CLI can still read
   * and verify the chain (pass a public key to check checkpoints).
   */
  readonly signs: boolean;
  /** An Ed25519 signature of `data` with the trail's signing key (a report's); throws when `signs` is false. */
  sign(data: Uint8Array): Uint8Array;
  close(): Promise<void>;
}

/** The config's `audit` settings a store needs. */
export interface TrailSettings {
  /** When to sign checkpoints, and where else to send them (`audit.checkpoint`). */
  checkpoint: CheckpointSettings;
  /** The Ed25519 signing key file (`audit.signingKey`; default: the driver's, e.g. `<log-db>.signing-key`). */
  signingKey?: string;
  /** Erase personal fields of records older than this many days (`audit.retentionDays`). */
  retentionDays?: number;
  /** Final records that may wait for their commit before calls are refused (`audit.maxBacklog`). */
  maxBacklog?: number;
}

export interface StoreContext {
  /** `--log-db` (else AGENT_ATTR_LOG_DB, `audit.logDb`, ./audit.db): a file path or a URL. */
  logDb: string;
  log: Logger;
  audit: TrailSettings;
}

export interface AdminContext extends StoreContext {
  /**
   * Create the trail if there is none (`keys create`). Otherwise a trail that does not exist is an
   * error saying where it was looked for: the CLI never creates a trail by reading one.
   */
  create: boolean;
}

/**
 * A driver, or a plugin's own store (`Plugin.auditStore`, e.g. `sqliteAudit({ path })`): how to
 * open the proxy's primary store and the CLI's admin handle on the same trail.
 */
export interface AuditStoreProvider {
  /**
   * What would keep `open` from working, found without opening or creating anything (for
   * `config check` and the start-up check); each problem one line saying what to do.
   */
  problems?(ctx: { logDb: string }): string[];
  open(ctx: StoreContext): Promise<AuditStore>;
  openAdmin(ctx: AdminContext): Promise<AuditAdmin>;
}
