/**
 * The audit API routes the dashboard reads (each also for any other client): the Overview in one
 * answer, the limits in force now, the chain's events and status, one entry's place in the chain,
 * and the proxy keys. Reads need the auditor role; creating and revoking keys, admin. Every call is
 * a chain event, like every audit query (./audit-routes.ts); key changes are their own events.
 */
import { Elysia } from "elysia";
import { z } from "zod";
import { overview, overviewFilterSchema } from "../store/overview.ts";
import { eventFilterSchema } from "../trail/events.ts";
import { newKeySchema } from "../store/keys.ts";
import type { LimitUsage } from "../limit-usage.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import { errorMessage } from "../errors.ts";
import { filterNames } from "../store/filters.ts";
import { recorded } from "./audit-routes.ts";
import { apiError, invalid, jsonBody, queryOf } from "./http.ts";
import type { AccessGuard } from "./roles.ts";

const unavailable = (what: string) => apiError("audit_unavailable", `The audit trail cannot ${what} right now; retry shortly.`);

export function auditDashboardRoutes(rt: Runtime, access: AccessGuard, actorOf: (request: Request) => string = () => "api") {
  return new Elysia({ prefix: "/audit" })
    .get("/overview", async ({ request, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const parsed = overviewFilterSchema.safeParse(queryOf(request));
      if (!parsed.success) return invalid("query", parsed.error);
      const answer = await overview(rt.reader, parsed.data, rt.metrics.inflight);
      return recorded(rt, actorOf(request), route, filterNames(parsed.data, ["top"]), answer.series.length, Response.json(answer));
    })
    .get("/limits", async ({ request, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const limits: LimitUsage[] = [];
      for (const plugin of rt.plugins) {
        if (!plugin.limit?.usage) continue;
        try {
          for (const usage of await plugin.limit.usage()) limits.push({ ...usage, plugin: plugin.name });
        } catch (error) {
          rt.log.error(`[plugin ${plugin.name}] limit.usage: ${errorMessage(error)}`);
          return apiError(
            "limits_unavailable",
            `The limits of plugin '${plugin.name}' cannot be read right now (${errorMessage(error)}); retry shortly.`,
          );
        }
      }
      const plugins = rt.plugins.filter((p) => p.limit).map((p) => p.name);
      return recorded(rt, actorOf(request), route, [], limits.length, Response.json({ plugins, limits }));
    })
    .get("/events", async ({ request, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const parsed = eventFilterSchema.safeParse(queryOf(request));
      if (!parsed.success) return invalid("query", parsed.error);
      const page = await rt.trail.events(parsed.data);
      return recorded(rt, actorOf(request), route, filterNames(parsed.data, ["limit"]), page.events.length, Response.json(page));
    })
    .get("/trail/status", async ({ request, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      return recorded(rt, actorOf(request), route, [], 1, Response.json(await rt.trail.status()));
    })
    .get("/chain/:seq", async ({ request, params, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const seq = z.coerce.number().int().positive().safeParse(params.seq);
      if (!seq.success) return apiError("invalid_query", `Invalid seq '${params.seq}': expected a positive integer.`);
      const entry = await rt.trail.entry(seq.data);
      const answer = entry ? Response.json(entry) : apiError("not_found", `The chain has no entry at seq ${seq.data}.`);
      return recorded(rt, actorOf(request), route, ["seq"], entry ? 1 : 0, answer);
    })
    .get("/keys", async ({ request, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const keys = await rt.keys.list();
      return recorded(rt, actorOf(request), route, [], keys.length, Response.json({ keys }));
    })
    .post(
      "/keys",
      async ({ request, route }) => {
        const denied = access(request, "admin", route);
        if (denied) return denied;
        const parsed = await jsonBody(
          request,
          newKeySchema,
          "key",
          '{"agents": ["code-review-bot"], "users": ["team-a-*"], "tier": "pro"}',
        );
        if ("error" in parsed) return parsed.error;
        try {
          // The secret is in this answer only; the chain event names the key, never the secret.
          const created = await rt.keys.create(parsed.data, actorOf(request));
          return Response.json(created, { status: 201, headers: { "cache-control": "no-store" } });
        } catch (error) {
          rt.log.error(`creating a proxy key through the audit API failed: ${errorMessage(error)}`);
          return unavailable("record a new key (nothing was created)");
        }
      },
      { parse: "none" },
    )
    .delete("/keys/:id", async ({ request, params, route }) => {
      const denied = access(request, "admin", route);
      if (denied) return denied;
      let revoked: Awaited<ReturnType<Runtime["keys"]["revoke"]>>;
      try {
        revoked = await rt.keys.revoke(params.id, actorOf(request));
      } catch (error) {
        rt.log.error(`revoking a proxy key through the audit API failed: ${errorMessage(error)}`);
        return unavailable("record the revocation (the key was not revoked)");
      }
      if (!revoked) return apiError("not_found", `No proxy key has id '${params.id}'; GET /audit/keys lists them.`);
      return Response.json(revoked);
    });
}
