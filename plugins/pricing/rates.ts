/**
 * Exact cost arithmetic. Prices are USD per million tokens; each is held as an integer number of
 * micro-dollars per million tokens, so tokens × price is an exact integer of pico-dollars. The
 * call's cost is rounded once, half up, to the nano-dollar integer the record stores.
 */
import type { Usage } from "agent-attr";

/** USD per million tokens. Missing cache prices fall back as the providers bill them. */
export interface Rates {
  input: number;
  output: number;
  /** Cached input read; default `input`. */
  cacheRead?: number;
  /** Cache write (Anthropic's 5-minute cache); default `input`. */
  cacheWrite?: number;
  /** Anthropic's 1-hour cache write; default `cacheWrite`. */
  cacheWrite1h?: number;
}

/** A price as integer micro-dollars per million tokens (prices are exact to $0.000001 per Mtok). */
function micro(usdPerMtok: number): number {
  return Math.round(usdPerMtok * 1e6);
}

/**
 * The cost of `usage` at `rates` in nano-dollars, or null when the usage is incomplete (input or
 * output unknown). Input counts every token once: uncached + cache read + cache writes.
 * Exact integer arithmetic: with plain numbers while every term is a safe integer and their sum is
 * well below 2^53 (any real call: a million tokens at $1,000 per Mtok is 10^15 pico-dollars), else
 * with BigInt.
 */
export function costNanoUSD(usage: Usage, rates: Rates): number | null {
  if (usage.input_tokens === null || usage.output_tokens === null) return null;
  const cacheRead = usage.cache_read_tokens ?? 0;
  const cacheWrite = usage.cache_write_tokens ?? 0;
  const write1h = Math.min(usage.cache_write_1h_tokens ?? 0, cacheWrite);
  const uncached = Math.max(0, usage.input_tokens - cacheRead - cacheWrite);
  const cacheWriteRate = rates.cacheWrite ?? rates.input;
  const tokens = [uncached, cacheRead, cacheWrite - write1h, write1h, usage.output_tokens] as const;
  const prices = [
    micro(rates.input),
    micro(rates.cacheRead ?? rates.input),
    micro(cacheWriteRate),
    micro(rates.cacheWrite1h ?? cacheWriteRate),
    micro(rates.output),
  ] as const;
  let bound = 0;
  for (let i = 0; i < 5; i++) bound += tokens[i]! * prices[i]!;
  if (bound < 2 ** 52 && tokens.every(Number.isSafeInteger) && prices.every(Number.isSafeInteger)) {
    let pico = 500;
    for (let i = 0; i < 5; i++) pico += tokens[i]! * prices[i]!;
    return (pico - (pico % 1000)) / 1000;
  }
  let pico = 500n;
  for (let i = 0; i < 5; i++) pico += BigInt(tokens[i]!) * BigInt(prices[i]!);
  return Number(pico / 1000n);
}
