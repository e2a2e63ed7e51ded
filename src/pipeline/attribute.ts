/**
 * Stages 2 and 3: who the call is from (the first principal an `authenticate` hook gives) and
 * what it claims (every plugin's `attribute`, merged in order), held to each other.
 */
import { verifyIdentity } from "./identity.ts";
import { emptyAttribution, type Attribution, type CallContext, type Principal } from "./context.ts";
import type { Runtime } from "./runtime.ts";
import { isPromiseLike, runFirst, runMerge, type MaybePromise } from "./hooks.ts";
import { checkTags } from "../tags.ts";

/** The first principal an `authenticate` hook gives, or null (a promise only if a hook answered with one). */
export function authenticate(ctx: CallContext, rt: Runtime): MaybePromise<Principal | null> {
  const found = runFirst(rt.plugins, "authenticate", (plugin) => plugin.authenticate && (() => plugin.authenticate!(ctx)), "refuse");
  return isPromiseLike(found) ? found.then((first) => first?.value ?? null) : (found?.value ?? null);
}

/**
 * Every plugin's attribution merged in order; the merged tags held to `rt.tags` (../tags.ts): 400
 * beyond. A promise only if a hook answered with one.
 */
export function attribute(ctx: CallContext, rt: Runtime): MaybePromise<Attribution> {
  const merged = runMerge(
    rt.plugins,
    "attribute",
    emptyAttribution,
    (plugin) => plugin.attribute && ((merged: Attribution) => plugin.attribute!({ ...ctx, attribution: merged })),
    "refuse",
  );
  return isPromiseLike(merged) ? merged.then((all) => checkedTags(all, rt)) : checkedTags(merged, rt);
}

function checkedTags(merged: Attribution, rt: Runtime): Attribution {
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
