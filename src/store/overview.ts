/**
 * The dashboard's Overview in one answer (`GET /audit/overview`): spend, calls and tokens per hour
 * or day, the top agents, users, tasks and models by cost, and calls by outcome and status, over
 * one time range. It is composed from summaries (./summary.ts), so any driver's `AuditReader`
 * serves it, and its numbers are those of `GET /audit/summary` for the same range (read from one
 * snapshot where the reader has `summaries`).
 */
import { z } from "zod";
import { recordFilterSchema, sinceOf } from "./filters.ts";
import type { AuditReader } from "./contract.ts";
import { summaryRowSchema, type Summary } from "./results.ts";
import { summaryFilterSchema, type SummaryGrouping } from "./filters.ts";

export const overviewFilterSchema = recordFilterSchema.pick({ since: true, until: true, days: true }).extend({
  /** Buckets of the time series; default: hours for ranges up to 3 days, else days. */
  bucket: z.enum(["hour", "day"]).optional(),
  /** How many of the top agents, users, tasks and models. */
  top: z.coerce.number().int().min(1).max(100).default(5),
});
export type ParsedOverviewFilter = z.output<typeof overviewFilterSchema>;

const rows = z.array(summaryRowSchema);
export const overviewSchema = z.object({
  since: z.string().nullable(),
  until: z.string().nullable(),
  bucket: z.enum(["hour", "day"]),
  total: summaryRowSchema,
  /** One row per hour (`2026-01-31T13`) or day that had calls, oldest first. */
  series: rows,
  top: z.object({ agent: rows, user: rows, task: rows, model: rows }),
  /** Calls per `outcome:status` (`rejected:429`, `upstream_error:502`, …), most first. */
  statuses: rows,
  /** Calls forwarded upstream whose response has not ended yet (this process). */
  inflight: z.number().int(),
});
export type Overview = z.infer<typeof overviewSchema>;

export async function overview(reader: AuditReader, filter: ParsedOverviewFilter, inflight: number): Promise<Overview> {
  const since = sinceOf(filter);
  const range = { since, until: filter.until };
  const spanMs = Date.parse(filter.until ?? new Date().toISOString()) - Date.parse(since ?? "1970-01-01T00:00:00Z");
  // `since` was computed a moment before this `now`: a `days=3` range is 3 days and a few ms.
  const bucket = filter.bucket ?? (spanMs <= 3 * 86_400_000 + 1000 ? "hour" : "day");
  const by = (grouping: SummaryGrouping, extra: object = {}) => summaryFilterSchema.parse({ ...range, by: grouping, ...extra });
  const top = (grouping: SummaryGrouping) => by(grouping, { limit: filter.top });
  const filters = [by(bucket), top("agent"), top("user"), top("task"), top("model"), by("status", { sort: "calls" })];
  // In one snapshot, the partial days at the range's edges read once for all of them (where the store can).
  const answers = reader.summaries ? await reader.summaries(filters) : await Promise.all(filters.map((f) => reader.summary(f)));
  if (answers.length !== filters.length) throw new Error(`the audit reader answered ${answers.length} of ${filters.length} summaries`);
  const [series, agent, user, task, model, statuses] = answers as [Summary, Summary, Summary, Summary, Summary, Summary];
  return {
    since: since ?? null,
    until: filter.until ?? null,
    bucket,
    total: series.total,
    series: series.groups,
    top: { agent: agent.groups, user: user.groups, task: task.groups, model: model.groups },
    statuses: statuses.groups,
    inflight,
  };
}
