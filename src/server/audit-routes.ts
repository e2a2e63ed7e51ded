/** The audit REST API: record queries with filters and cursor pagination, summaries (DESIGN §2). */
import { Elysia } from "elysia";
import { z } from "zod";
import { recordFilterSchema, type RecordFilter } from "../audit/query.ts";
import { summaryFilterSchema } from "../audit/summary.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import type { AccessGuard } from "./roles.ts";

const queryOf = (request: Request) => Object.fromEntries(new URL(request.url).searchParams);

const invalidQuery = (error: z.ZodError) =>
  Response.json(
    { error: { message: `Invalid query: ${z.prettifyError(error)}`, type: "invalid_request_error", code: "invalid_query" } },
    { status: 400 },
  );

/** Every route asks `access` for the least role it needs (reads: auditor; deletes: admin). */
export function auditRoutes(rt: Runtime, access: AccessGuard) {
  const list = async (request: Request, fixed: Partial<RecordFilter> = {}) => {
    const denied = access(request, "auditor");
    if (denied) return denied;
    const parsed = recordFilterSchema.safeParse({ ...queryOf(request), ...fixed });
    if (!parsed.success) return invalidQuery(parsed.error);
    return Response.json(await rt.reader.records(parsed.data));
  };
  const summary = async (request: Request) => {
    const denied = access(request, "auditor");
    if (denied) return denied;
    const parsed = summaryFilterSchema.safeParse(queryOf(request));
    if (!parsed.success) return invalidQuery(parsed.error);
    return Response.json(await rt.reader.summary(parsed.data));
  };
  return new Elysia({ prefix: "/audit" })
    .get("/records", ({ request }) => list(request))
    .get("/summary", ({ request }) => summary(request))
    .get("/records/:id", async ({ request, params }) => {
      const denied = access(request, "auditor");
      if (denied) return denied;
      const record = await rt.reader.record(params.id);
      if (record) return Response.json(record);
      return Response.json(
        { error: { message: `No audit record has id '${params.id}'.`, type: "not_found_error", code: "not_found" } },
        { status: 404 },
      );
    })
    .get("/user/:id", ({ request, params }) => list(request, { user: params.id }))
    .get("/agent/:id", ({ request, params }) => list(request, { agent: params.id }))
    .get("/task/:id", ({ request, params }) => list(request, { task: params.id }));
}
