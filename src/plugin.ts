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
 * | auditStore     | record       | the primary store (at most one plugin; none: `--log-db`'s)  |
 * | audit          | record       | every secondary sink gets every committed record, in seq order |
 * | limit.settle   | settle       | after the response ended, with the final record             |
 * | observe        | observe      | every plugin, once the call is over (telemetry: spans, metrics) |
 *
 * A hook that throws is reported as `[plugin NAME] HOOK: message`; it never corrupts a response.
 */
import type { Elysia } from "elysia";
import type { AuditRecord, Usage } from "./trail/record.ts";
import type { AuditStoreProvider, AuditTrail, CommittedRecord, ProxyKeyStore, TrailSettings } from "./store/contract.ts";
import type { LimitUsage } from "./limit-usage.ts";
import type { Logger } from "./log.ts";
import type { Attribution, CallContext, Endpoint, Meter, MeteredResponse, Principal } from "./pipeline/context.ts";
import type { BodyEdit } from "./proxy/json-edit.ts";
import type { SSEEvent } from "./proxy/sse.ts";

export type { Logger } from "./log.ts";
export type { TrailSettings } from "./store/contract.ts";
export type { BodyEdit, JsonArray, JsonObject, JsonValue } from "./proxy/json-edit.ts";

export interface UpstreamCall {
  readonly ctx: CallContext;
  /**
   * Inbound headers with hop-by-hop, host and attribution headers removed: a copy made for this
   * upstream call, which the adapter may change (e.g. set the provider's key) and send.
   */
  readonly headers: Headers;
  /**
   * The body to send: the inbound bytes (with the provider's edits, if any), or for an endpoint
   * whose body streams (`body: "stream"`, e.g. a file upload) the inbound stream itself, unread.
   */
  readonly body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** Aborts when the client disconnects or the upstream deadline passes. */
  readonly signal: AbortSignal;
}

/**
 * What a provider changes in a call's JSON body: members to set, spliced into the bytes the client
 * sent (./proxy/json-edit.ts), so every other byte goes upstream exactly as received — a body is
 * never re-serialised (that would turn `9223372036854775807` into `9223372036854776000`).
 */
export interface PreparedBody {
  /** Applied in order. An absent member is inserted after its object's `{`; a present one has its value replaced. */
  edits: readonly BodyEdit[];
  hideEvent?: (event: SSEEvent) => boolean;
}

/**
 * Inbound headers that carry a client's provider credential: OpenAI's and Anthropic's, Azure's
 * `api-key`, Google's `x-goog-api-key`. Each goes only to a provider that takes it.
 */
export type CredentialHeader = "authorization" | "x-api-key" | "api-key" | "x-goog-api-key";

/** The request a provider's `endpoints.resolve` looks at: its method, path and query, headers. */
export interface InboundRequest {
  readonly method: string;
  /** The path, e.g. `/v1beta/models/gemini-2.5-flash:generateContent` (percent-decoding is the provider's). */
  readonly path: string;
  /** The query string (`URL.searchParams`), e.g. `alt=sse`. */
  readonly query: URLSearchParams;
  readonly headers: Headers;
}

/**
 * A provider's own API paths, beyond the OpenAI and Anthropic surface the core serves under /v1
 * (e.g. Gemini's `/v1beta/models/{model}:generateContent`, Azure's `/openai/deployments/{d}/…`).
 * Requests under a prefix are offered to the providers that claim it, in plugin order: the first
 * that resolves one to an endpoint serves it (stage 1 is decided: `match` is not asked). None: 404
 * (the core's /v1 surface still serves a /v1 path no provider resolved).
 */
export interface ProviderEndpoints {
  /** Path prefixes, each starting and ending with `/`, e.g. `["/v1beta/"]`. */
  prefixes: readonly string[];
  /**
   * The endpoint this request is (with `billed`, the model its path names, its `errorResponse`),
   * or null when it is not this provider's. Runs on every request under the prefixes: keep it cheap.
   */
  resolve(request: InboundRequest): Endpoint | null;
}

/**
 * A WebSocket the client asked to open (the Responses API's WebSocket mode: `GET /v1/responses`
 * with an `Upgrade`), before it is opened upstream.
 */
export interface UpstreamSocketCall {
  /** The connection's context: its headers, principal and attribution (no body, no model). */
  readonly ctx: CallContext;
  /** Inbound headers without hop-by-hop, WebSocket handshake, host and attribution headers: the adapter's copy. */
  readonly headers: Headers;
}

/** Where a WebSocket is opened upstream: a `ws:` or `wss:` URL and the handshake's headers. */
export interface UpstreamSocket {
  url: string;
  headers: Headers;
}

export interface ProviderAdapter {
  /**
   * True when this provider serves a call to one of the core's endpoints (the OpenAI and Anthropic
   * surface under /v1, `endpoint.wire` says which). `model` is null for calls that name none
   * (GET /v1/models, retrieving a response, files). Return false for endpoints of wire formats it
   * does not speak; its own paths come through `endpoints`.
   */
  match(endpoint: Endpoint, model: string | null): boolean;
  /** Paths of the provider's own API that it serves (see ProviderEndpoints). */
  endpoints?: ProviderEndpoints;
  /**
   * The edits to make to the JSON body before forwarding (`body` is the parsed inbound body, for
   * deciding); return null to send the inbound bytes unchanged. `hideEvent` marks stream events
   * the edit caused and the client did not ask for: they are metered but not forwarded, so the
   * client sees the stream it asked for. Example, asking a stream for its usage:
   * `{ edits: [{ path: ["stream_options", "include_usage"], value: true }], hideEvent }`.
   */
  prepareBody?(endpoint: Endpoint, body: Record<string, unknown>): PreparedBody | null;
  /**
   * The client credential headers this provider's upstream takes (default: `authorization` and
   * `x-api-key`). The core removes the others before `forward`, so a key the client meant for one
   * provider never reaches another (e.g. OpenAI adapters take `authorization` only).
   */
  credentialHeaders?: readonly CredentialHeader[];
  /** Send the call upstream and return its response unread (the core streams it). */
  forward(call: UpstreamCall): Promise<Response>;
  /**
   * Where to open a WebSocket the client asked for on `endpoint` (today: `responses`, the Responses
   * API's WebSocket mode), with the credential this provider takes, exactly as `forward` would send
   * it. Absent, or null for an endpoint: the provider serves no WebSocket there, and the upgrade
   * is refused with 404 (clients such as Codex then fall back to HTTP). Each response the socket
   * carries is metered by `meter` from its events, as a stream's are.
   */
  upgrade?(endpoint: Endpoint, call: UpstreamSocketCall): UpstreamSocket | null;
  /** A fresh usage meter for one response. */
  meter(endpoint: Endpoint, response: MeteredResponse): Meter;
  /**
   * The request-body field that bounds the output on this endpoint (e.g. `max_completion_tokens`),
   * or null when there is none. Used when a limit plugin caps a call's output (LimitStage.capOutput).
   */
  outputLimitField?(endpoint: Endpoint): string | null;
  /**
   * How the calls it serves are priced: `{ catalog: "openai" }` names the price-data provider
   * (genai-prices id) its models belong to; `"free"` for self-hosted models (cost 0 unless a price
   * is configured). Absent: the catalog is searched by model name alone. `by: "requested"` prices by
   * the requested model before the one the response named (default the reverse, since a response
   * names the dated snapshot): Bedrock's model ids say the region scope their price depends on,
   * which the model name in an answer does not.
   */
  pricing?: { catalog: string; by?: "requested" | "response" } | "free";
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
  /**
   * Names the tier the call is limited under (the first name given wins), so `/metrics` counts its
   * refusals by tier. Without one the principal's tier is used, else `none`.
   */
  noteTier(tier: string): void;
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

/**
 * A secondary audit sink (`Plugin.audit`): somewhere else every call goes — a log pipeline, a
 * queue, a SIEM. It is not the store: the primary store (`Plugin.auditStore`, else `--log-db`)
 * makes records durable; a sink is told of each one once the store has committed it.
 */
export interface AuditSink {
  /**
   * Each committed record, in seq order, with its `seq` and chain `hash` — calls refused before
   * forwarding and calls recovered as `interrupted` included; a record whose user was erased while
   * its call was in flight arrives redacted. Sync or async: when it returns a promise, this sink's
   * next record waits for it. Up to 10,000 records (the one being written included) wait per sink;
   * past that they are dropped for this sink and the count is logged. A throw or rejection is
   * logged as `[plugin NAME] audit.write: message`; it never reaches a call.
   */
  write(record: CommittedRecord): void | Promise<void>;
  /** Called once at shutdown, after the last record was written to this sink: persist what it buffers. */
  flush?(): void | Promise<void>;
}

/** A counter a plugin adds to `/metrics` (PluginMetrics.counter). */
export interface PluginCounter {
  /** Adds `n` (default 1; a negative or non-finite `n` is ignored). */
  add(n?: number): void;
}

/**
 * Metrics a plugin adds to `GET /metrics` beside the proxy's own. Names must be valid Prometheus
 * names, unique across plugins; a counter's name ends in `_total`. Register them in `setup`.
 */
export interface PluginMetrics {
  counter(name: string, help: string): PluginCounter;
  /** A gauge read when `/metrics` is scraped: `read` must be cheap and must not throw. */
  gauge(name: string, help: string, read: () => number): void;
}

/** A call that has ended, as `Plugin.observe` sees it. */
export interface ObservedCall {
  readonly ctx: CallContext;
  /** Its final record, as the primary store was given it (`seq` and `hash` come with the commit: see `audit`). */
  readonly record: AuditRecord;
  /**
   * Why the model stopped, one entry per generation, as the provider's meter read it (e.g. `stop`,
   * `length`, `tool_calls`, `end_turn`); empty when unknown or when no answer arrived.
   */
  readonly finishReasons: readonly string[];
  /** The tier the call was limited under (LimitStage.noteTier), else the principal's, else null. */
  readonly tier: string | null;
}

export interface PluginSetupContext {
  /** `--log-db` (or AGENT_ATTR_LOG_DB, `audit.logDb`, ./audit.db): a file path or a URL. */
  logDb: string;
  log: Logger;
  /** The config's `audit` settings for the trail: checkpoints, signing key, retention. */
  audit: TrailSettings;
  /** The primary store's proxy keys (open by the time `setup` runs). */
  keys: ProxyKeyStore;
  /** Where the plugin adds its own counters and gauges to `/metrics`. */
  metrics: PluginMetrics;
  /**
   * The primary store's trail, for what a plugin does that an auditor must see (the tiers plugin's
   * `budget_alert`): `recordEvent` appends a chain event (never personal data in it: events
   * cannot be erased), `events` lists them.
   */
  trail: Pick<AuditTrail, "recordEvent" | "events">;
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
  /** A secondary sink: every committed record, wherever the plugin is listed. */
  audit?: AuditSink;
  /**
   * The primary store, when this plugin provides it (e.g. `sqliteAudit({ path })`); at most one
   * plugin may. None: the store `--log-db` names. The runtime opens it before any `setup` and
   * closes it after the last call; the CLI opens its `openAdmin` handle.
   */
  auditStore?: AuditStoreProvider;
  /**
   * Told of every call once it is over — its final record handed to the store, its limits settled —
   * refused calls included: for telemetry (spans, metrics). Called synchronously on the proxy's
   * event loop, so keep it to reading fields and a push onto a bounded queue of the plugin's own;
   * encode and send later, in batches. A throw is logged as `[plugin NAME] observe: message`.
   */
  observe?(call: ObservedCall): void;
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
