/**
 * Reading the trail itself, as every driver answers it (the dashboard's Trail page, a record's place
 * in the chain): chain events newest first with keyset pagination over seq, the chain's status (its
 * tail, the last signed checkpoint, the last verification) and one entry's links. Events hold no
 * personal data (an erasure event names seqs, never the person), so they are returned as stored.
 */
import { z } from "zod";
import { chainEventKinds } from "./chain.ts";

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
  /** Who: `api:admin`, `api:admin:alice` (a named token), `dashboard:auditor`, `cli:<os user>`, `plugin:tiers`, `retention`…; never a data subject. */
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
