/** The audit REST API: record queries with filters and cursor pagination, summaries (DESIGN §2). */
import { Elysia } from "elysia";
import { z } from "zod";
import { recordFilterSchema, type RecordFilter } from "../store/filters.ts";
import { summaryFilterSchema } from "../store/filters.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import type { AccessGuard } from "./roles.ts";
import { errorMessage } from "../errors.ts";
import { filterNames } from "../store/filters.ts";
import { apiError } from "./http.ts";
import { tagQuery } from "../store/filters.ts";

const invalidQuery = (error: z.ZodError) => apiError("invalid_query", `Invalid query: ${z.prettifyError(error)}`);

/** The names of the filters a query used (never their values, which may be personal). */
const usedFilters = (filter: object) => filterNames(filter, ["limit", "by", "sort"]);

/**
 * Every query is a chain event (audit of the audit): the route pattern, the names of the filters
 * used and how many records (or groups) were returned. If the event cannot be written, the answer
 * is withheld (503), as for a call whose record cannot be written.
 */
export async function recorded(
  rt: Runtime,
  actor: string,
  route: string,
  filters: string[],
  returned: number,
  answer: Response,
): Promise<Response> {
  try {
    await rt.trail.recordEvent({ kind: "query", actor, details: { route, filters, returned } });
    return answer;
  } catch (error) {
    rt.log.error(`cannot record an audit query in the trail: ${errorMessage(error)}`);
    return apiError("audit_unavailable", "The audit trail cannot record this query right now; retry shortly.");
  }
}

/** Every route asks `access` for the least role it needs (reads: auditor; deletes: admin), naming its route pattern. */
export function auditRoutes(rt: Runtime, access: AccessGuard, actorOf: (request: Request) => string = () => "api") {
  const list = async (request: Request, route: string, fixed: Partial<RecordFilter> = {}) => {
    const denied = access(request, "auditor", route);
    if (denied) return denied;
    const parsed = recordFilterSchema.safeParse({ ...tagQuery(new URL(request.url).searchParams), ...fixed });
    if (!parsed.success) return invalidQuery(parsed.error);
    const page = await rt.reader.records(parsed.data);
    return recorded(rt, actorOf(request), route, usedFilters(parsed.data), page.records.length, Response.json(page));
  };
  const summary = async (request: Request, route: string) => {
    const denied = access(request, "auditor", route);
    if (denied) return denied;
    const parsed = summaryFilterSchema.safeParse(tagQuery(new URL(request.url).searchParams));
    if (!parsed.success) return invalidQuery(parsed.error);
    const result = await rt.reader.summary(parsed.data);
    return recorded(
      rt,
      actorOf(request),
      `/audit/summary?by=${parsed.data.by}`,
      usedFilters(parsed.data),
      result.groups.length,
      Response.json(result),
    );
  };
  return new Elysia({ prefix: "/audit" })
    .get("/records", ({ request, route }) => list(request, route))
    .get("/summary", ({ request, route }) => summary(request, route))
    .get("/records/:id", async ({ request, params, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const record = await rt.reader.record(params.id);
      if (record) return recorded(rt, actorOf(request), route, ["id"], 1, Response.json(record));
      const missing = apiError("not_found", `No audit record has id '${params.id}'.`);
      return recorded(rt, actorOf(request), route, ["id"], 0, missing);
    })
    .get("/user/:id", ({ request, params, route }) => list(request, route, { user: params.id }))
    .get("/agent/:id", ({ request, params, route }) => list(request, route, { agent: params.id }))
    .get("/task/:id", ({ request, params, route }) => list(request, route, { task: params.id }));
}
