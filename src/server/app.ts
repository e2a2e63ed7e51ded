/**
 * The HTTP surface beside the proxied endpoints (those are Bun-native routes, see
 * ./proxy-routes.ts, which serve everything under /v1 on a running server): the audit API, the ops
 * routes, plugin routes, and a wire-format 404 for /v1 paths reached through `app.handle` alone.
 */
import { Elysia } from "elysia";
import { ProxyError, apiError, toWireError } from "../errors.ts";
import { endpoints, wireOfPath } from "../pipeline/endpoints.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import { auditRoutes } from "./audit-routes.ts";
import { auditTrailRoutes } from "./audit-trail-routes.ts";
import { openapiDocument } from "./openapi.ts";
import { AccessDenials } from "./access-denials.ts";
import { accessActor, accessGuard, type AccessRefusal, type AccessToken } from "./roles.ts";
import { auditDashboardRoutes } from "./audit-dashboard-routes.ts";
import { auditConsentRoutes } from "./audit-consent-routes.ts";
import { crossSiteRefusal } from "./cross-site.ts";
import { BrowserSessions } from "./sessions.ts";
import { dashboardRoutes } from "../dashboard/routes.ts";

export interface AppOptions {
  /** Tokens the audit API accepts, with their roles; with none the API is open (loopback-only server). */
  tokens?: readonly AccessToken[];
  /** Where refused audit API calls are counted (the server closes it on shutdown); default: a new one. */
  denials?: AccessDenials;
  /** The client's address, for the record of a refused call (the server knows it; `app.handle` does not). */
  clientAddress?: (request: Request) => string | null;
  /** Signed-in dashboard browsers (default: a new, empty set). */
  sessions?: BrowserSessions;
  /** Serve `/dashboard` (default true; the config's `dashboard.enabled`). */
  dashboard?: boolean;
}

/** The paths a browser may be tricked into calling: the audit API and the dashboard (./cross-site.ts). */
const browserFacing = (request: Request) => {
  const path = new URL(request.url).pathname;
  return path.startsWith("/audit/") || path === "/dashboard" || path.startsWith("/dashboard/");
};

/** Refused audit API calls go to the primary store's trail (one event a minute, see ./access-denials.ts). */
export function accessDenials(rt: Runtime): AccessDenials {
  return new AccessDenials(async (event) => rt.trail.recordEvent(event), rt.log.error);
}

export function createApp(rt: Runtime, options: AppOptions = {}) {
  const app = new Elysia();
  app.all("/v1/*", ({ request }) => unknownProxyRoute(request), { parse: "none" });
  app.get("/healthz", () => ({ status: "ok" }));
  app.get("/metrics", () => new Response(rt.metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } }));
  app.get("/openapi.json", () => Response.json(openapiDocument()));
  const tokens = options.tokens ?? [];
  app.onRequest(({ request }) =>
    browserFacing(request) ? (crossSiteRefusal(request, { open: tokens.length === 0 }) ?? undefined) : undefined,
  );
  const denials = options.denials ?? accessDenials(rt);
  const clientAddress = options.clientAddress ?? (() => null);
  const sessions = options.sessions ?? new BrowserSessions();
  const session = (request: Request) => sessions.lookup(request);
  const noteRefusal = (refusal: AccessRefusal, request: Request) => denials.note(refusal, clientAddress(request));
  const access = accessGuard(tokens, undefined, noteRefusal, session);
  const actorOf = accessActor(tokens, session);
  app.use(auditRoutes(rt, access, actorOf));
  app.use(auditTrailRoutes(rt, access, actorOf));
  app.use(auditDashboardRoutes(rt, access, actorOf));
  app.use(auditConsentRoutes(rt, access, actorOf));
  if (options.dashboard ?? true) app.use(dashboardRoutes({ tokens, sessions, noteRefusal }));
  for (const plugin of rt.plugins) plugin.routes?.(app);
  app.onError(({ code, request }) => {
    if (code === "NOT_FOUND") {
      return apiError("not_found", `No route ${request.method} ${new URL(request.url).pathname}.`);
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
