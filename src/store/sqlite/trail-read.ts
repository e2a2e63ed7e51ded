/** Reading the trail itself in SQLite: the answers of ../../trail/events.ts. */
import type { Database } from "bun:sqlite";
import type { ChainEntry, ChainEventEntry, EventPage, ParsedEventFilter, TrailStatus } from "../../trail/events.ts";

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
    .query<EventRow, (string | number)[]>(
      `SELECT seq, timestamp, kind, actor, details FROM audit_events ${where} ORDER BY seq DESC LIMIT ?`,
    )
    .all(...params, filter.limit + 1);
  const page = rows.slice(0, filter.limit).map(toEntry);
  return { events: page, next_cursor: rows.length > filter.limit ? String(page.at(-1)!.seq) : null };
}

export function trailStatus(db: Database): TrailStatus {
  return db.transaction(() => {
    const chain = db.query<{ chain_id: string }, []>("SELECT chain_id FROM audit_chain LIMIT 1").get();
    const last = (table: string) => db.query<{ seq: number | null }, []>(`SELECT max(seq) AS seq FROM ${table}`).get()?.seq ?? 0;
    const checkpoint = db
      .query<{ seq: number; hash: string; time: string }, []>("SELECT seq, hash, time FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
      .get();
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
  const event = record
    ? null
    : db.query<{ prev_hash: string; hash: string }, [number]>("SELECT prev_hash, hash FROM audit_events WHERE seq = ?").get(seq);
  if (!record && !event) return null;
  const checkpoint = db
    .query<{ seq: number; time: string }, [number]>("SELECT seq, time FROM audit_checkpoints WHERE seq >= ? ORDER BY seq LIMIT 1")
    .get(seq);
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
