/**
 * The consents over the audit API: list and read them (auditor), grant and withdraw them (admin).
 * Reads are chain events like every audit query; granting and withdrawing are their own events
 * (`consent_granted`, `consent_withdrawn`), naming the caller's actor.
 */
import { Elysia } from "elysia";
import { z } from "zod";
import { consentFilterSchema, newConsentSchema } from "../store/consents.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import { errorMessage } from "../errors.ts";
import { filterNames } from "../store/filters.ts";
import { recorded } from "./audit-routes.ts";
import { apiError, invalid, jsonBody, queryOf } from "./http.ts";
import type { AccessGuard } from "./roles.ts";

const unavailable = (what: string) => apiError("audit_unavailable", `The audit trail cannot ${what} right now; retry shortly.`);
const notFound = (id: string) => apiError("not_found", `No consent has id '${id}'; GET /audit/consents lists them.`);

export function auditConsentRoutes(rt: Runtime, access: AccessGuard, actorOf: (request: Request) => string = () => "api") {
  return new Elysia({ prefix: "/audit" })
    .get("/consents", async ({ request, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const parsed = consentFilterSchema.safeParse(queryOf(request));
      if (!parsed.success) return invalid("query", parsed.error);
      const consents = await rt.consents.list(parsed.data);
      return recorded(rt, actorOf(request), route, filterNames(parsed.data, []), consents.length, Response.json({ consents }));
    })
    .get("/consents/:id", async ({ request, params, route }) => {
      const denied = access(request, "auditor", route);
      if (denied) return denied;
      const consent = await rt.consents.find(params.id);
      return recorded(rt, actorOf(request), route, ["id"], consent ? 1 : 0, consent ? Response.json(consent) : notFound(params.id));
    })
    .post(
      "/consents",
      async ({ request, route }) => {
        const denied = access(request, "admin", route);
        if (denied) return denied;
        const parsed = await jsonBody(
          request,
          newConsentSchema,
          "consent",
          '{"user": "alice", "agents": ["code-review-*"], "purpose": "PR review", "lawful_basis": "consent"}',
        );
        if ("error" in parsed) return parsed.error;
        try {
          return Response.json(await rt.consents.grant(parsed.data, actorOf(request)), { status: 201 });
        } catch (error) {
          rt.log.error(`granting a consent through the audit API failed: ${errorMessage(error)}`);
          return unavailable("record the consent (nothing was granted)");
        }
      },
      { parse: "none" },
    )
    .delete("/consents/:id", async ({ request, params, route }) => {
      const denied = access(request, "admin", route);
      if (denied) return denied;
      try {
        const consent = await rt.consents.revoke(params.id, actorOf(request));
        return consent ? Response.json(consent) : notFound(params.id);
      } catch (error) {
        rt.log.error(`withdrawing a consent through the audit API failed: ${errorMessage(error)}`);
        return unavailable("record the withdrawal (the consent was not withdrawn)");
      }
    });
}
