/**
 * The one plugin contract. A plugin is a plain object `{ name, ...hooks }`; it fills the keys of the
 * stages it serves. The order of the config's `plugins` array is the only ordering rule:
 *
 * | key            | stage        | semantics                                                    |
 * |----------------|--------------|--------------------------------------------------------------|
 * | provider       | route/forward/meter | first plugin whose `provider.match` is true serves the call |
 * | authenticate   | authenticate | first non-null principal wins; throw a ProxyError to refuse |
 * | attribute      | attribute    | every plugin runs; non-null fields of later plugins override (sources and tags key by key) |
 * | limit.check    | limit        | in order; the first denial (a ProxyError) stops the call     |
 * | price          | price        | first non-null result wins                                   |
 * | audit          | record       | every sink gets every record; the first sink is primary     |
 * | limit.settle   | settle       | after the response ended, with the final record             |
 *
 * A hook that throws is reported as `[plugin NAME] HOOK: message`; it never corrupts a response.
 */
import type { Elysia } from "elysia";
import type { AuditRecord, Usage } from "./trail/record.ts";
import type { AuditReader } from "./store/contract.ts";
import type { AuditTrail } from "./store/contract.ts";
import type { KeyAdmin } from "./store/sqlite/key-admin.ts";
import type { LimitUsage } from "./limit-usage.ts";
import type { Logger } from "./log.ts";
import type { TrailSettings } from "./store/contract.ts";
import type { Attribution, CallContext, Endpoint, Meter, Principal } from "./pipeline/context.ts";
import type { SSEEvent } from "./proxy/sse.ts";

export type { Logger } from "./log.ts";
export type { TrailSettings } from "./store/contract.ts";

export interface UpstreamCall {
  readonly ctx: CallContext;
  /**
   * Inbound headers with hop-by-hop, host and attribution headers removed: a copy made for this
   * upstream call, which the adapter may change (e.g. set the provider's key) and send.
   */
  readonly headers: Headers;
  /** The body to send (the inbound bytes unless a provider rewrote it). */
  readonly body: Uint8Array | null;
  /** Aborts when the client disconnects or the upstream deadline passes. */
  readonly signal: AbortSignal;
}

export interface PreparedBody {
  body: Record<string, unknown>;
  hideEvent?: (event: SSEEvent) => boolean;
}

export interface ProviderAdapter {
  /** True when this provider serves the call. `model` is null for GET /v1/models. */
  match(endpoint: Endpoint, model: string | null): boolean;
  /**
   * Rewrite the JSON body before forwarding; return null to send the inbound bytes unchanged.
   * `hideEvent` marks stream events the rewrite caused and the client did not ask for: they are
   * metered but not forwarded, so the client sees the stream it asked for.
   */
  prepareBody?(endpoint: Endpoint, body: Record<string, unknown>): PreparedBody | null;
  /** Send the call upstream and return its response unread (the core streams it). */
  forward(call: UpstreamCall): Promise<Response>;
  /** A fresh usage meter for one response. */
  meter(endpoint: Endpoint): Meter;
  /**
   * The request-body field that bounds the output on this endpoint (e.g. `max_completion_tokens`),
   * or null when there is none. Used when a limit plugin caps a call's output (LimitStage.capOutput).
   */
  outputLimitField?(endpoint: Endpoint): string | null;
  /**
   * How the calls it serves are priced: `{ catalog: "openai" }` names the price-data provider
   * (genai-prices id) its models belong to; `"free"` for self-hosted models (cost 0 unless a price
   * is configured). Absent: the catalog is searched by model name alone.
   */
  pricing?: { catalog: string } | "free";
}

/** What the limit stage offers its hooks besides the call. */
export interface LimitStage {
  /** Runs the price stage (stage 7) over an estimated usage, e.g. to reserve a budget. */
  price(usage: Usage): Promise<PriceQuote | null>;
  /**
   * Bounds the call's output: when the request sets no output limit of its own (max_tokens,
   * max_completion_tokens, max_output_tokens), the proxy sends `maxTokens` in the provider's own
   * field, so a reservation that assumed it is a real bound. The lowest cap asked for wins.
   */
  capOutput(maxTokens: number): void;
}

/** What a limit check that lets a call through may say about it. */
export interface LimitVerdict {
  /**
   * Recorded as the call's `error_type` unless it fails otherwise (the first flag of the stage
   * wins): e.g. `shadow:rate_limited` for what shadow mode would have refused.
   */
  flag?: string;
}

export interface LimitHooks {
  /**
   * Throw a ProxyError (`rate_limited` 429, `budget_exceeded` 402) to refuse the call; return
   * nothing, or a verdict with a flag for the record, to let it through.
   */
  check(ctx: CallContext, stage: LimitStage): void | LimitVerdict | Promise<void | LimitVerdict>;
  /**
   * Reconcile with the final record once the call has ended — also for calls refused or failed
   * after `check` passed (a later limiter's denial, a 503, an unreachable upstream), so
   * reservations are always given back. Runs once per call.
   */
  settle?(ctx: CallContext, record: AuditRecord): void | Promise<void>;
  /**
   * What is used of each limit and budget now (`GET /audit/limits`, the dashboard), for the scopes
   * the plugin chooses to show (the built-in tiers: those of recent calls). Reads only: charges nothing.
   */
  usage?(): Promise<LimitUsage[]>;
  /** A user was erased: drop them from what `usage` shows (the limiter's own state keeps counting). */
  forgetUser?(userId: string): void;
}

/** What the price stage knows about a finished call. */
export interface PriceRequest {
  readonly ctx: CallContext;
  /** The provider plugin that served the call, and its pricing hint. */
  readonly provider: string;
  readonly pricing: ProviderAdapter["pricing"];
  /** The requested model, and the model the response named (often a dated snapshot). */
  readonly model: string | null;
  readonly responseModel: string | null;
  readonly usage: Usage;
  /** When the call started: prices that changed over time apply as of then. */
  readonly at: Date;
}

export interface PriceQuote {
  /** Exact cost in billionths of a US dollar (an integer), or null when the price is unknown. */
  cost_nano_usd: number | null;
  /** Where the price came from, e.g. `genai-prices:openai/gpt-4o` or `config:gpt-4o*`. */
  price_source: string;
}

export interface AuditSink {
  /**
   * Make the in-flight record durable before the call is forwarded. For the primary (first) sink a
   * rejection refuses the call with 503; secondary sinks are told but not awaited.
   */
  begin(record: AuditRecord): Promise<void>;
  /**
   * The final record of a call (also for calls that never reached an upstream). The call's last
   * bytes reach the client only after the primary sink's `write` has returned: it should hold the
   * record durably by then (the SQLite store writes it to its intent log), so a crash right after
   * cannot lose what the client saw finish.
   */
  write(record: AuditRecord): void | Promise<void>;
  /** Reader for the audit API and CLI; the primary sink must have one. */
  reader?: AuditReader;
  /** Verify, erase, export and audit-of-the-audit events (`/audit/verify`, `/audit/export/*`, ...). */
  trail?: AuditTrail;
  /** The proxy keys kept beside the trail (`/audit/keys`): list, create, revoke. */
  keys?: KeyAdmin;
  /** Persist everything queued; called on shutdown. */
  flush?(): void | Promise<void>;
  /**
   * The instance secret that keys prompt and response hashes, when the sink keeps it (PostgreSQL:
   * in the database, so every replica hashes alike). Otherwise the runtime uses `<log-db>.key`.
   */
  readonly hashKey?: Uint8Array;
}

export interface PluginSetupContext {
  /** The `--log-db` path (or `AGENT_ATTR_LOG_DB`), for sinks that were not given a path. */
  logDb: string;
  log: Logger;
  /** The config's `audit` settings for the trail: checkpoints, signing key, retention. */
  audit?: TrailSettings;
}

export interface Plugin {
  name: string;
  setup?(ctx: PluginSetupContext): void | Promise<void>;
  teardown?(): void | Promise<void>;
  provider?: ProviderAdapter;
  authenticate?(ctx: CallContext): Principal | null | Promise<Principal | null>;
  attribute?(ctx: CallContext): Partial<Attribution> | null | Promise<Partial<Attribution> | null>;
  /**
   * Inbound headers this plugin reads for the proxy alone (e.g. `x-agent-id`): removed before the
   * call goes upstream, so an upstream never learns them.
   */
  inboundHeaders?: readonly string[];
  limit?: LimitHooks;
  /** Price a call; return null to let the next plugin try (no plugin: `cost_usd` null). */
  price?(call: PriceRequest): PriceQuote | null | Promise<PriceQuote | null>;
  audit?: AuditSink;
  /** Extra HTTP routes, mounted on the proxy's port. */
  routes?(app: Elysia): unknown;
}

/** Returns its argument; exists for types and to make plugin files read as plugins. */
export function definePlugin<P extends Plugin>(plugin: P): P {
  return plugin;
}

/** Error thrown by a plugin hook, wrapped with the plugin's name and hook. */
export class PluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly hook: string,
    override readonly cause: unknown,
  ) {
    super(`[plugin ${plugin}] ${hook}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "PluginError";
  }
}
