/**
 * Between stages 3 and 4: hold the identity a call claims (headers, body) against what its
 * principal verified. A key or token fixes some fields (`identity`) and restricts others
 * (`agents`, `users` globs); a claim outside that is refused with 403 naming the identity, or —
 * with `onMismatch: "record"` — replaced by the verified value and kept in `delegation.asserted`.
 */
import { ProxyError } from "../errors.ts";
import { modelMatcher } from "../proxy/upstream.ts";
import type { Attribution, Principal } from "./context.ts";

type Checked = "agent_id" | "user_id" | "task_context";
const noun: Record<Checked, string> = { agent_id: "agent", user_id: "user", task_context: "task" };
const header: Record<Checked, string> = { agent_id: "X-Agent-ID", user_id: "X-User-ID", task_context: "X-Task-Context" };

export interface VerifiedIdentity {
  attribution: Attribution;
  /** JSON for the record's `delegation`, or null when there is nothing to say. */
  delegation: string | null;
}

export function verifyIdentity(claimed: Attribution, principal: Principal): VerifiedIdentity {
  const attribution: Attribution = { ...claimed, attribution: "verified" };
  const asserted: Partial<Record<Checked, string>> = {};
  const patterns: Record<Checked, readonly string[] | undefined> = {
    agent_id: principal.agents,
    user_id: principal.users,
    task_context: undefined,
  };
  for (const field of ["agent_id", "user_id", "task_context"] as const) {
    const claim = claimed[field];
    const fixed = principal.identity?.[field] ?? null;
    const allowed = patterns[field];
    let ok: boolean;
    if (fixed !== null) ok = claim === null || claim === fixed;
    else ok = claim === null || !allowed || modelMatcher(allowed)(claim);
    if (ok) {
      attribution[field] = fixed ?? claim;
      continue;
    }
    if (principal.onMismatch !== "record") {
      const may = fixed !== null ? `'${fixed}'` : (allowed ?? []).map((p) => `'${p}'`).join(", ");
      throw new ProxyError(
        "forbidden",
        `${principal.keyId} may not act as ${noun[field]} '${claim}': it is restricted to ${noun[field]} ${may}. Send a matching ${header[field]} header, or none.`,
      );
    }
    asserted[field] = claim!;
    attribution[field] = fixed;
  }
  const detail: Record<string, unknown> = {};
  if (principal.act !== undefined) detail.act = principal.act;
  if (Object.keys(asserted).length > 0) detail.asserted = asserted;
  return { attribution, delegation: Object.keys(detail).length > 0 ? JSON.stringify(detail) : null };
}
