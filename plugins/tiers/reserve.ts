/**
 * What a call reserves before it is forwarded.
 *
 * - Token limits reserve an *estimate*: the body's bytes / 4 + the allowances below + the output
 *   ceiling.
 * - Cost budgets reserve a *ceiling*: the most the call can cost under these assumptions —
 *   every input token is one UTF-8 byte of the request body serialized as JSON (keys, numbers,
 *   quotes and every field included: messages, system, tools and their schemas, response_format…;
 *   a BPE token spans at least one byte, and whatever the provider renders from the body is drawn
 *   from these bytes), plus `perRequestTokens`, `perMessageTokens` for each message / input item /
 *   tool, `toolUseTokens` once when the call defines tools, and `perMediaTokens` for each image,
 *   audio or file part (their base64 bytes are not text and are not counted); output is the
 *   request's `max_tokens` / `max_completion_tokens` / `max_output_tokens`, or `maxOutputTokens`
 *   when it sets none, times the completions generated (`n`, `best_of`); and every input token is
 *   priced at the dearest input rate the price plugins have for the call (plain, 5-minute or
 *   1-hour cache write).
 */
import { ProxyError, outputLimitFields, type CallContext, type Usage } from "agent-attr";

/** Template tokens of any request (start and end markers, the assistant turn's prefix). */
const perRequestTokens = 32;
/** Template tokens around each message, input item or tool definition (role markers, separators). */
const perMessageTokens = 16;
/**
 * System prompt a provider adds when a call defines tools: Anthropic documents 264–530 tokens by
 * model and tool_choice (346 for current models); OpenAI's tool preamble is smaller.
 */
const toolUseTokens = 600;
/** Tokens reserved per image or audio part: above the largest image the providers bill (~2.5k). */
const perMediaTokens = 3_000;

interface Reservation {
  /** Input + output tokens for token limits (an estimate). */
  tokens: number;
  /** The usage whose price is the call's cost ceiling. */
  ceiling: Usage;
  /** True when the output ceiling is the request's own max tokens, not the configured default. */
  outputFromRequest: boolean;
}

/** Fields whose arrays are messages / input items / tools, each with template tokens around it. */
const itemFields = ["messages", "input", "system", "tools", "functions"];
const toolFields = ["tools", "functions"];
/** Parts whose payload is base64 media: counted as a media part, never by bytes. */
const mediaTypes = new Set(["image", "image_url", "input_image", "input_audio", "audio"]);
/** Files and documents other than plain text (PDFs, file ids): one part each, never their base64 bytes. */
const fileTypes = new Set(["document", "input_file", "file"]);

interface BodyCount {
  bytes: number;
  items: number;
  media: number;
  tools: number;
}

function isMedia(value: Record<string, unknown>): boolean {
  if (typeof value.type !== "string") return false;
  if (mediaTypes.has(value.type)) return true;
  if (!fileTypes.has(value.type)) return false;
  const source = value.source as { type?: unknown } | undefined;
  return !(source && (source.type === "text" || source.type === "content"));
}

const jsonBytes = (value: string | number | boolean | null) => Buffer.byteLength(JSON.stringify(value));

/** UTF-8 bytes of `value` serialized as JSON, except media parts, which are counted apart. */
function serialized(value: unknown, into: BodyCount): number {
  if (Array.isArray(value)) {
    return value.reduce<number>((sum, item) => sum + serialized(item, into), 2 + Math.max(0, value.length - 1));
  }
  if (value !== null && typeof value === "object") {
    const object = value as Record<string, unknown>;
    if (isMedia(object)) {
      into.media += 1;
      return 0;
    }
    const entries = Object.entries(object).filter(([, item]) => item !== undefined);
    let bytes = 2 + Math.max(0, entries.length - 1);
    for (const [key, item] of entries) bytes += jsonBytes(key) + 1 + serialized(item, into);
    return bytes;
  }
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean" || value === null) return jsonBytes(value);
  return 0;
}

/** Bytes of the whole body as JSON (media apart), its messages / input items / tools and its media parts. */
function countBody(body: Record<string, unknown> | null): BodyCount {
  const into: BodyCount = { bytes: 0, items: 0, media: 0, tools: 0 };
  if (!body) return into;
  into.bytes = serialized(body, into);
  for (const field of itemFields) {
    const value = body[field];
    const items = Array.isArray(value) ? value.length : value !== undefined && value !== null ? 1 : 0;
    into.items += items;
    if (toolFields.includes(field) && Array.isArray(value)) into.tools += value.length;
  }
  return into;
}

const count = (value: unknown) => (typeof value === "number" && Number.isInteger(value) && value > 1 ? value : 1);

/** Completions the provider generates and bills: `n`, or `best_of` candidates on /v1/completions. */
function completionsOf(body: Record<string, unknown>): number {
  return Math.max(count(body.n), count(body.best_of));
}

/**
 * The output limit the request sets: the largest of its limit fields (a server may honour any one
 * of them), or null when it sets none. A field that is set but is not a positive integer is
 * reported, since a lenient server could read "100000" as 100,000 while the ceiling assumed none.
 */
function requestedOutput(body: Record<string, unknown>): number | null {
  let max: number | null = null;
  for (const field of outputLimitFields) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
      throw new ProxyError(
        "invalid_body",
        `${field} must be a positive integer (got ${JSON.stringify(value).slice(0, 40)}); the proxy reserves budgets by it.`,
      );
    }
    max = Math.max(max ?? 0, value);
  }
  return max;
}

export function reservationOf(ctx: CallContext, maxOutputTokens: number): Reservation {
  const body = ctx.body ?? {};
  const counted = countBody(ctx.body);
  const noOutput = ctx.endpoint.kind === "embeddings" || !ctx.endpoint.billed;
  const requested = requestedOutput(body);
  const output = noOutput ? 0 : (requested ?? maxOutputTokens) * completionsOf(body);
  const allowances =
    (ctx.body ? perRequestTokens : 0) +
    counted.items * perMessageTokens +
    (counted.tools > 0 ? toolUseTokens : 0) +
    counted.media * perMediaTokens;
  const input = counted.bytes + allowances;
  const estimatedInput = Math.ceil(counted.bytes / 4) + allowances;
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
  return [ceiling, { ...ceiling, cache_write_tokens: input }, { ...ceiling, cache_write_tokens: input, cache_write_1h_tokens: input }];
}
