/**
 * Stages 2 and 3: who the call is from (the first principal an `authenticate` hook gives) and
 * what it claims (every plugin's `attribute`, merged in order), held to each other.
 */
import { verifyIdentity } from "./identity.ts";
import { emptyAttribution, type Attribution, type CallContext, type Principal } from "./context.ts";
import type { Runtime } from "./runtime.ts";
import { runFirst, runMerge } from "./hooks.ts";
import { checkTags } from "../tags.ts";

export async function authenticate(ctx: CallContext, rt: Runtime) {
  const found = await runFirst(rt.plugins, "authenticate", (plugin) => plugin.authenticate && (() => plugin.authenticate!(ctx)), "refuse");
  return found?.value ?? null;
}

/** Every plugin's attribution merged in order; the merged tags held to `rt.tags` (../tags.ts): 400 beyond. */
export async function attribute(ctx: CallContext, rt: Runtime): Promise<Attribution> {
  const merged = await runMerge(
    rt.plugins,
    "attribute",
    emptyAttribution,
    (plugin, merged) => plugin.attribute && (() => plugin.attribute!({ ...ctx, attribution: merged })),
    "refuse",
  );
  if (Object.keys(merged.tags).length === 0) return merged;
  return { ...merged, tags: checkTags(merged.tags, rt.tags, (key) => `The tag '${key}' (an X-Attr-Tag-${key} header or a plugin's tags)`) };
}

/**
 * Holds the claimed identity to what the principal verified (./identity.ts): refuses with 403, or
 * keeps the claim in `delegation`; from then on the call's own credential never goes upstream.
 */
export function holdToPrincipal(ctx: CallContext, principal: Principal): void {
  const verified = verifyIdentity(ctx.attribution, principal);
  ctx.attribution = verified.attribution;
  ctx.delegation = verified.delegation;
  ctx.unverified = verified.unverified;
}
