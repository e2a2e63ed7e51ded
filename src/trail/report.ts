/**
 * The auditor's report of a period (`agent-attr audit report`): the period's calls by day, agent,
 * purpose and lawful basis, refusals, consents granted, withdrawn and expired, erasures, the
 * verify result and the last signed checkpoint. Gathered through the storage contract only, so it
 * reads the same from either driver; rendered by ./report-html.ts. It names agents, purposes and
 * bases, never a user: a report is handed around, personal data stays in the trail.
 */
import { z } from "zod";
import type { AuditReader, AuditTrail, ConsentStore } from "../store/contract.ts";
import { summaryFilterSchema, type SummaryGrouping } from "../store/filters.ts";
import { summaryRowSchema, type SummaryRow } from "../store/results.ts";
import { chainEventEntrySchema, eventFilterSchema, trailStatusSchema, type ChainEventEntry } from "./events.ts";
import type { chainEventKinds } from "./chain.ts";
import { verifyReportSchema } from "./verify.ts";

export const reportSchema = z.object({
  title: z.string(),
  generated_at: z.string(),
  generated_by: z.string(),
  since: z.string(),
  until: z.string(),
  totals: summaryRowSchema,
  by_day: z.array(summaryRowSchema),
  by_agent: z.array(summaryRowSchema),
  by_purpose: z.array(summaryRowSchema),
  by_basis: z.array(summaryRowSchema),
  /** Calls refused (outcome `rejected`), by error type (`consent_required`, `rate_limited`…) and by agent. */
  refusals: z.object({ total: z.number().int(), by_error: z.array(summaryRowSchema), by_agent: z.array(summaryRowSchema) }),
  consents: z.object({
    granted: z.array(chainEventEntrySchema),
    withdrawn: z.array(chainEventEntrySchema),
    expired: z.array(chainEventEntrySchema),
  }),
  /**
   * Erasures of the period (requests to erase a user) and the records they redacted — how many,
   * never whose; records of calls in flight at an erasure, redacted as they landed, count too.
   */
  erasures: z.object({ events: z.number().int(), records: z.number().int() }),
  verify: verifyReportSchema,
  status: trailStatusSchema,
  /** The trail's signing key (SPKI PEM) that signs the report; null when it is not available. */
  public_key: z.string().nullable(),
});
export type Report = z.infer<typeof reportSchema>;

export interface ReportPeriod {
  since: string;
  until: string;
}

/** Calls of the period grouped `by`, most calls first (days in time order). */
async function grouped(reader: AuditReader, by: SummaryGrouping, period: ReportPeriod, extra: object = {}): Promise<SummaryRow[]> {
  const summary = await reader.summary(summaryFilterSchema.parse({ by, ...period, sort: "calls", ...extra }));
  return summary.groups;
}

/** The events of one kind inside the period, oldest first (pages are newest first: read until before `since`). */
async function eventsOf(trail: AuditTrail, kind: (typeof chainEventKinds)[number], period: ReportPeriod): Promise<ChainEventEntry[]> {
  const found: ChainEventEntry[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await trail.events(eventFilterSchema.parse({ kind, limit: 500, cursor }));
    for (const event of page.events) if (event.timestamp >= period.since && event.timestamp <= period.until) found.push(event);
    const oldest = page.events.at(-1);
    if (!page.next_cursor || !oldest || oldest.timestamp < period.since) break;
    cursor = page.next_cursor;
  }
  return found.reverse();
}

/**
 * Gathers the report. It verifies the whole chain first (recorded as a verification by `actor`),
 * so the report states the trail's integrity as of its own time.
 */
export async function gatherReport(
  handle: { reader: AuditReader; trail: AuditTrail; consents: ConsentStore; signs: boolean },
  period: ReportPeriod,
  actor: string,
  now = new Date(),
): Promise<Report> {
  const { reader, trail } = handle;
  const { recorded: _, ...verify } = await trail.verify(actor);
  const [totals, byDay, byAgent, byPurpose, byBasis, refusedByError, refusedByAgent] = await Promise.all([
    reader.summary(summaryFilterSchema.parse({ by: "day", ...period })).then((s) => s.total),
    reader.summary(summaryFilterSchema.parse({ by: "day", ...period })).then((s) => s.groups),
    grouped(reader, "agent", period),
    grouped(reader, "purpose", period),
    grouped(reader, "basis", period),
    grouped(reader, "error", period, { outcome: "rejected" }),
    grouped(reader, "agent", period, { outcome: "rejected" }),
  ]);
  const [granted, withdrawn, expired, erasures] = await Promise.all([
    eventsOf(trail, "consent_granted", period),
    eventsOf(trail, "consent_withdrawn", period),
    eventsOf(trail, "consent_expired", period),
    eventsOf(trail, "erasure", period),
  ]);
  // A withdrawal or expiry event names only the consent: say what it was for, from the consent itself.
  for (const event of [...withdrawn, ...expired]) {
    const consent = await handle.consents.find(String(event.details.consent_id));
    if (consent) event.details = { ...event.details, purpose: consent.purpose, lawful_basis: consent.lawful_basis, agents: consent.agents };
  }
  return {
    title: "agent-attr audit report",
    generated_at: now.toISOString(),
    generated_by: actor,
    ...period,
    totals,
    by_day: byDay,
    by_agent: byAgent,
    by_purpose: byPurpose,
    by_basis: byBasis,
    refusals: { total: refusedByError.reduce((n, row) => n + row.calls, 0), by_error: refusedByError, by_agent: refusedByAgent },
    consents: { granted, withdrawn, expired },
    erasures: {
      events: erasures.filter((event) => event.details.on_landing !== true).length,
      records: erasures.reduce((n, event) => n + (typeof event.details.records === "number" ? event.details.records : 0), 0),
    },
    verify,
    status: await trail.status(),
    public_key: handle.signs ? trail.publicKey() : null,
  };
}
