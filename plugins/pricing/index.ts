/**
 * `pricing({...})`: prices every call (pipeline stage 7). In order, the first that applies wins:
 * 1. `models`: your price for a model name or glob (matched against the requested model, then the
 *    model the response named);
 * 2. `providers`: your price for every model of one provider plugin, or `"free"`;
 * 3. self-hosted providers (`openaiCompatible` without a `catalog`) cost 0;
 * 4. the bundled `@pydantic/genai-prices` data (cache, 1-hour cache and long-context tiers included).
 * A model none of them knows is left unpriced (null: the next price plugin may know it); the core
 * then records `cost_usd: null` and warns once per model — never a silent $0.
 */
import { definePlugin, modelMatcher, type PriceQuote, type PriceRequest, parseOptions } from "agent-attr";
import { z } from "zod";
import { catalogRates, lookup, pricesAt } from "./catalog.ts";
import { costNanoUSD, type Rates } from "./rates.ts";

/** The version of the bundled price data (checked against the installed package by a test). */
export const priceDataVersion = "genai-prices@0.1.8";

const usdPerMtok = z.number().nonnegative().finite();
const ratesSchema = z
  .object({
    /** USD per million uncached input tokens. */
    input: usdPerMtok,
    /** USD per million output tokens (reasoning included). */
    output: usdPerMtok,
    /** USD per million cached input tokens read; default `input`. */
    cachedInput: usdPerMtok.optional(),
    /** USD per million tokens written to a cache (Anthropic 5-minute); default `input`. */
    cacheWrite: usdPerMtok.optional(),
    /** USD per million tokens written to Anthropic's 1-hour cache; default `cacheWrite`. */
    cacheWrite1h: usdPerMtok.optional(),
  })
  .strict();

const optionsSchema = z
  .object({
    /** Prices per model name or glob (`"gpt-4o*"`); the first matching entry wins. */
    models: z.record(z.string().min(1), ratesSchema).default({}),
    /** Prices for every model of a provider plugin (by its name), or "free". */
    providers: z.record(z.string().min(1), z.union([ratesSchema, z.literal("free")])).default({}),
    /** Use the bundled genai-prices data for models not priced above (default true). */
    catalog: z.boolean().default(true),
  })
  .strict();

export type PricingOptions = z.input<typeof optionsSchema>;
type ConfiguredRates = z.output<typeof ratesSchema>;

const toRates = (r: ConfiguredRates): Rates => ({
  input: r.input,
  output: r.output,
  cacheRead: r.cachedInput,
  cacheWrite: r.cacheWrite,
  cacheWrite1h: r.cacheWrite1h,
});

export function pricing(options: PricingOptions = {}) {
  const opts = parseOptions("pricing", optionsSchema, options);
  const modelRules = Object.entries(opts.models).map(([pattern, rates]) => ({
    pattern,
    matches: modelMatcher([pattern]),
    rates: toRates(rates),
  }));
  const quote = (rates: Rates, source: string, call: PriceRequest): PriceQuote => ({
    cost_nano_usd: costNanoUSD(call.usage, rates),
    price_source: source,
  });

  function price(call: PriceRequest): PriceQuote | null {
    const names = [call.model, call.responseModel].filter((name): name is string => name !== null);
    for (const rule of modelRules) {
      if (names.some(rule.matches)) return quote(rule.rates, `config:models[${rule.pattern}]`, call);
    }
    const configured = opts.providers[call.provider];
    if (configured === "free") return { cost_nano_usd: 0, price_source: `config:providers[${call.provider}]` };
    if (configured) return quote(toRates(configured), `config:providers[${call.provider}]`, call);
    if (call.pricing === "free") return { cost_nano_usd: 0, price_source: `free:${call.provider}` };
    if (opts.catalog) {
      const catalog = call.pricing?.catalog;
      for (const name of call.pricing?.by === "requested" ? names : names.toReversed()) {
        const entry = lookup(name, catalog);
        const rates = entry && catalogRates(pricesAt(entry.model, call.at), call.usage);
        if (entry && rates) return quote(rates, `${priceDataVersion}:${entry.name}`, call);
      }
    }
    return null;
  }

  return definePlugin({ name: "pricing", price });
}
