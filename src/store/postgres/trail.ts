/**
 * The trail's operations on PostgreSQL (verify, erase, export, events, status, entry, retention),
 * each appending its chain event through ./chain.ts in the same transaction as its change.
 *
 * The signing key stays a file (`audit.signingKey`, default ./agent-attr.signing-key), not a row:
 * whoever can read or restore the database must not be able to sign checkpoints for it. Every
 * replica therefore needs the same key file (a mounted secret). The trail remembers the public
 * half of the first key that signed it (`audit_signer`) and a replica with another key refuses
 * to start, so a replica with a freshly generated key cannot split the checkpoints between keys.
 */
import type { SQL } from "bun";
import { createPublicKey, type KeyObject } from "node:crypto";
import { existsSync } from "node:fs";
import type { AuditTrail, TrailSettings, VerifyOptions } from "../contract.ts";
import { erasureForms } from "../../identifiers.ts";
import type { Logger } from "../../log.ts";
import { personalColumns, storedRecordColumns, userHmac, type ChainEvent } from "../../trail/chain.ts";
import { lastSignedSeq, publishCheckpoint, signCheckpoint, type Checkpoint } from "../../trail/checkpoint.ts";
import { erasureNeedsKey, redactionEvent, unsignedRedaction, type RedactionSigner } from "../../trail/redaction.ts";
import { RedactionGuard } from "../../trail/erase-check.ts";
import type { ChainEntry, ChainEventEntry, EventPage, ParsedEventFilter, TrailStatus } from "../../trail/events.ts";
import {
  exportChunkRows,
  exportEventDetails,
  ExportRun,
  type ExportedRow,
  type ExportFormat,
  type ExportManifest,
  type ExportSource,
  type ParsedExportFilter,
} from "../../trail/export.ts";
import { groupRows } from "./intents.ts";
import { adoptionEventKinds, keyRowsMismatch } from "../key-signature.ts";
import { PgKeys } from "./keys.ts";
import { loadSigningKey, publicKeyPem } from "../../trail/signing.ts";
import {
  ChainWalk,
  finishVerification,
  rejectedRedaction,
  readCheckpointFile,
  recordVerification,
  redactionCover,
  startVerification,
  type ChainEventRow,
  type ChainRecordRow,
  type VerifyFailure,
  type VerifyReport,
} from "../../trail/verify.ts";

type WalkEntry = { record: ChainRecordRow } | { event: ChainEventRow };
import { append, lockChain, tail } from "./chain.ts";
import type { TrailMeta } from "./connection.ts";
import { eraseConsents } from "./consents.ts";
import { storedRow, toRecord } from "./rows.ts";
import { rollupDifference } from "./rollup.ts";
import { transaction } from "./writer.ts";

export const defaultSigningKey = "agent-attr.signing-key";

/** The signing key (created if `create` and missing), checked against the key the trail was signed with. */
export async function signingKeyFor(sql: SQL, configured: string | undefined, options: { create: boolean }): Promise<KeyObject | null> {
  const path = configured ?? process.env.AGENT_ATTR_SIGNING_KEY ?? defaultSigningKey;
  const key = options.create || existsSync(path) ? loadSigningKey(path, options) : null;
  if (!key) return null;
  const pem = publicKeyPem(key);
  await sql`INSERT INTO audit_signer (id, public_key) VALUES (1, ${pem}) ON CONFLICT (id) DO NOTHING`;
  const [row] = (await sql`SELECT public_key FROM audit_signer WHERE id = 1`) as { public_key: string }[];
  if (row!.public_key.trim() !== pem.trim()) {
    throw new Error(
      `the signing key ${path} is not the key this trail is signed with; give every replica the same key file (audit.signingKey)`,
    );
  }
  return key;
}

const redact = `${personalColumns.map((column) => `${column} = NULL`).join(", ")}, salt = NULL`;
const walkChunk = 2000;

export class PgTrail implements AuditTrail {
  /** The last refusal to checkpoint reported, so one repeated every interval is logged once. */
  private refused: string | null = null;

  constructor(
    private readonly sql: SQL,
    private readonly meta: TrailMeta,
    readonly signingKey: KeyObject | null,
    private readonly settings: TrailSettings,
    private readonly log: Logger,
    /**
     * Seal each event with a signed checkpoint in its transaction (the CLI's handle: no appender
     * signs after it, so a dropped tail of CLI events would otherwise go unseen).
     */
    private readonly sealEvents = false,
  ) {}

  /** Appends events and, when this handle seals (and `seal` is not false), a checkpoint of the new tail. */
  async appendSealed(tx: SQL, events: ChainEvent[], seal = true): Promise<void> {
    const { tail } = await append(tx, this.meta.hashKey, [], events);
    if (seal && this.sealEvents) await this.checkpoint(tx, tail);
  }

  /** What signs this trail's erasure and retention events (../../trail/redaction.ts); null without the key. */
  redactionSigner(): RedactionSigner | null {
    return this.signingKey ? { key: this.signingKey, chainId: this.meta.chainId } : null;
  }

  /**
   * Signs and stores a checkpoint of `tail` (and publishes it where the settings say); false when
   * it signed none: no key, an empty chain, or an erasure or retention event since the last signed
   * checkpoint without a valid signature (logged: a checkpoint over it would bless a forged
   * redaction under verify's legacy rule).
   */
  async checkpoint(tx: SQL, tail: { seq: number; hash: string }): Promise<boolean> {
    if (!this.signingKey || tail.seq === 0) return false;
    if (await this.forbidden(tx)) return false;
    const checkpoint = signCheckpoint(this.signingKey, {
      chain_id: this.meta.chainId,
      seq: tail.seq,
      hash: tail.hash,
      time: new Date().toISOString(),
    });
    await tx`INSERT INTO audit_checkpoints (chain_id, seq, hash, time, signature) VALUES (${checkpoint.chain_id}, ${checkpoint.seq}, ${checkpoint.hash}, ${checkpoint.time}, ${checkpoint.signature})`;
    if (this.settings.checkpoint) publishCheckpoint(checkpoint, this.settings.checkpoint, (message) => this.log.warn(`audit: ${message}`));
    return true;
  }

  /** An unsigned redaction event since the last signed checkpoint forbids the next one (reads only what follows it, by seq). */
  private async forbidden(tx: SQL): Promise<boolean> {
    const key = createPublicKey(this.signingKey!);
    // Newest first by primary key; a row replayed or forged later only moves the bound back (to 0
    // when the newest 100 are all bad), which reads more events, never fewer.
    const newest =
      (await tx`SELECT chain_id, seq, hash, time, signature FROM audit_checkpoints ORDER BY id DESC LIMIT 100`) as Checkpoint[];
    const after = lastSignedSeq(key, this.meta.chainId, newest);
    const events = (
      (await tx`SELECT seq, kind, details FROM audit_events WHERE seq > ${after} AND kind IN ('erasure', 'retention') ORDER BY seq`) as EventRow[]
    ).map((r) => ({ ...r, seq: Number(r.seq) }));
    const problem = unsignedRedaction(key, this.meta.chainId, events);
    if (problem !== null && problem !== this.refused) this.log.error(`audit: ${problem}`);
    this.refused = problem;
    return problem !== null;
  }

  /**
   * Signs a checkpoint of the tail when entries were appended after the trail's last checkpoint
   * (whichever replica signed it), under the chain lock: the "every T seconds" of
   * `audit.checkpoint`, so an idle trail's last entries do not wait for the next record to be sealed.
   * Returns the tail it signed, or null.
   */
  async checkpointIfBehind(): Promise<{ seq: number; hash: string } | null> {
    if (!this.signingKey) return null;
    return transaction(this.sql, 10_000, async (tx) => {
      await lockChain(tx);
      const last = await tail(tx);
      const [signed] = (await tx`SELECT coalesce(max(seq), 0) AS seq FROM audit_checkpoints`) as { seq: string }[];
      if (last.seq <= Number(signed!.seq)) return null;
      return (await this.checkpoint(tx, last)) ? last : null;
    });
  }

  publicKey(): string {
    if (!this.signingKey) throw new Error("this trail has no signing key (audit.signingKey)");
    return publicKeyPem(this.signingKey);
  }

  async recordEvent(event: ChainEvent): Promise<void> {
    await transaction(this.sql, 10_000, (tx) => this.appendSealed(tx, [event]));
  }

  async verify(actor: string, options: VerifyOptions = {}): Promise<VerifyReport & { recorded: boolean }> {
    const publicKey = options.publicKey ?? (this.signingKey ? createPublicKey(this.signingKey) : null);
    const external = options.checkpoints ?? readCheckpointFile(this.settings.checkpoint?.file);
    // One snapshot: the walk reads the chain and its checkpoints as of one moment, while replicas append.
    const report = await this.sql.begin("isolation level repeatable read read only", async (tx) => {
      const stored = ((await tx`SELECT chain_id, seq, hash, time, signature FROM audit_checkpoints ORDER BY seq`) as Checkpoint[]).map(
        (c) => ({ ...c, seq: Number(c.seq) }),
      );
      const started = startVerification(this.meta.chainId, stored, external, publicKey);
      const cover = redactionCover(await redactionEvents(tx), { chainId: this.meta.chainId, publicKey, checkpoints: started.checkpoints });
      const walk = new ChainWalk(started.report, started.checkpoints, cover);
      let failure = await walkChain(tx, walk);
      // The rollup summaries read, checked against the records it claims (only on an intact chain).
      if (failure === null && started.failure === null) failure = await rollupDifference(tx, started.report.last_seq);
      // The proxy keys against their signatures and the chain's key events (../key-signature.ts).
      const keyEvents = (
        (await tx.unsafe(`SELECT seq, kind, details FROM audit_events WHERE kind IN (${adoptionEventKinds}) ORDER BY seq`)) as EventRow[]
      ).map((r) => ({ ...r, seq: Number(r.seq) }));
      const keys = keyRowsMismatch(await PgKeys.rows(tx), keyEvents, { chainId: this.meta.chainId, publicKey }, started.report.last_seq);
      return finishVerification(started.report, [started.failure, failure, rejectedRedaction(cover), keys]);
    });
    // A failed verification is recorded, but no checkpoint is signed over a chain found tampered.
    return recordVerification(report, actor, (event) => transaction(this.sql, 10_000, (tx) => this.appendSealed(tx, [event], report.ok)));
  }

  async eraseUser(userId: string, actor: string): Promise<void> {
    const signer = this.redactionSigner();
    if (!signer) throw new Error(erasureNeedsKey);
    const forms = erasureForms(userId);
    const formSet = new Set(forms);
    await transaction(this.sql, 30_000, async (tx) => {
      // The chain lock first, as SQLite's write lock: an append that commits while this reads its
      // candidates would otherwise slip between them — not among the candidates, and not redacted on
      // landing either (it checked the erasures before this one committed).
      await lockChain(tx);
      // Candidates by index (user, key) or by text (delegation JSON, Claude Code's whole metadata
      // user ids of older versions); the exact rule is applied here, as SQLite's erase.ts does.
      const likes = forms.map((f) => `%${f.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      const candidates = (await tx`SELECT seq, user_id, key_id, delegation FROM audit_records WHERE salt IS NOT NULL AND (
          user_id = ANY(${forms}::text[]) OR key_id = ANY(${forms}::text[])
          OR delegation LIKE ANY(${likes}::text[]) OR user_id LIKE ANY(${likes}::text[]))`) as {
        seq: string;
        user_id: string | null;
        key_id: string | null;
        delegation: string | null;
      }[];
      const named = candidates
        .filter((row) => namesUser(row, formSet))
        .map((row) => Number(row.seq))
        .sort((a, b) => a - b);
      // Checked before anything is written: a record edited to name this user is refused, not laundered.
      const seqs = await checkedSeqs(tx, "erasure", named);
      for (let i = 0; i < seqs.length; i += redactChunk) {
        await tx.unsafe(`UPDATE audit_records SET ${redact} WHERE seq = ANY($1::bigint[])`, [seqs.slice(i, i + redactChunk)]);
      }
      const now = new Date().toISOString();
      const hmacs = forms.map((id) => userHmac(this.meta.hashKey, id));
      await tx.unsafe(
        `INSERT INTO audit_erasures (user_hmac, erased_at) SELECT h, $2 FROM unnest($1::text[]) AS h
         ON CONFLICT (user_hmac) DO UPDATE SET erased_at = EXCLUDED.erased_at`,
        [hmacs, now],
      );
      await eraseConsents(tx, forms, now);
      await dropLandedIntents(tx);
      await this.appendSealed(tx, [redactionEvent(signer, "erasure", actor, { records: seqs.length }, seqs)]);
    });
  }

  /** Erases personal fields of records that started more than `days` ago; returns how many. */
  async applyRetention(days: number, now = Date.now()): Promise<number> {
    const cutoff = new Date(now - days * 86_400_000).toISOString();
    return transaction(this.sql, 60_000, async (tx) => {
      await lockChain(tx); // as erasure: no record lands between this read and the event naming its seqs
      const aged = (
        (await tx`SELECT seq FROM audit_records WHERE salt IS NOT NULL AND timestamp < ${cutoff} ORDER BY seq`) as { seq: string }[]
      ).map((r) => Number(r.seq));
      // As erasure: a tampered record in the range refuses the whole run (the store logs it; it retries hourly).
      const seqs = await checkedSeqs(tx, "retention", aged);
      for (let i = 0; i < seqs.length; i += redactChunk) {
        await tx.unsafe(`UPDATE audit_records SET ${redact} WHERE seq = ANY($1::bigint[])`, [seqs.slice(i, i + redactChunk)]);
      }
      if (seqs.length > 0) {
        const details = { records: seqs.length, older_than: cutoff, days };
        await this.appendSealed(tx, [redactionEvent(this.redactionSigner(), "retention", "retention", details, seqs)]);
      }
      return seqs.length;
    });
  }

  export(format: ExportFormat, filter: ParsedExportFilter, actor: string): ExportRun {
    if (!this.signingKey) throw new Error("exports are signed, and this trail has no signing key");
    const external = () => readCheckpointFile(this.settings.checkpoint?.file);
    const source = exportSource(this.sql, this.meta.chainId, filter, external);
    const run: ExportRun = new ExportRun(format, filter, this.signingKey, source, (manifest, refused) =>
      this.recordEvent({ kind: "export", actor, details: exportEventDetails(run, manifest, refused) }),
    );
    return run;
  }

  async manifest(exportId: string): Promise<ExportManifest | null> {
    const [row] = (await this
      .sql`SELECT details FROM audit_events WHERE kind = 'export' AND details::jsonb #>> '{manifest,export_id}' = ${exportId} LIMIT 1`) as {
      details: string;
    }[];
    return row ? (JSON.parse(row.details) as { manifest: ExportManifest }).manifest : null;
  }

  async events(filter: ParsedEventFilter): Promise<EventPage> {
    const rows = (await this.sql`SELECT seq, timestamp, kind, actor, details FROM audit_events
      WHERE (${filter.kind ?? null}::text IS NULL OR kind = ${filter.kind ?? null})
        AND (${filter.cursor ?? null}::bigint IS NULL OR seq < ${filter.cursor ?? null}::bigint)
      ORDER BY seq DESC LIMIT ${filter.limit + 1}`) as EventRow[];
    const page = rows.slice(0, filter.limit).map(toEntry);
    return { events: page, next_cursor: rows.length > filter.limit ? String(page.at(-1)!.seq) : null };
  }

  async status(): Promise<TrailStatus> {
    return this.sql.begin("isolation level repeatable read read only", async (tx) => {
      const [last] = (await tx`SELECT greatest((SELECT max(seq) FROM audit_records), (SELECT max(seq) FROM audit_events)) AS seq`) as {
        seq: string | null;
      }[];
      const [checkpoint] = (await tx`SELECT seq, hash, time FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`) as {
        seq: string;
        hash: string;
        time: string;
      }[];
      const [verification] =
        (await tx`SELECT seq, timestamp, kind, actor, details FROM audit_events WHERE kind = 'verify' ORDER BY seq DESC LIMIT 1`) as EventRow[];
      return {
        chain_id: this.meta.chainId,
        last_seq: Number(last?.seq ?? 0),
        last_checkpoint: checkpoint ? { ...checkpoint, seq: Number(checkpoint.seq) } : null,
        last_verification: verification ? toEntry(verification) : null,
      };
    });
  }

  async entry(seq: number): Promise<ChainEntry | null> {
    const [record] = (await this.sql`SELECT prev_hash, hash, commitment, salt FROM audit_records WHERE seq = ${seq}`) as {
      prev_hash: string | null;
      hash: string | null;
      commitment: string | null;
      salt: string | null;
    }[];
    const [event] = record
      ? []
      : ((await this.sql`SELECT prev_hash, hash FROM audit_events WHERE seq = ${seq}`) as { prev_hash: string; hash: string }[]);
    if (!record && !event) return null;
    const [checkpoint] = (await this.sql`SELECT seq, time FROM audit_checkpoints WHERE seq >= ${seq} ORDER BY seq LIMIT 1`) as {
      seq: string;
      time: string;
    }[];
    return {
      seq,
      kind: record ? "record" : "event",
      prev_hash: record ? record.prev_hash : event!.prev_hash,
      hash: record ? record.hash : event!.hash,
      commitment: record?.commitment ?? null,
      redacted: record ? record.salt === null : false,
      checkpoint: checkpoint ? { seq: Number(checkpoint.seq), time: checkpoint.time } : null,
    };
  }
}

interface EventRow {
  seq: string | number;
  timestamp: string;
  kind: string;
  actor: string;
  details: string;
  prev_hash?: string;
  hash?: string;
}
const toEntry = (row: EventRow): ChainEventEntry => ({
  seq: Number(row.seq),
  timestamp: row.timestamp,
  kind: row.kind,
  actor: row.actor,
  details: JSON.parse(row.details) as Record<string, unknown>,
});

/** Records redacted (and read for their check) per statement. */
const redactChunk = 10_000;

/**
 * Reads the full rows of `seqs` (sorted), `redactChunk` at a time, and checks each as verify would
 * (`RedactionGuard`, which throws `RedactionRefusedError` at the first that fails); returns `seqs`.
 */
async function checkedSeqs(tx: SQL, kind: "erasure" | "retention", seqs: number[]): Promise<number[]> {
  const guard = new RedactionGuard(kind);
  const recordColumns = storedRecordColumns.join(", ");
  for (let i = 0; i < seqs.length; i += redactChunk) {
    const rows = (await tx.unsafe(`SELECT ${recordColumns} FROM audit_records WHERE seq = ANY($1::bigint[]) ORDER BY seq`, [
      seqs.slice(i, i + redactChunk),
    ])) as Record<string, unknown>[];
    for (const row of rows) guard.check(storedRow(row));
  }
  return seqs;
}

/** Records and events merged in seq order, read in keyset chunks (memory holds two chunks). */
/** The chain's erasure and retention events (their `details.seqs` name the records they redacted). */
async function redactionEvents(sql: SQL): Promise<{ seq: number; kind: string; details: string }[]> {
  const rows = (await sql`SELECT seq, kind, details FROM audit_events WHERE kind IN ('erasure', 'retention')`) as EventRow[];
  return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
}

/**
 * The chain walked from the entry at `from` to its end in one snapshot, that entry's own link taken
 * as given (null: intact, or no such entry): an export's check, as the SQLite driver's
 * `chainFailureFrom` (../sqlite/verify.ts) says.
 */
async function chainFailureFrom(sql: SQL, chainId: string, from: number): Promise<VerifyFailure | null> {
  return sql.begin("isolation level repeatable read read only", async (tx) => {
    const [first] = (await tx`SELECT prev_hash FROM audit_records WHERE seq = ${from}
      UNION ALL SELECT prev_hash FROM audit_events WHERE seq = ${from} LIMIT 1`) as { prev_hash: string | null }[];
    if (!first?.prev_hash) return null;
    const { report } = startVerification(chainId, [], [], null);
    const walk = new ChainWalk(report, [], redactionCover(await redactionEvents(tx), { chainId, publicKey: null, checkpoints: [] }), {
      seq: from,
      prev: first.prev_hash,
    });
    return walkChain(tx, walk, from);
  });
}

/** Pushes the chain's entries from seq `from` through `walk`: its first failure (a broken link looked up), or its end's. */
async function walkChain(tx: SQL, walk: ChainWalk, from = 1): Promise<VerifyFailure | null> {
  for await (const item of entries(tx, from)) {
    const isRecord = "record" in item;
    const entry = isRecord ? item.record : item.event;
    const step = walk.next(entry, isRecord);
    if (step === null) continue;
    if (!("brokenLink" in step)) return step;
    const [linked] = entry.prev_hash
      ? ((await tx`SELECT seq FROM audit_records WHERE hash = ${entry.prev_hash} UNION ALL SELECT seq FROM audit_events WHERE hash = ${entry.prev_hash} LIMIT 1`) as {
          seq: string;
        }[])
      : [];
    return walk.brokenLink(entry, isRecord, linked ? Number(linked.seq) : null);
  }
  return walk.end();
}

async function* entries(tx: SQL, from = 1): AsyncGenerator<WalkEntry> {
  const recordColumns = storedRecordColumns.join(", ");
  const records = chunks(from - 1, async (after) =>
    (
      (await tx.unsafe(`SELECT ${recordColumns} FROM audit_records WHERE seq > $1 ORDER BY seq LIMIT ${walkChunk}`, [after])) as Record<
        string,
        unknown
      >[]
    ).map(storedRow),
  );
  const events = chunks(from - 1, async (after) =>
    (
      (await tx.unsafe(
        `SELECT seq, timestamp, kind, actor, details, prev_hash, hash FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT ${walkChunk}`,
        [after],
      )) as EventRow[]
    ).map(
      (row) =>
        ({ ...row, seq: Number(row.seq) }) as {
          seq: number;
          timestamp: string;
          kind: string;
          actor: string;
          details: string;
          prev_hash: string;
          hash: string;
        },
    ),
  );
  let record = await records.next();
  let event = await events.next();
  while (!record.done || !event.done) {
    if (event.done || (!record.done && record.value.seq < event.value.seq)) {
      yield { record: record.value as ChainRecordRow };
      record = await records.next();
    } else {
      yield { event: event.value };
      event = await events.next();
    }
  }
}

async function* chunks<T extends { seq: number }>(start: number, read: (after: number) => Promise<T[]>): AsyncGenerator<T> {
  for (let after = start; ; ) {
    const rows = await read(after);
    yield* rows;
    if (rows.length < walkChunk) return;
    after = rows.at(-1)!.seq;
  }
}

/** The record names the user: as user, key id, any string of its delegation JSON, or Claude Code's device/account. */
function namesUser(row: { user_id: string | null; key_id: string | null; delegation: string | null }, forms: Set<string>): boolean {
  if ((row.user_id !== null && forms.has(row.user_id)) || (row.key_id !== null && forms.has(row.key_id))) return true;
  const strings: string[] = [];
  const visit = (value: unknown): void => {
    if (typeof value === "string") strings.push(value);
    else if (value !== null && typeof value === "object") for (const v of Object.values(value)) visit(v);
  };
  for (const text of [row.delegation, row.user_id?.startsWith("{") ? row.user_id : null]) {
    if (text === null) continue;
    try {
      visit(JSON.parse(text) as unknown);
    } catch {
      // not JSON
    }
  }
  if (strings.some((s) => forms.has(s))) return true;
  const claude = row.user_id?.match(/^user_(.+)_account_(.*)_session_/);
  return claude ? [...forms].some((f) => f !== "" && (claude[1] === f || claude[2] === f)) : false;
}

/** `external`: checkpoints kept outside the database (the checkpoint file), checked like the stored ones. */
function exportSource(sql: SQL, chainId: string, filter: ParsedExportFilter, external: () => readonly Checkpoint[]): ExportSource {
  const where = `(${"$3::text IS NULL OR timestamp >= $3"}) AND ($4::text IS NULL OR timestamp <= $4) AND ($5::text IS NULL OR agent_id = $5)
    AND ($6::text IS NULL OR user_id = $6) AND ($7::text IS NULL OR task_context = $7)${Object.keys(filter.tag ?? {})
      .map((key, i) => ` AND coalesce(tags::jsonb ->> '${key}', personal_tags::jsonb ->> '${key}') = $${8 + i}`)
      .join("")}`;
  const params = [
    filter.start_date ?? null,
    filter.end_date ?? null,
    filter.agent ?? null,
    filter.user ?? null,
    filter.task ?? null,
    ...Object.values(filter.tag ?? {}),
  ];
  return {
    chainId: () => chainId,
    async anchor() {
      const [last] = (await sql`SELECT greatest((SELECT max(seq) FROM audit_records), (SELECT max(seq) FROM audit_events), 0) AS seq`) as {
        seq: string;
      }[];
      const stored = (await sql`SELECT chain_id, seq, hash, time, signature FROM audit_checkpoints ORDER BY seq`) as Checkpoint[];
      // From the first record it may sign (as the SQLite driver's export says why).
      const [first] = (await sql.unsafe(
        `SELECT min(seq) AS seq FROM audit_records WHERE $1::int IS NULL AND $2::int IS NULL AND ${where}`,
        [null, null, ...params],
      )) as { seq: string | null }[];
      return {
        chainId,
        chainFailure: first?.seq ? await chainFailureFrom(sql, chainId, Number(first.seq)) : null,
        lastSeq: Number(last!.seq),
        redactions: await redactionEvents(sql),
        checkpoints: [...stored.map((c) => ({ ...c, seq: Number(c.seq) })), ...external()],
        async hashAt(seq: number) {
          const [row] = (await sql`SELECT hash FROM audit_records WHERE seq = ${seq}
            UNION ALL SELECT hash FROM audit_events WHERE seq = ${seq} LIMIT 1`) as { hash: string }[];
          return row?.hash ?? null;
        },
      };
    },
    async count() {
      const [row] = (await sql.unsafe(`SELECT count(*) AS n FROM audit_records WHERE $1::int IS NULL AND $2::int IS NULL AND ${where}`, [
        null,
        null,
        ...params,
      ])) as { n: string }[];
      return Number(row!.n);
    },
    async *rows(): AsyncGenerator<ExportedRow[]> {
      const [end] = (await sql`SELECT coalesce(max(seq), 0) AS seq FROM audit_records`) as { seq: string }[];
      for (let after = 0; ; ) {
        const rows = (await sql.unsafe(
          `SELECT ${storedRecordColumns.join(", ")},
             coalesce((SELECT n.prev_hash FROM audit_records AS n WHERE n.seq = r.seq + 1),
                      (SELECT e.prev_hash FROM audit_events AS e WHERE e.seq = r.seq + 1)) AS next_prev_hash
           FROM audit_records AS r WHERE seq > $1 AND seq <= $2 AND ${where} ORDER BY seq LIMIT ${exportChunkRows}`,
          [after, Number(end!.seq), ...params],
        )) as Record<string, unknown>[];
        yield rows.map((row) => ({ record: toRecord(row), stored: storedRow(row), next: row.next_prev_hash as string | null }));
        if (rows.length < exportChunkRows) return;
        after = Number(rows.at(-1)!.seq);
      }
    },
  };
}

/**
 * An intent group row keeps the intents of its calls that have landed until most of them have
 * (./intents.ts): an erasure rewrites every group without the intents whose record is in the chain
 * (just redacted where they named the erased user), so no settled intent of an erased user stays
 * stored, as SQLite's intent log guarantees. Under the chain lock: no append compacts meanwhile.
 * A call still in flight keeps its intent; its final record is redacted as it lands.
 */
async function dropLandedIntents(tx: SQL): Promise<void> {
  const stored = (await tx`SELECT replica_id, n, intents FROM audit_intent_groups FOR UPDATE`) as {
    replica_id: string;
    n: string;
    intents: string;
  }[];
  if (stored.length === 0) return;
  const rows = stored.map((group) => groupRows(group.intents));
  const ids = rows.flatMap((intents) => intents.map((row) => String(row[0])));
  const landed = new Set(((await tx`SELECT id FROM audit_records WHERE id = ANY(${ids}::text[])`) as { id: string }[]).map((r) => r.id));
  for (const [i, group] of stored.entries()) {
    const open = rows[i]!.filter((row) => !landed.has(String(row[0])));
    if (open.length === rows[i]!.length) continue;
    await tx`UPDATE audit_intent_groups SET intents = ${JSON.stringify(open)} WHERE replica_id = ${group.replica_id} AND n = ${group.n}`;
  }
}
