/**
 * `/dashboard` on the proxy's port: the page and its assets (bundled into the binary at build time,
 * ./assets.ts), and the sign-in that turns an admin or auditor token into a browser session
 * (../server/sessions.ts). Everything the page shows it reads through the audit API, with the
 * session cookie and the dashboard's header; with no token configured (a loopback-only server)
 * there is no sign-in.
 *
 * Pages are served with a strict Content-Security-Policy: scripts, styles and connections from
 * this origin only, no inline script or style, no framing.
 */
import { Elysia } from "elysia";
import { z } from "zod";
import { ProxyError, toWireError } from "../errors.ts";
import { readBody } from "../proxy/body.ts";
import { apiError } from "../server/http.ts";
import { tokenMatcher, type AccessRefusal, type AccessToken } from "../server/roles.ts";
import { dashboardHeader, isSecure, type BrowserSessions } from "../server/sessions.ts";

export interface DashboardOptions {
  tokens: readonly AccessToken[];
  sessions: BrowserSessions;
  /** Failed sign-ins are refused audit API calls too (recorded in the trail, one event a minute). */
  noteRefusal: (refusal: AccessRefusal, request: Request) => void;
}

export const contentSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const pageHeaders = {
  "content-security-policy": contentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

type Assets = typeof import("./assets.ts").assets;
let loaded: Promise<Assets> | null = null;
/** Loaded on the first request: a proxy that never serves the dashboard never holds its bundle. */
const assets = () => (loaded ??= import("./assets.ts").then((module) => module.assets));

const serve = async (pick: (assets: Assets) => string, type: string) =>
  new Response(pick(await assets()), { headers: { ...pageHeaders, "content-type": type, "cache-control": "no-cache" } });

const signInSchema = z.object({ token: z.string().min(1).max(4096) }).strict();
const signInMaxBytes = 8192;

export function dashboardRoutes(options: DashboardOptions) {
  const { tokens, sessions } = options;
  const roleOf = tokenMatcher(tokens);
  const open = tokens.length === 0;
  const route = "/dashboard/session";
  return new Elysia()
    .get("/dashboard", () => serve((a) => a.html, "text/html; charset=utf-8"))
    .get("/dashboard/", () => serve((a) => a.html, "text/html; charset=utf-8"))
    .get("/dashboard/app.js", () => serve((a) => a.js, "text/javascript; charset=utf-8"))
    .get("/dashboard/app.css", () => serve((a) => a.css, "text/css; charset=utf-8"))
    .get(route, ({ request }) => {
      if (open) return Response.json({ sign_in: "none", role: "admin" });
      const session = sessions.lookup(request);
      return Response.json({ sign_in: "required", role: session?.role ?? null }, { headers: { "cache-control": "no-store" } });
    })
    .post(
      route,
      async ({ request }) => {
        if (request.headers.get(dashboardHeader) !== "1") {
          return apiError("forbidden", "Sign in from the dashboard page (its requests carry the X-Agent-Attr-Dashboard header).");
        }
        if (open)
          return apiError("no_sign_in", "This proxy has no access token configured (loopback only): the dashboard needs no sign-in.");
        // Anyone may call this: the body is read only up to what a token needs (8 KiB, 10 s), so a
        // huge one is refused (413) before it is held in memory.
        let body: unknown;
        try {
          body = JSON.parse(new TextDecoder().decode(await readBody(request, signInMaxBytes, 10_000)));
        } catch (error) {
          if (error instanceof ProxyError && error.code === "body_too_large")
            return apiError(
              "body_too_large",
              `A sign-in is {"token": "..."} with a token of at most 4096 characters: this body is over ${signInMaxBytes} bytes.`,
            );
          if (error instanceof ProxyError) return toWireError(error, "openai");
          body = null;
        }
        const parsed = signInSchema.safeParse(body);
        if (!parsed.success) return apiError("invalid_body", 'Send {"token": "<admin or auditor token>"} as JSON.');
        const match = roleOf(parsed.data.token);
        if (!match) {
          options.noteRefusal(
            { method: "POST", route, status: 401, reason: "unknown_token", required_role: "auditor", presented_role: null },
            request,
          );
          return apiError(
            "unauthorized",
            "That is not an admin or auditor token of this proxy (AGENT_ATTR_ADMIN_TOKEN, AGENT_ATTR_AUDITOR_TOKEN or the config's admin.tokens).",
          );
        }
        const { role, name } = match;
        const cookie = sessions.create(role, isSecure(request), name);
        return Response.json({ role }, { headers: { "set-cookie": cookie, "cache-control": "no-store" } });
      },
      { parse: "none" },
    )
    .delete(route, ({ request }) => Response.json({ role: null }, { headers: { "set-cookie": sessions.end(request, isSecure(request)) } }));
}
