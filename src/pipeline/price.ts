/**
 * Stage 7, price: the first plugin whose `price` hook returns a quote prices the call. A call no
 * plugin can price keeps `cost_usd: null` and the log says so once per model — never a silent $0.
 */
import type { Usage } from "../trail/record.ts";
import type { PriceQuote, PriceRequest } from "../plugin.ts";
import type { CallContext } from "./context.ts";
import type { RoutedProvider, Runtime } from "./runtime.ts";
import { isPromiseLike, runFirst, type MaybePromise } from "./hooks.ts";

/**
 * Prices `usage` of this call as served by `provider` (prices in force at the call's start). A
 * promise only if a price hook answered with one.
 */
export function priceUsage(
  ctx: CallContext,
  provider: RoutedProvider,
  usage: Usage,
  responseModel: string | null,
  rt: Runtime,
): MaybePromise<PriceQuote | null> {
  const at = new Date(ctx.startedAt);
  return priceCall({ ctx, provider: provider.plugin, pricing: provider.adapter.pricing, model: ctx.model, responseModel, usage, at }, rt);
}

const warned = new WeakMap<Runtime, Set<string>>();

/** The first quote a price hook gives (hooks that throw are logged); null, and a warning once, if none. */
export function priceCall(call: PriceRequest, rt: Runtime): MaybePromise<PriceQuote | null> {
  const found = runFirst(rt.plugins, "price", (plugin) => plugin.price && (() => plugin.price!(call)), { log: rt.log });
  if (isPromiseLike(found)) return found.then((first) => quoted(first, call, rt));
  return quoted(found, call, rt);
}

function quoted(found: { value: PriceQuote } | null, call: PriceRequest, rt: Runtime): PriceQuote | null {
  if (found) return found.value;
  warnUnpriced(call, rt);
  return null;
}

function warnUnpriced(call: PriceRequest, rt: Runtime): void {
  // Keyed by the requested model: the limit stage (no response yet) and the final record agree.
  const key = `${call.provider}/${call.model ?? call.responseModel ?? "(no model)"}`;
  let seen = warned.get(rt);
  if (!seen) warned.set(rt, (seen = new Set()));
  if (seen.has(key) || seen.size > 10_000) return;
  seen.add(key);
  rt.log.warn(
    `no price is known for ${key}: its calls are recorded with cost_usd null (unpriced); price it with pricing({ models: { ... } }) in the config`,
  );
}

/** The record's money fields from a quote: the exact nano-dollar integer and its USD reading. */
export function costFields(quote: PriceQuote | null) {
  const raw = quote?.cost_nano_usd ?? null;
  const nano = raw !== null && Number.isFinite(raw) && raw >= 0 ? Math.round(raw) : null;
  return { cost_nano_usd: nano, cost_usd: nano === null ? null : nano / 1e9, price_source: quote?.price_source ?? null };
}

/** A usage worth pricing: at least one count known. */
export function hasUsage(usage: Usage | null): usage is Usage {
  return usage !== null && (usage.input_tokens !== null || usage.output_tokens !== null);
}
