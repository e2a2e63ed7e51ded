/**
 * Between stages 3 and 4: hold the identity a call claims (headers, body) against what its
 * principal verified.
 *
 * - Identity fields — `agent_id`, `user_id` — are only ever what the credential vouches for: a
 *   value it fixes (`identity`) or a claim matching its globs (`agents`, `users`). A credential
 *   with neither for a field allows **no** claim of it (a key made without `--users` acts for no
 *   user; `--users '*'` opts in to any). A claim outside that is refused with 403 naming the
 *   identity, or — with `onMismatch: "record"` — replaced by the verified value (or null) and kept
 *   in `delegation.asserted`. A user the credential does not allow that came only from the body
 *   (OpenAI `user`, Anthropic `metadata.user_id`, which SDKs and Claude Code fill in on their own)
 *   is not a claim to refuse: it is always kept in `delegation.asserted` and the record's user is
 *   the verified one (or null). Explicit headers are refused as above, naming the header.
 * - `task_context` is vouched for only when the credential fixes it (a token's task claim); a
 *   different claim is then handled as above.
 * - Context fields the credential does not vouch for — a task it does not fix, `session_id`,
 *   `parent_agent_id` — stay in the record as the client sent them and are named in
 *   `delegation.unverified`; limiters must not let them select another identity's limits.
 *   (`trace_id` is a correlation id, not a claim about anyone, and is not listed.)
 */
import { ProxyError } from "../errors.ts";
import { headerText, normalizeIdentifier } from "../identifiers.ts";
import { modelMatcher } from "../proxy/upstream.ts";
import { bodyIdentity } from "./body-identity.ts";
import type { Attribution, ContextField, Endpoint, Principal } from "./context.ts";

type Checked = "agent_id" | "user_id" | "task_context";
const noun: Record<Checked, string> = { agent_id: "agent", user_id: "user", task_context: "task" };
const header: Record<Checked, string> = { agent_id: "X-Agent-ID", user_id: "X-User-ID", task_context: "X-Task-Context" };
const howToAllow: Record<Checked, string> = {
  agent_id: "it fixes no agent",
  user_id: "it allows no user claims (a key needs --users GLOBS, or --users '*' for any user; a token, a user claim)",
  task_context: "",
};

/** Where a claim came from: the field's header, or (user only) the request body. */
export type ClaimSources = Partial<Record<Checked, "header" | "body">>;

/**
 * Which claims came from their header and whether the user came only from the body's user field.
 * Reads headers and body as header-attribution does (UTF-8 headers; the body's user as
 * `bodyIdentity` reduces it, in NFC), so a Claude Code body user is known as the body's.
 */
export function claimSourcesOf(claimed: Attribution, headers: Headers, body: Record<string, unknown> | null, endpoint: Endpoint): ClaimSources {
  const sources: ClaimSources = {};
  for (const field of ["agent_id", "user_id", "task_context"] as const) {
    if (claimed[field] !== null && headerText(headers, header[field])?.trim()) sources[field] = "header";
  }
  const bodyUser = bodyIdentity(body, endpoint)?.user;
  if (!sources.user_id && claimed.user_id !== null && bodyUser !== undefined && normalizeIdentifier(bodyUser) === claimed.user_id) sources.user_id = "body";
  return sources;
}

const bodyField = "the body's user field (OpenAI `user`, Anthropic `metadata.user_id`)";

export interface VerifiedIdentity {
  attribution: Attribution;
  /** JSON for the record's `delegation`, or null when there is nothing to say. */
  delegation: string | null;
  /** Fields kept as the client sent them, which the credential does not vouch for. */
  unverified: ContextField[];
}

export function verifyIdentity(claimed: Attribution, principal: Principal, sources: ClaimSources = {}): VerifiedIdentity {
  const attribution: Attribution = { ...claimed, attribution: "verified" };
  const asserted: Partial<Record<Checked, string>> = {};
  const unverified: ContextField[] = [];
  const patterns: Record<Checked, readonly string[] | undefined> = {
    agent_id: principal.agents,
    user_id: principal.users,
    task_context: undefined,
  };
  for (const field of ["agent_id", "user_id", "task_context"] as const) {
    const claim = claimed[field];
    const fixed = principal.identity?.[field] ?? null;
    const allowed = patterns[field];
    if (field === "task_context" && fixed === null) {
      if (claim !== null) unverified.push(field);
      continue;
    }
    let ok: boolean;
    if (fixed !== null) ok = claim === null || claim === fixed;
    else ok = claim === null || (allowed !== undefined && modelMatcher(allowed)(claim));
    if (ok) {
      attribution[field] = fixed ?? claim;
      continue;
    }
    // A body user the credential does not allow is what the client's SDK says, not a claim to act as someone.
    if (principal.onMismatch !== "record" && sources[field] !== "body") {
      const may =
        fixed !== null
          ? `it is restricted to ${noun[field]} '${fixed}'`
          : allowed && allowed.length > 0
            ? `it is restricted to ${noun[field]} ${allowed.map((p) => `'${p}'`).join(", ")}`
            : howToAllow[field];
      throw new ProxyError(
        "forbidden",
        `${principal.keyId} may not act as ${noun[field]} '${claim}'${from(field, sources)}: ${may}. Send a matching ${header[field]} header, or none.`,
      );
    }
    asserted[field] = claim!;
    attribution[field] = fixed;
  }
  for (const field of ["session_id", "parent_agent_id"] as const) if (claimed[field] !== null) unverified.push(field);
  const detail: Record<string, unknown> = {};
  if (principal.act !== undefined) detail.act = principal.act;
  if (Object.keys(asserted).length > 0) detail.asserted = asserted;
  if (unverified.length > 0) detail.unverified = unverified;
  return { attribution, delegation: Object.keys(detail).length > 0 ? JSON.stringify(detail) : null, unverified };
}

function from(field: Checked, sources: ClaimSources): string {
  const source = sources[field];
  if (source === "header") return ` (claimed by the ${header[field]} header)`;
  return source === "body" ? ` (claimed by ${bodyField})` : "";
}
