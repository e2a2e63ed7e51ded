/**
 * Browser sessions of the audit API (the dashboard's sign-in). A signed-in browser holds a random
 * session id in an HttpOnly, SameSite=Strict cookie; the token it signed in with stays on the
 * server side (never in the page's JavaScript, a URL, localStorage or a log). Sessions live in this
 * process's memory: a restart signs everyone out. Each lasts at most `maxAgeMs` (default 8 h) and
 * ends after `idleMs` (default 30 min) without a request.
 *
 * A cookie is sent by the browser on its own, so it is honoured only on requests that also carry
 * the dashboard's header (`X-Agent-Attr-Dashboard: 1`): a page on another origin cannot add it
 * without a CORS preflight, which this server never approves (see ./cross-site.ts for the Origin
 * and Sec-Fetch-Site checks that apply as well).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Role, SessionLookup } from "./roles.ts";

export const sessionCookie = "agent_attr_session";
/** The header every dashboard request carries (a custom header: no cross-site page can send it unasked). */
export const dashboardHeader = "x-agent-attr-dashboard";

interface Session {
  role: Role;
  /** The signing-in token's name (AccessToken.name), for the actor of what the session does. */
  name?: string;
  expiresAt: number;
  lastUsed: number;
}

export interface SessionOptions {
  maxAgeMs?: number;
  idleMs?: number;
  /** At most this many sessions; the least recently used is ended first. */
  max?: number;
  now?: () => number;
}

const digest = (id: string) => createHash("sha256").update(id).digest("hex");

export function cookieOf(request: Request, name: string): string | null {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const at = part.indexOf("=");
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return null;
}

export class BrowserSessions {
  /** By SHA-256 of the id, so the map never holds a usable id. Insertion order = least recently used first. */
  private readonly sessions = new Map<string, Session>();
  private readonly maxAgeMs: number;
  private readonly idleMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(options: SessionOptions = {}) {
    this.maxAgeMs = options.maxAgeMs ?? 8 * 3_600_000;
    this.idleMs = options.idleMs ?? 30 * 60_000;
    this.max = options.max ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** A new session for `role` (signed in with the token named `name`); returns its Set-Cookie header value. */
  create(role: Role, secure: boolean, name?: string): string {
    const id = randomBytes(32).toString("base64url");
    const now = this.now();
    this.sessions.set(digest(id), { role, ...(name === undefined ? {} : { name }), expiresAt: now + this.maxAgeMs, lastUsed: now });
    while (this.sessions.size > this.max) this.sessions.delete(this.sessions.keys().next().value!);
    return `${sessionCookie}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.floor(this.maxAgeMs / 1000)}${secure ? "; Secure" : ""}`;
  }

  /** The role of the request's session; null when it carries no session cookie. */
  lookup(request: Request): SessionLookup | null {
    const id = cookieOf(request, sessionCookie);
    if (!id) return null;
    if (request.headers.get(dashboardHeader) !== "1") return { role: null, reason: "cross_site" };
    const key = digest(id);
    const session = this.sessions.get(key);
    const now = this.now();
    if (!session || session.expiresAt <= now || session.lastUsed + this.idleMs <= now) {
      this.sessions.delete(key);
      return { role: null, reason: "unknown_session" };
    }
    session.lastUsed = now;
    this.sessions.delete(key);
    this.sessions.set(key, session);
    return session.name === undefined ? { role: session.role } : { role: session.role, name: session.name };
  }

  /** Ends the request's session; returns the Set-Cookie value that clears the cookie. */
  end(request: Request, secure: boolean): string {
    const id = cookieOf(request, sessionCookie);
    if (id) this.sessions.delete(digest(id));
    return `${sessionCookie}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0${secure ? "; Secure" : ""}`;
  }
}

/** Whether the browser reached us over HTTPS (directly or through a proxy that says so): the cookie is then `Secure`. */
export const isSecure = (request: Request) =>
  new URL(request.url).protocol === "https:" || request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim() === "https";
