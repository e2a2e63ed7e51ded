/**
 * The HTTP surface beside the proxied endpoints (those are Bun-native routes, see
 * ./proxy-routes.ts): the audit API, the ops routes, plugin routes, and wire-format 404s for
 * anything else under /v1.
 */
import { timingSafeEqual } from "node:crypto";
import { Elysia } from "elysia";
import { ProxyError, toWireError } from "../errors.ts";
import { endpoints, wireOfPath } from "../pipeline/endpoints.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import { auditRoutes } from "./audit-routes.ts";
import { auditTrailRoutes } from "./audit-trail-routes.ts";

export interface AppOptions {
  /** Bearer token the audit API requires; without one the API is open (loopback-only server). */
  adminToken?: string;
}

export function createApp(rt: Runtime, options: AppOptions = {}) {
  const app = new Elysia();
  app.all("/v1/*", ({ request }) => unknownProxyRoute(request), { parse: "none" });
  app.get("/healthz", () => ({ status: "ok" }));
  app.get("/metrics", () => new Response(rt.metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } }));
  app.use(auditRoutes(rt, requireAdmin(options.adminToken)));
  app.use(auditTrailRoutes(rt, requireAdmin(options.adminToken)));
  for (const plugin of rt.plugins) plugin.routes?.(app);
  app.onError(({ code, request }) => {
    if (code === "NOT_FOUND") {
      return Response.json(
        { error: { message: `No route ${request.method} ${new URL(request.url).pathname}.`, type: "not_found_error", code: "not_found" } },
        { status: 404 },
      );
    }
  });
  return app;
}

function unknownProxyRoute(request: Request): Response {
  const path = new URL(request.url).pathname;
  const list = endpoints.map((e) => `${e.method} ${e.path}`).join(", ");
  const error = new ProxyError("not_found", `agent-attr does not proxy ${request.method} ${path}. Proxied endpoints: ${list}.`);
  return toWireError(error, wireOfPath(path));
}

/** A check for the audit API's bearer token (constant-time compare); null when none is configured. */
function requireAdmin(token: string | undefined): (request: Request) => Response | null {
  if (!token) return () => null;
  const expected = Buffer.from(token);
  return (request) => {
    const given = Buffer.from(request.headers.get("authorization")?.replace(/^Bearer\s+/i, "") ?? "");
    if (given.length === expected.length && timingSafeEqual(given, expected)) return null;
    return Response.json(
      { error: { message: "The audit API needs the admin token: send 'Authorization: Bearer <AGENT_ATTR_ADMIN_TOKEN>'.", type: "authentication_error", code: "unauthorized" } },
      { status: 401 },
    );
  };
}
