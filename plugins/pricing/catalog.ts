/**
 * Prices from the bundled data of `@pydantic/genai-prices` (no network at run time). Looking a
 * model up in the catalog costs ~30 µs, so lookups are cached per (provider, model); the price
 * that applies is then resolved per call (prices can change by date or time of day, and tiered
 * prices depend on the call's input size).
 */
import { calcPrice, type ModelInfo, type ModelPrice, type TieredPrices } from "@pydantic/genai-prices";
import type { Usage } from "agent-attr";
import type { Rates } from "./rates.ts";

export interface CatalogEntry {
  provider: string;
  model: ModelInfo;
  /** `<provider>/<model id>`, as a price source names it (made once per entry, not per call). */
  name: string;
}

const maxCached = 10_000;
const cache = new Map<string, CatalogEntry | null>();

/** The catalog's entry for a model, optionally within one provider; null when unknown. */
export function lookup(model: string, provider: string | undefined): CatalogEntry | null {
  const key = `${provider ?? ""}\u0000${model}`;
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  const found = calcPrice({ input_tokens: 0, output_tokens: 0 }, model, provider ? { providerId: provider } : {});
  const entry = found ? { provider: found.provider.id, model: found.model, name: `${found.provider.id}/${found.model.id}` } : null;
  if (cache.size >= maxCached) cache.clear();
  cache.set(key, entry);
  return entry;
}

/** The model's prices in force at `at` (the library's rule: the last matching constraint wins). */
export function pricesAt(model: ModelInfo, at: Date): ModelPrice {
  if (!Array.isArray(model.prices)) return model.prices;
  for (let i = model.prices.length - 1; i >= 0; i--) {
    const { constraint, prices } = model.prices[i]!;
    if (constraint === undefined) return prices;
    if (constraint.type === "start_date" && at >= new Date(constraint.start_date)) return prices;
    if (constraint.type === "time_of_date" && inTimeWindow(at, constraint.start_time, constraint.end_time)) return prices;
  }
  return model.prices[0]!.prices;
}

function secondsOfDay(time: string): number {
  const match = /^(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/.exec(time);
  if (!match) throw new Error(`unreadable time of day '${time}' in the price data`);
  const [, h, m, s, zone] = match;
  let offset = 0;
  if (zone && zone !== "Z") offset = (zone[0] === "-" ? -1 : 1) * (Number(zone.slice(1, 3)) * 3600 + Number(zone.slice(4, 6)) * 60);
  return (Number(h) * 3600 + Number(m) * 60 + Number(s ?? 0) - offset + 86_400) % 86_400;
}

function inTimeWindow(at: Date, start: string, end: string): boolean {
  const now = at.getUTCHours() * 3600 + at.getUTCMinutes() * 60 + at.getUTCSeconds() + at.getUTCMilliseconds() / 1000;
  const from = secondsOfDay(start);
  const to = secondsOfDay(end);
  return to < from ? now >= from || now < to : now >= from && now < to;
}

/** A tiered price applies in full once the call's input tokens exceed the tier's start. */
function tierPrice(price: number | TieredPrices | undefined, inputTokens: number): number | undefined {
  if (price === undefined || typeof price === "number") return price;
  let applied = price.base;
  for (const tier of price.tiers) if (inputTokens > tier.start) applied = tier.price;
  return applied;
}

/** Text-token rates of a catalog price for one call, or null when it has no text token prices. */
export function catalogRates(prices: ModelPrice, usage: Usage): Rates | null {
  const inputTokens = usage.input_tokens ?? 0;
  const input = tierPrice(prices.input_mtok, inputTokens);
  const output = tierPrice(prices.output_mtok, inputTokens);
  if (input === undefined && output === undefined) return null;
  return {
    input: input ?? 0,
    output: output ?? 0,
    cacheRead: tierPrice(prices.cache_read_mtok, inputTokens),
    cacheWrite: tierPrice(prices.cache_write_mtok, inputTokens),
    cacheWrite1h: tierPrice(prices.cache_write_1h_mtok, inputTokens),
  };
}
