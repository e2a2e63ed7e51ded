/**
 * `agent-attr pricing show MODEL`: the price that would apply to a model, per provider that could
 * serve it, and where the price comes from. It asks the configured price plugins exactly as a call
 * would, with probe usages, so what it prints is what calls are charged.
 */
import { defineCommand } from "citty";
import { noUsage, type Usage } from "../trail/record.ts";
import { emptyAttribution, type CallContext, type Endpoint } from "../pipeline/context.ts";
import { endpoints } from "../pipeline/endpoints.ts";
import type { PriceQuote, PriceRequest, Plugin, ProviderAdapter } from "../plugin.ts";
import { configuredPlugins } from "../server/runtime.ts";
import { formatUSD } from "../trail/format.ts";
import { configArg, configuredSettings, parseFlag, UsageError } from "./_shared.ts";
import { z } from "zod";

const rateKinds = [
  ["input", (n: number) => ({ input_tokens: n })],
  ["cached_input", (n: number) => ({ input_tokens: n, cache_read_tokens: n })],
  ["cache_write", (n: number) => ({ input_tokens: n, cache_write_tokens: n })],
  ["cache_write_1h", (n: number) => ({ input_tokens: n, cache_write_tokens: n, cache_write_1h_tokens: n })],
] as const;

const labels: Record<string, string> = {
  input: "input",
  cached_input: "cached input",
  cache_write: "cache write",
  cache_write_1h: "cache write (1 hour)",
  output: "output",
};

interface Shown {
  provider: string;
  source: string | null;
  /** USD per million tokens by kind, null where unpriced. */
  rates: Record<string, string | null>;
}

async function quote(plugins: Plugin[], request: Omit<PriceRequest, "usage">, usage: Partial<Usage>): Promise<PriceQuote | null> {
  for (const plugin of plugins) {
    const result = plugin.price ? await plugin.price({ ...request, usage: { ...noUsage, output_tokens: 0, ...usage } }) : null;
    if (result) return result;
  }
  return null;
}

/** Nano-dollars for `tokens` tokens → USD per million tokens, exactly. */
const perMillion = (nano: number, tokens: number) => formatUSD((nano * 1_000_000) / tokens);

async function show(
  plugins: Plugin[],
  provider: { name: string; adapter: ProviderAdapter },
  endpoint: Endpoint,
  model: string,
  context: number,
): Promise<Shown> {
  const ctx = {
    id: "pricing-show",
    startedAt: Date.now(),
    startedPerf: 0,
    request: new Request(`http://localhost${endpoint.path}`, { method: "POST" }),
    endpoint,
    rawBody: null,
    body: { model },
    model,
    stream: false,
    principal: null,
    attribution: emptyAttribution,
  } satisfies CallContext;
  const request = { ctx, provider: provider.name, pricing: provider.adapter.pricing, model, responseModel: null, at: new Date() };
  const rates: Record<string, string | null> = {};
  let source: string | null = null;
  for (const [kind, usage] of rateKinds) {
    const q = await quote(plugins, request, usage(context));
    source ??= q?.price_source ?? null;
    rates[kind] = q?.cost_nano_usd == null ? null : perMillion(q.cost_nano_usd, context);
  }
  const base = await quote(plugins, request, { input_tokens: context, output_tokens: 0 });
  const withOutput = await quote(plugins, request, { input_tokens: context, output_tokens: 1_000_000 });
  rates.output =
    base?.cost_nano_usd == null || withOutput?.cost_nano_usd == null
      ? null
      : perMillion(withOutput.cost_nano_usd - base.cost_nano_usd, 1_000_000);
  return { provider: provider.name, source, rates };
}

const showCommand = defineCommand({
  meta: { name: "show", description: "The price that applies to a model (USD per million tokens) and its source" },
  args: {
    model: { type: "positional", required: true, description: "Model name, e.g. gpt-4o" },
    provider: { type: "string", description: "Only this provider plugin" },
    "input-tokens": { type: "string", description: "Input size of the call, for long-context tiers (default 1000)" },
    format: { type: "enum", options: ["text", "json"], default: "text", description: "Output format" },
    config: configArg,
  },
  async run({ args }) {
    const context = parseFlag("input-tokens", z.coerce.number().int().positive().default(1000), args["input-tokens"]);
    const { config } = await configuredSettings(args.config);
    const plugins = configuredPlugins(config);
    const shown: Shown[] = [];
    for (const plugin of plugins) {
      if (!plugin.provider || (args.provider && plugin.name !== args.provider)) continue;
      const endpoint = endpoints.find((e) => e.method === "POST" && plugin.provider!.match(e, args.model));
      if (endpoint) shown.push(await show(plugins, { name: plugin.name, adapter: plugin.provider }, endpoint, args.model, context));
    }
    if (shown.length === 0) {
      throw new UsageError(`No configured provider serves model '${args.model}'${args.provider ? ` as '${args.provider}'` : ""}.`);
    }
    if (args.format === "json") {
      process.stdout.write(`${JSON.stringify({ model: args.model, input_tokens: context, providers: shown }, null, 2)}\n`);
      return;
    }
    // Providers that could serve the model but know no price for it are noise when another does.
    const priced = shown.filter((s) => s.source !== null);
    for (const { provider, source, rates } of priced.length ? priced : shown) {
      console.log(`${args.model} via ${provider}: ${source ?? "unpriced (cost_usd null; add it to pricing({ models }))"}`);
      if (!source) continue;
      for (const [kind, rate] of Object.entries(rates)) console.log(`  ${labels[kind]!.padEnd(22)}${rate === null ? "-" : `$${rate}`}`);
    }
    console.log("(USD per million tokens)");
  },
});

export const pricingCommand = defineCommand({
  meta: { name: "pricing", description: "Inspect prices" },
  subCommands: { show: showCommand },
});
