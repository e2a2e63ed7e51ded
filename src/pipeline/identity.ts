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
 * - Tags the credential fixes (`principal.tags`) are always the call's; a different value claimed
 *   for one (an `X-Attr-Tag-<Key>` header, a plugin) is refused with 403 or, with `onMismatch:
 *   "record"`, replaced by the fixed value and kept in `delegation.asserted.tags`. Other tags stay
 *   as sent and are named in `delegation.unverified` as `tag:<key>`.
 */
import { ProxyError } from "../errors.ts";
import { modelMatcher } from "../proxy/upstream.ts";
import { sortedTags } from "../tags.ts";
import type { Attribution, ContextField, IdentityField, Principal } from "./context.ts";

type Checked = IdentityField;
const noun: Record<Checked, string> = { agent_id: "agent", user_id: "user", task_context: "task" };
const howToAllow: Record<Checked, string> = {
  agent_id: "it fixes no agent",
  user_id: "it allows no user claims (a key needs --users GLOBS, or --users '*' for any user; a token, a user claim)",
  task_context: "",
};

export interface VerifiedIdentity {
  attribution: Attribution;
  /** JSON for the record's `delegation`, or null when there is nothing to say. */
  delegation: string | null;
  /** Fields kept as the client sent them, which the credential does not vouch for. */
  unverified: ContextField[];
}

export function verifyIdentity(claimed: Attribution, principal: Principal): VerifiedIdentity {
  const sources = claimed.sources;
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
    const source = sources[field];
    const header = source && "header" in source ? source.header : null;
    if (principal.onMismatch !== "record" && !(source && "body" in source)) {
      const may =
        fixed !== null
          ? `it is restricted to ${noun[field]} '${fixed}'`
          : allowed && allowed.length > 0
            ? `it is restricted to ${noun[field]} ${allowed.map((p) => `'${p}'`).join(", ")}`
            : howToAllow[field];
      throw new ProxyError(
        "forbidden",
        `${principal.keyId} may not act as ${noun[field]} '${claim}'${header ? ` (claimed by the ${header} header)` : ""}: ${may}. ` +
          `Send ${header ? `a matching ${header} header` : "a claim it allows"}, or none.`,
      );
    }
    asserted[field] = claim!;
    attribution[field] = fixed;
  }
  for (const field of ["session_id", "parent_agent_id"] as const) if (claimed[field] !== null) unverified.push(field);
  const tags = verifyTags(claimed.tags, principal);
  attribution.tags = tags.tags;
  const detail: Record<string, unknown> = {};
  if (principal.act !== undefined) detail.act = principal.act;
  if (Object.keys(asserted).length > 0 || tags.asserted)
    detail.asserted = { ...asserted, ...(tags.asserted ? { tags: tags.asserted } : {}) };
  if (unverified.length > 0 || tags.unverified.length > 0) detail.unverified = [...unverified, ...tags.unverified];
  return { attribution, delegation: Object.keys(detail).length > 0 ? JSON.stringify(detail) : null, unverified };
}

/** The call's tags held to those the principal fixes (see the header). */
function verifyTags(
  claimed: Readonly<Record<string, string>>,
  principal: Principal,
): { tags: Record<string, string>; asserted: Record<string, string> | null; unverified: string[] } {
  const fixed = principal.tags ?? {};
  const tags: Record<string, string> = { ...claimed, ...fixed };
  let asserted: Record<string, string> | null = null;
  for (const [key, value] of Object.entries(fixed)) {
    const claim = claimed[key];
    if (claim === undefined || claim === value) continue;
    if (principal.onMismatch !== "record")
      throw new ProxyError(
        "forbidden",
        `${principal.keyId} may not tag calls ${key}='${claim}': it fixes the tag ${key} to '${value}'. ` +
          `Send a matching X-Attr-Tag-${key} header, or none.`,
      );
    (asserted ??= {})[key] = claim;
  }
  const unverified = Object.keys(claimed)
    .filter((key) => !(key in fixed))
    .map((key) => `tag:${key}`);
  return { tags: sortedTags(tags), asserted, unverified };
}
