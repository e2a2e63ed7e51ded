/**
 * Reading the trail itself (the dashboard's Trail page and a record's place in the chain): chain
 * events newest first with keyset pagination over seq, the chain's status (its tail, the last
 * signed checkpoint, the last verification) and one entry's links. Events hold no personal data
 * (an erasure event names seqs, never the person), so they are returned as stored.
 */
import type { Database } from "bun:sqlite";
import { z } from "zod";
import { chainEventKinds } from "../../trail/chain.ts";

export const eventFilterSchema = z.object({
  kind: z.enum(chainEventKinds).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  /** The next_cursor of a previous page: the seq to continue below. */
  cursor: z.string().regex(/^\d+$/, { message: "expected the next_cursor value of a previous page" }).optional(),
});
export type ParsedEventFilter = z.output<typeof eventFilterSchema>;

export const chainEventEntrySchema = z.object({
  seq: z.number().int(),
  timestamp: z.string(),
  kind: z.string(),
  /** Who: `api:admin`, `dashboard:auditor`, `cli:<os user>`, `retention`…; never a data subject. */
  actor: z.string(),
  details: z.record(z.string(), z.unknown()),
});
export type ChainEventEntry = z.infer<typeof chainEventEntrySchema>;

export const eventPageSchema = z.object({ events: z.array(chainEventEntrySchema), next_cursor: z.string().nullable() });
export type EventPage = z.infer<typeof eventPageSchema>;

export const trailStatusSchema = z.object({
  chain_id: z.string().nullable(),
  /** The chain's last seq (records and events); 0 when empty. */
  last_seq: z.number().int(),
  /** The newest signed checkpoint, or null when none was signed yet. */
  last_checkpoint: z.object({ seq: z.number().int(), hash: z.string(), time: z.string() }).nullable(),
  /** The newest verification event (its details: ok, last_seq, bad_seq, reason), or null. */
  last_verification: chainEventEntrySchema.nullable(),
});
export type TrailStatus = z.infer<typeof trailStatusSchema>;

export const chainEntrySchema = z.object({
  seq: z.number().int(),
  kind: z.enum(["record", "event"]),
  prev_hash: z.string().nullable(),
  hash: z.string().nullable(),
  /** Records: the salted commitment to the personal fields (null once erased, with the salt). */
  commitment: z.string().nullable(),
  redacted: z.boolean(),
  /** The first signed checkpoint at or after this seq: from then on, the entry cannot be rewritten unnoticed. */
  checkpoint: z.object({ seq: z.number().int(), time: z.string() }).nullable(),
});
export type ChainEntry = z.infer<typeof chainEntrySchema>;

interface EventRow {
  seq: number;
  timestamp: string;
  kind: string;
  actor: string;
  details: string;
}

const toEntry = (row: EventRow): ChainEventEntry => ({ ...row, details: JSON.parse(row.details) as Record<string, unknown> });

export function listEvents(db: Database, filter: ParsedEventFilter): EventPage {
  const conditions: string[] = [];
  const params: (string | number)[] = [];
  if (filter.kind) conditions.push("kind = ?"), params.push(filter.kind);
  if (filter.cursor) conditions.push("seq < ?"), params.push(Number(filter.cursor));
  const where = conditions.length ? `WHERE ${conditions.join(" AND ")}` : "";
  const rows = db
    .query<EventRow, (string | number)[]>(`SELECT seq, timestamp, kind, actor, details FROM audit_events ${where} ORDER BY seq DESC LIMIT ?`)
    .all(...params, filter.limit + 1);
  const page = rows.slice(0, filter.limit).map(toEntry);
  return { events: page, next_cursor: rows.length > filter.limit ? String(page.at(-1)!.seq) : null };
}

export function trailStatus(db: Database): TrailStatus {
  return db.transaction(() => {
    const chain = db.query<{ chain_id: string }, []>("SELECT chain_id FROM audit_chain LIMIT 1").get();
    const last = (table: string) => db.query<{ seq: number | null }, []>(`SELECT max(seq) AS seq FROM ${table}`).get()?.seq ?? 0;
    const checkpoint = db.query<{ seq: number; hash: string; time: string }, []>("SELECT seq, hash, time FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").get();
    const verification = db
      .query<EventRow, []>("SELECT seq, timestamp, kind, actor, details FROM audit_events WHERE kind = 'verify' ORDER BY seq DESC LIMIT 1")
      .get();
    return {
      chain_id: chain?.chain_id ?? null,
      last_seq: Math.max(last("audit_records"), last("audit_events")),
      last_checkpoint: checkpoint ?? null,
      last_verification: verification ? toEntry(verification) : null,
    };
  })();
}

export function chainEntry(db: Database, seq: number): ChainEntry | null {
  const record = db
    .query<{ prev_hash: string | null; hash: string | null; commitment: string | null; salt: string | null }, [number]>(
      "SELECT prev_hash, hash, commitment, salt FROM audit_records WHERE seq = ?",
    )
    .get(seq);
  const event = record ? null : db.query<{ prev_hash: string; hash: string }, [number]>("SELECT prev_hash, hash FROM audit_events WHERE seq = ?").get(seq);
  if (!record && !event) return null;
  const checkpoint = db.query<{ seq: number; time: string }, [number]>("SELECT seq, time FROM audit_checkpoints WHERE seq >= ? ORDER BY seq LIMIT 1").get(seq);
  return {
    seq,
    kind: record ? "record" : "event",
    prev_hash: record ? record.prev_hash : event!.prev_hash,
    hash: record ? record.hash : event!.hash,
    commitment: record?.commitment ?? null,
    redacted: record ? record.salt === null : false,
    checkpoint: checkpoint ?? null,
  };
}
