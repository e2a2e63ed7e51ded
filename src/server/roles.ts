/**
 * Who may use the audit API. Two roles: `admin` (everything) and `auditor` (read, export, verify;
 * never delete). Tokens come from AGENT_ATTR_ADMIN_TOKEN (admin), AGENT_ATTR_AUDITOR_TOKEN (auditor)
 * and the config's `admin.tokens`. With no token at all the API is open, which `startProxy` allows
 * only on a loopback address.
 *
 * Routes ask for the least role they need, naming their route pattern (refusals are recorded by it):
 * `const denied = access(request, "auditor", route); if (denied) return denied;`
 *
 * The token must come as `Authorization: Bearer <token>` (the scheme's name is case-insensitive,
 * RFC 9110 §11.1); a bare token in the header is refused like a wrong one.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { apiError } from "./http.ts";

export const roles = ["admin", "auditor"] as const;
export type Role = (typeof roles)[number];

export interface AccessToken {
  token: string;
  role: Role;
  /**
   * Who holds it, as audit-of-the-audit events name the actor (`api:admin:<name>`); never the
   * token. Absent for AGENT_ATTR_ADMIN_TOKEN and AGENT_ATTR_AUDITOR_TOKEN (`api:admin`, `api:auditor`).
   */
  name?: string;
}

/** A token holder's name in actors: a short label, no spaces or colons. */
const tokenName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, "a token's name is 1-64 letters, digits and . _ @ - (it names the actor in the trail)");

/** A check for one route: null lets the request through, otherwise the 401/403 to answer with. */
export type AccessGuard = (request: Request, needs: Role, route: string) => Response | null;

/**
 * Why a request was refused: no credential, an Authorization header without the Bearer scheme, a
 * token no one configured, too small a role; a dashboard session that is unknown or over, or a
 * session cookie without the dashboard's header (./sessions.ts).
 */
export const refusalReasons = ["no_token", "not_bearer", "unknown_token", "insufficient_role", "unknown_session", "cross_site"] as const;

/** A refused audit API call, as recorded in the trail: what was asked and with which role; never the token. */
export interface AccessRefusal {
  method: string;
  /** The route pattern (`/audit/user/:id`), never the path: a path can carry a user id. */
  route: string;
  status: 401 | 403;
  reason: (typeof refusalReasons)[number];
  required_role: Role;
  /** The role of the token sent, when it is a known token (a 403); null otherwise. */
  presented_role: Role | null;
}

/** `admin.tokens` in the config: the token itself, or the environment variable that holds it. */
export const adminTokenSchema = z.union([
  z
    .object({ token: z.string().min(16, "admin tokens must be at least 16 characters"), role: z.enum(roles), name: tokenName.optional() })
    .strict(),
  z.object({ tokenEnv: z.string().min(1), role: z.enum(roles), name: tokenName.optional() }).strict(),
]);
export type AdminTokenConfig = z.output<typeof adminTokenSchema>;

/** Audit tokens shorter than this are refused, wherever they come from. */
export const minTokenLength = 16;

function checked(token: string, source: string): string {
  if (token.length < minTokenLength) {
    throw new Error(`${source} is shorter than ${minTokenLength} characters; set it to a long random token (e.g. 'openssl rand -hex 32').`);
  }
  return token;
}

/**
 * The tokens in force: the two environment variables first, then the config's list. A config
 * token is named by its `name`, else by its `tokenEnv`, else by its place (`admin.tokens[2]`).
 */
export function resolveAccessTokens(configured: readonly AdminTokenConfig[], env: Record<string, string | undefined>): AccessToken[] {
  const tokens: AccessToken[] = [];
  if (env.AGENT_ATTR_ADMIN_TOKEN) tokens.push({ token: checked(env.AGENT_ATTR_ADMIN_TOKEN, "AGENT_ATTR_ADMIN_TOKEN"), role: "admin" });
  if (env.AGENT_ATTR_AUDITOR_TOKEN)
    tokens.push({ token: checked(env.AGENT_ATTR_AUDITOR_TOKEN, "AGENT_ATTR_AUDITOR_TOKEN"), role: "auditor" });
  const names = new Set<string>();
  for (const [i, entry] of configured.entries()) {
    let token: string;
    if ("token" in entry) token = entry.token;
    else {
      const value = env[entry.tokenEnv];
      if (!value)
        throw new Error(`admin.tokens names the environment variable ${entry.tokenEnv}, but it is not set; set it or remove the entry.`);
      token = checked(value, entry.tokenEnv);
    }
    const name = entry.name ?? ("tokenEnv" in entry ? entry.tokenEnv : `admin.tokens[${i}]`);
    if (name === token)
      throw new Error(`admin.tokens[${i}]: its name is the token itself; a name is recorded in the trail, so choose another.`);
    if (names.has(name))
      throw new Error(`admin.tokens: two tokens are named '${name}'; give each its own name (it names the actor in the trail).`);
    names.add(name);
    tokens.push({ token, role: entry.role, name });
  }
  return tokens;
}

const grants: Record<Role, readonly Role[]> = { admin: ["admin", "auditor"], auditor: ["auditor"] };

const digest = (value: string) => createHash("sha256").update(value).digest();

/** Compares two equal-length buffers in constant time (`timingSafeEqual`; injectable for tests). */
export type Compare = (a: Buffer, b: Buffer) => boolean;

type Presented =
  | { role: Role; name?: string; via: "bearer" | "session" }
  | { role: null; reason: Exclude<AccessRefusal["reason"], "insufficient_role"> };

/** What a dashboard session cookie (./sessions.ts) says about a request: its role (and the signing-in token's name), or why it has none. */
export type SessionLookup = { role: Role; name?: string } | { role: null; reason: "unknown_session" | "cross_site" };

export type SessionResolver = (request: Request) => SessionLookup | null;

/**
 * The role of the request's bearer token, or why there is none. Both sides are SHA-256 digests,
 * so `compare` always gets 32 bytes against 32: neither a token's length nor its content shows in
 * the timing.
 */
function roleMatcher(
  tokens: readonly AccessToken[],
  compare: Compare = timingSafeEqual,
  sessions?: SessionResolver,
): (request: Request) => Presented {
  const roleOfToken = tokenMatcher(tokens, compare);
  return (request) => {
    const header = request.headers.get("authorization");
    if (header === null) {
      const session = sessions?.(request) ?? null;
      if (session === null) return { role: null, reason: "no_token" };
      return session.role ? { role: session.role, name: session.name, via: "session" } : session;
    }
    const bearer = /^Bearer\s+(\S.*)$/i.exec(header);
    if (!bearer) return { role: null, reason: "not_bearer" };
    const match = roleOfToken(bearer[1]!);
    return match ? { ...match, via: "bearer" } : { role: null, reason: "unknown_token" };
  };
}

/** The role and name of a token (the bearer token, or the one a dashboard sign-in presents); null if no one configured it. */
export function tokenMatcher(
  tokens: readonly AccessToken[],
  compare: Compare = timingSafeEqual,
): (token: string) => { role: Role; name?: string } | null {
  const known = tokens.map((t) => ({
    digest: digest(t.token),
    match: t.name === undefined ? { role: t.role } : { role: t.role, name: t.name },
  }));
  return (token) => {
    const given = digest(token);
    let match: { role: Role; name?: string } | null = null;
    // Compare against every token (no early exit), each in constant time.
    for (const candidate of known) {
      if (compare(given, candidate.digest) && match === null) match = candidate.match;
    }
    return match;
  };
}

/**
 * Who a request acts as, for audit-of-the-audit events: `api:admin`, `api:auditor` (a bearer
 * token), `dashboard:admin`, `dashboard:auditor` (a signed-in browser), then `:<name>` for a
 * token of the config's `admin.tokens` (`api:admin:alice`, `dashboard:auditor:SOC_AUDITOR_TOKEN`),
 * or `api:open` when no token is configured. Never the token itself.
 */
export function accessActor(tokens: readonly AccessToken[], sessions?: SessionResolver): (request: Request) => string {
  if (tokens.length === 0) return () => "api:open";
  const roleOf = roleMatcher(tokens, timingSafeEqual, sessions);
  return (request) => {
    const presented = roleOf(request);
    if (!presented.role) return "api:unknown";
    return `${presented.via === "session" ? "dashboard" : "api"}:${presented.role}${presented.name ? `:${presented.name}` : ""}`;
  };
}

const howToSend =
  "send 'Authorization: Bearer <token>' with AGENT_ATTR_ADMIN_TOKEN, AGENT_ATTR_AUDITOR_TOKEN or a token from the config's admin.tokens.";

/** `onRefusal` hears of every 401 and 403 (the app records them in the trail, see ./access-denials.ts). */
export function accessGuard(
  tokens: readonly AccessToken[],
  compare: Compare = timingSafeEqual,
  onRefusal: (refusal: AccessRefusal, request: Request) => void = () => {},
  sessions?: SessionResolver,
): AccessGuard {
  if (tokens.length === 0) return () => null;
  const roleOf = roleMatcher(tokens, compare, sessions);
  return (request, needs, route) => {
    const presented = roleOf(request);
    const refuse = (status: 401 | 403, reason: AccessRefusal["reason"], answer: Response) => {
      onRefusal({ method: request.method, route, status, reason, required_role: needs, presented_role: presented.role }, request);
      return answer;
    };
    if (presented.role === null) {
      if (presented.reason === "cross_site") {
        const message =
          "A dashboard session cookie is honoured only on the dashboard's own requests (with its X-Agent-Attr-Dashboard header).";
        return refuse(403, presented.reason, apiError("forbidden", message));
      }
      const message =
        presented.reason === "not_bearer"
          ? `The Authorization header sent has no 'Bearer' scheme: ${howToSend}`
          : presented.reason === "unknown_session"
            ? "The dashboard session has ended (8 hours at most, 30 minutes idle, or the proxy restarted); sign in again."
            : `The audit API needs a token: ${howToSend}`;
      return refuse(401, presented.reason, apiError("unauthorized", message));
    }
    if (!grants[presented.role].includes(needs)) {
      const message = `This route needs the ${needs} role; the token sent has the ${presented.role} role.`;
      return refuse(403, "insufficient_role", apiError("forbidden", message));
    }
    return null;
  };
}
