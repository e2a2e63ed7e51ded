/**
 * The HTTP surface beside the proxied endpoints (those are Bun-native routes, see
 * ./proxy-routes.ts): the audit API, the ops routes, plugin routes, and wire-format 404s for
 * anything else under /v1.
 */
import { Elysia } from "elysia";
import { ProxyError, toWireError } from "../errors.ts";
import { endpoints, wireOfPath } from "../pipeline/endpoints.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import { auditRoutes } from "./audit-routes.ts";
import { auditTrailRoutes } from "./audit-trail-routes.ts";
import { openapiDocument } from "./openapi.ts";
import { accessActor, accessGuard, type AccessToken } from "./roles.ts";

export interface AppOptions {
  /** Tokens the audit API accepts, with their roles; with none the API is open (loopback-only server). */
  tokens?: readonly AccessToken[];
}

export function createApp(rt: Runtime, options: AppOptions = {}) {
  const app = new Elysia();
  app.all("/v1/*", ({ request }) => unknownProxyRoute(request), { parse: "none" });
  app.get("/healthz", () => ({ status: "ok" }));
  app.get("/metrics", () => new Response(rt.metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } }));
  app.get("/openapi.json", () => Response.json(openapiDocument()));
  const access = accessGuard(options.tokens ?? []);
  const actorOf = accessActor(options.tokens ?? []);
  app.use(auditRoutes(rt, access, actorOf));
  app.use(auditTrailRoutes(rt, access, actorOf));
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
  const list = [...new Set(endpoints.map((e) => `${e.method} ${e.path}`))].join(", ");
  const error = new ProxyError("not_found", `agent-attr does not proxy ${request.method} ${path}. Proxied endpoints: ${list}.`);
  return toWireError(error, wireOfPath(path));
}
