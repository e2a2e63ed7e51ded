/**
 * Usage estimates for calls whose usage never arrived in full: a client that hung up mid-stream, an
 * upstream that broke off, a local server that reports none. Output tokens are counted from the
 * text that was delivered, input tokens (only when the provider gave none) from the request's text,
 * with the o200k tokenizer (`gpt-tokenizer`). The record says `usage_source: estimated`.
 */
import type { Usage } from "../trail/record.ts";
import type { CallContext, OutputSample } from "./context.ts";

type CountTokens = (text: string) => number;
let tokenizer: Promise<CountTokens> | null = null;

/** The tokenizer's tables take ~0.3 s to load, so they load on the first estimate only. */
function countTokens(): Promise<CountTokens> {
  tokenizer ??= import("gpt-tokenizer/encoding/o200k_base").then((module) => module.countTokens);
  return tokenizer;
}

/** Request fields that carry text the model reads. */
// OpenAI's and Anthropic's; Gemini's `contents`, `systemInstruction`, and an embedding's `content` / `requests`.
const promptFields = [
  "messages",
  "system",
  "input",
  "prompt",
  "instructions",
  "tools",
  "functions",
  "contents",
  "systemInstruction",
  "content",
  "requests",
];
/** Keys whose strings are structure, not text. */
const structuralKeys = new Set(["role", "type", "id", "model", "cache_control", "tool_use_id", "call_id"]);

function collectText(value: unknown, into: string[]): void {
  if (typeof value === "string") into.push(value);
  else if (Array.isArray(value)) for (const item of value) collectText(item, into);
  else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) if (!structuralKeys.has(key)) collectText(item, into);
  }
}

export function promptText(body: Record<string, unknown> | null): string | null {
  if (!body) return null;
  const parts: string[] = [];
  for (const field of promptFields) collectText(body[field], parts);
  return parts.length ? parts.join("\n") : null;
}

/** A prompt longer than this is counted from its head, the rest at the head's rate. */
const maxPromptSample = 64 * 1024;

/**
 * Tokens of a text, or of a sample and the characters that followed it (at the sample's rate). The
 * work is bounded, since it runs on the event loop: a long text arrives as a sample (a meter keeps
 * 16 Ki characters), and a run of 256 characters without a space is counted in pieces — the
 * tokenizer's merging grows with the square of a word's length (16 Ki of "x" take seconds), and a
 * cut costs at most a token.
 */
export function tokensOf(count: CountTokens, delivered: string | OutputSample): number {
  const text = typeof delivered === "string" ? delivered : delivered.text;
  let tokens = 0;
  let from = 0;
  for (const run of text.matchAll(/\S{256}/g)) {
    const end = run.index + 256;
    tokens += count(text.slice(from, end));
    from = end;
  }
  tokens += count(text.slice(from));
  if (typeof delivered === "string" || delivered.moreChars === 0) return tokens;
  return tokens + Math.round(delivered.moreChars * (text.length > 0 ? tokens / text.length : 0.25));
}

/**
 * Fills what the provider did not say: output from the delivered text (never below the provider's
 * own partial count), input from the prompt. Null when there is nothing to count.
 */
export async function estimateUsage(ctx: CallContext, known: Usage | null, delivered: string | OutputSample | null): Promise<Usage | null> {
  const count = await countTokens();
  let output = known?.output_tokens ?? null;
  if (ctx.endpoint.kind === "embeddings")
    output = 0; // embeddings generate no tokens
  else if (delivered !== null) output = Math.max(output ?? 0, tokensOf(count, delivered));
  let input = known?.input_tokens ?? null;
  if (input === null) {
    const prompt = promptText(ctx.body);
    if (prompt !== null) {
      const sample =
        prompt.length > maxPromptSample ? { text: prompt.slice(0, maxPromptSample), moreChars: prompt.length - maxPromptSample } : prompt;
      input = tokensOf(count, sample);
    }
  }
  if (input === null && output === null) return null;
  return {
    input_tokens: input,
    output_tokens: output,
    cache_read_tokens: known?.cache_read_tokens ?? null,
    cache_write_tokens: known?.cache_write_tokens ?? null,
    cache_write_1h_tokens: known?.cache_write_1h_tokens ?? null,
    reasoning_tokens: known?.reasoning_tokens ?? null,
  };
}
