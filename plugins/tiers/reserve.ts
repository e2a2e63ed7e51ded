/**
 * What a call reserves before it is forwarded.
 *
 * - Token limits reserve an *estimate*: text bytes / 4 + the output ceiling (below).
 * - Cost budgets reserve a *ceiling*: the most the call can cost under these assumptions —
 *   every input token is one UTF-8 byte of the request's text (a BPE token spans at least one
 *   byte), plus `perMessageTokens` for each message / input item and `perMediaTokens` for each
 *   image, audio or file part (their base64 bytes are not text and are not counted); output is the
 *   request's `max_tokens` / `max_completion_tokens` / `max_output_tokens` (× `n`), or
 *   `maxOutputTokens` when it sets none; and every input token is priced at the dearest input
 *   rate the price plugins have for the call (plain, 5-minute or 1-hour cache write).
 */
import type { CallContext, Usage } from "agent-attr";

/** Template tokens around each message or input item (role markers, separators). */
export const perMessageTokens = 16;
/** Tokens reserved per image or audio part: above the largest image the providers bill (~2.5k). */
export const perMediaTokens = 3_000;

export interface Reservation {
  /** Input + output tokens for token limits (an estimate). */
  tokens: number;
  /** The usage whose price is the call's cost ceiling. */
  ceiling: Usage;
  /** True when the output ceiling is the request's own max tokens, not the configured default. */
  outputFromRequest: boolean;
}

const promptFields = ["messages", "system", "input", "prompt", "instructions", "tools", "functions", "tool_choice", "response_format", "text"];
/** Keys whose strings are structure, not text the model reads. */
const structuralKeys = new Set(["role", "type", "id", "cache_control", "tool_use_id", "call_id", "detail", "media_type", "format"]);
/** Parts whose payload is base64 media: counted as a media part, never by bytes. */
const mediaTypes = new Set(["image", "image_url", "input_image", "input_audio", "audio"]);

interface TextCount {
  bytes: number;
  items: number;
  media: number;
}

/** Files and documents other than plain text (PDFs, file ids): one part each, never their base64 bytes. */
const fileTypes = new Set(["document", "input_file", "file"]);

function isMedia(value: Record<string, unknown>): boolean {
  if (typeof value.type !== "string") return false;
  if (mediaTypes.has(value.type)) return true;
  if (!fileTypes.has(value.type)) return false;
  const source = value.source as { type?: unknown } | undefined;
  return !(source && (source.type === "text" || source.type === "content"));
}

function count(value: unknown, into: TextCount): void {
  if (typeof value === "string") into.bytes += Buffer.byteLength(value);
  else if (typeof value === "number") into.bytes += 1; // embeddings input given as token ids
  else if (Array.isArray(value)) for (const item of value) count(item, into);
  else if (value !== null && typeof value === "object") {
    const object = value as Record<string, unknown>;
    if (isMedia(object)) {
      into.media += 1;
      return;
    }
    for (const [key, item] of Object.entries(object)) if (!structuralKeys.has(key)) count(item, into);
  }
}

/** UTF-8 bytes of the request's text, its messages / input items and its media parts. */
export function textOf(body: Record<string, unknown> | null): TextCount {
  const into: TextCount = { bytes: 0, items: 0, media: 0 };
  if (!body) return into;
  for (const field of promptFields) {
    const value = body[field];
    if (Array.isArray(value)) into.items += value.length;
    else if (value !== undefined) into.items += 1;
    count(value, into);
  }
  return into;
}

function requestedOutput(body: Record<string, unknown>): number | null {
  const max = [body.max_tokens, body.max_completion_tokens, body.max_output_tokens].find(
    (v): v is number => typeof v === "number" && Number.isFinite(v) && v > 0,
  );
  if (max === undefined) return null;
  const n = typeof body.n === "number" && Number.isInteger(body.n) && body.n > 1 ? body.n : 1;
  return Math.ceil(max) * n;
}

export function reservationOf(ctx: CallContext, maxOutputTokens: number): Reservation {
  const body = ctx.body ?? {};
  const text = textOf(ctx.body);
  const noOutput = ctx.endpoint.kind === "embeddings" || ctx.endpoint.kind === "messages.count_tokens" || ctx.endpoint.method === "GET";
  const requested = requestedOutput(body);
  const output = noOutput ? 0 : (requested ?? maxOutputTokens);
  const input = text.bytes + text.items * perMessageTokens + text.media * perMediaTokens;
  const estimatedInput = Math.ceil(text.bytes / 4) + text.items * perMessageTokens + text.media * perMediaTokens;
  return {
    tokens: estimatedInput + output,
    ceiling: {
      input_tokens: input,
      output_tokens: output,
      cache_read_tokens: null,
      cache_write_tokens: null,
      cache_write_1h_tokens: null,
      reasoning_tokens: null,
    },
    outputFromRequest: noOutput || requested !== null,
  };
}

/** The same input priced as plain input, as 5-minute cache writes and as 1-hour cache writes. */
export function ceilingVariants(ceiling: Usage): Usage[] {
  const input = ceiling.input_tokens ?? 0;
  return [
    ceiling,
    { ...ceiling, cache_write_tokens: input },
    { ...ceiling, cache_write_tokens: input, cache_write_1h_tokens: input },
  ];
}
