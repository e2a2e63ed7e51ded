/**
 * The typed state one call carries through the pipeline (see ./index.ts for the stages).
 */
import type { AttributionKind, ConsentSource, Usage } from "../trail/record.ts";
import type { SSEEvent } from "../proxy/sse.ts";

/**
 * The wire format of an endpoint: whose API shape its requests, responses and errors follow. The
 * core knows OpenAI's and Anthropic's; a provider that brings its own API names its own (e.g.
 * `gemini`) and gives its endpoints an `errorResponse`.
 */
export type WireFormat = "openai" | "anthropic" | (string & {});

/**
 * What an endpoint does. The kinds the core knows are listed (./endpoints.ts); providers name their
 * own (e.g. `gemini.generateContent`), and a path under /v1 the proxy does not know is `other`.
 */
export type EndpointKind =
  | "chat.completions"
  | "responses"
  | "embeddings"
  | "completions"
  | "models"
  | "messages"
  | "messages.count_tokens"
  | "other"
  | (string & {});

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS";

/**
 * How the proxy reads a request body:
 * - `model`: a JSON object with a string `model` (unless the endpoint's path names the model), read
 *   whole under `server.maxBodyBytes`; anything else is refused with 400 before it is forwarded.
 * - `json`: read whole under `server.maxBodyBytes`; parsed when it is a JSON object (its `model`, if
 *   any, routes the call), forwarded as received whatever it is.
 * - `stream`: streamed upstream unread, under `server.maxUploadBytes` (file uploads, unknown paths).
 * Absent: the request has no body (GET, DELETE); none is read or sent.
 */
export type BodyMode = "model" | "json" | "stream";

/**
 * One endpoint a call is made to. The core's OpenAI and Anthropic endpoints are fixed objects; a
 * provider's own (`ProviderAdapter.endpoints`) are made per request by its `resolve`.
 */
export interface Endpoint {
  kind: EndpointKind;
  wire: WireFormat;
  /** The inbound path without its query string, e.g. `/v1/chat/completions`; recorded as `endpoint`. */
  path: string;
  method: HttpMethod;
  body?: BodyMode;
  /**
   * A model call: its usage is metered and priced, and estimated when the response reports none.
   * Otherwise (retrieve, list, delete, files, token counts) the call is forwarded and recorded with
   * its outcome and `usage_source: none`.
   */
  billed: boolean;
  /**
   * Why a successful call here causes model usage the proxy does not price, recorded as
   * `price_source: "unpriced:<reason>"` (e.g. `batch`: the calls in a batch run later, billed by the provider).
   */
  unpriced?: string;
  /** The model, when the path names it (Gemini's `models/{model}:generateContent`, an Azure deployment). */
  model?: string;
  /** The response is a stream whatever the body says (Gemini's `:streamGenerateContent`). */
  stream?: boolean;
  /**
   * The proxy's own errors (refusals, an unreachable upstream) in this endpoint's wire format, for
   * wire formats other than OpenAI's and Anthropic's (which the core renders). The core adds its
   * headers (`x-audit-record-id`, `retry-after`…) to the response returned.
   */
  errorResponse?(error: WireError): Response;
}

/** One of the proxy's own errors (a `ProxyError` of the catalogue), for an endpoint to render. */
export interface WireError {
  /** The HTTP status, e.g. 502. */
  readonly status: number;
  /** The catalogue code, e.g. `upstream_unreachable`. */
  readonly code: string;
  /** The error type in OpenAI's vocabulary, e.g. `api_error`. */
  readonly type: string;
  readonly message: string;
}

/**
 * Who is calling, as established by an `authenticate` hook (a proxy key, a signed token). With a
 * principal the call's attribution is `verified`: after stage 3 the core holds the claimed
 * identity against `identity`, `agents` and `users` (see ./identity.ts), and the caller's own
 * credentials (`Authorization`, `x-api-key`) never go upstream — the provider's key does.
 */
export interface Principal {
  /** The key id or token subject; recorded as `key_id`. */
  keyId: string;
  tier?: string;
  /** Headers to put on the upstream call (e.g. the provider key the proxy holds). */
  upstreamHeaders?: Record<string, string>;
  /** Identity the credential itself establishes (a key's single agent, a token's claims). */
  identity?: Partial<Pick<Attribution, "agent_id" | "user_id" | "task_context">>;
  /** Globs the claimed agent / user must match (`["*"]`: any); absent means no claim is allowed. */
  agents?: readonly string[];
  users?: readonly string[];
  /**
   * Tags the credential fixes (a key's `--tag team=platform`, a token claim mapped to a tag): the
   * call carries them, and a call claiming another value for one is held like an identity claim
   * (403, or kept in `delegation.asserted.tags` with `onMismatch: "record"`).
   */
  tags?: Readonly<Record<string, string>>;
  /** A claim the credential does not allow: refuse with 403 (default) or record it beside the verified identity. */
  onMismatch?: "reject" | "record";
  /** RFC 8693 `act` claim (delegation chain), kept in the record's `delegation`. */
  act?: unknown;
  /** The consent the credential names (a token's claim): its id, or the purpose the call is for. */
  consent?: { id?: string; purpose?: string };
}

/** The consent a call was checked against (`consent` not "off"), as the record keeps it. */
export interface CallConsent {
  consent_id: string | null;
  purpose: string | null;
  lawful_basis: string | null;
  consent_source: ConsentSource;
}

/** Attribution fields a credential may leave unverified: kept as sent, named in `delegation.unverified`. */
export type ContextField = "task_context" | "session_id" | "parent_agent_id";

export interface Attribution {
  agent_id: string | null;
  user_id: string | null;
  task_context: string | null;
  session_id: string | null;
  parent_agent_id: string | null;
  trace_id: string | null;
  attribution: AttributionKind;
  /**
   * Where each identity claim was read, as the plugin that read it says: a 403 names it, and a user
   * that came only from the request body is kept as asserted rather than refused (./identity.ts).
   */
  sources: ClaimSources;
  /**
   * Extra key=value dimensions beside the fixed ones (team, project, cost centre…), merged key by
   * key across plugins.
   */
  tags: Readonly<Record<string, string>>;
}

/** The attribution of a call no plugin has attributed (yet). */
export const emptyAttribution: Attribution = {
  agent_id: null,
  user_id: null,
  task_context: null,
  session_id: null,
  parent_agent_id: null,
  trace_id: null,
  attribution: "default",
  sources: {},
  tags: {},
};

/** The identity fields a credential can fix or allow. */
export type IdentityField = "agent_id" | "user_id" | "task_context";

/** Where a claim came from: an inbound header (by its name), or a field of the request body. */
export type ClaimSource = { header: string } | { body: string };

export type ClaimSources = Readonly<Partial<Record<IdentityField, ClaimSource>>>;

export interface CallContext {
  readonly id: string;
  /** Wall-clock start (epoch ms) and the monotonic start used for durations. */
  readonly startedAt: number;
  readonly startedPerf: number;
  readonly request: Request;
  readonly endpoint: Endpoint;
  /** The request body exactly as received (null for GET). */
  readonly rawBody: Uint8Array | null;
  /** The parsed JSON body (null for GET). */
  readonly body: Record<string, unknown> | null;
  readonly model: string | null;
  readonly stream: boolean;
  principal: Principal | null;
  attribution: Attribution;
  /** The record's `delegation` (JSON text): the principal's `act` chain and any claims it did not allow. */
  delegation?: string | null;
  /** With a principal: fields kept as the client sent them that the credential does not vouch for. */
  unverified?: readonly ContextField[];
  /**
   * What the limit stage noted on a call it let through (the `flag` a `limit.check` returned),
   * recorded as `error_type` unless the call fails otherwise: e.g. what shadow mode would have
   * refused (`shadow:rate_limited`), or that limits could not be checked (`limits_unavailable:fail_open`).
   */
  limitFlag?: string | null;
  /** The consent check's verdict (./consent.ts); absent when consent is "off" for the call. */
  consent?: CallConsent;
  /** Output tokens a limit plugin bounded this call to (LimitStage.capOutput), if any. */
  outputCap?: number;
  /** The tier a limit plugin limited this call under (LimitStage.noteTier), if any. */
  tier?: string;
}

/** What a provider's meter learned from a response (DESIGN §6 normalised usage). */
export interface MeterResult {
  usage: Usage | null;
  responseModel: string | null;
  /** The stream reached its terminal event (`[DONE]`, `message_stop`, `response.completed`). */
  terminal: boolean;
  errorType: string | null;
  /**
   * Why the model stopped, one entry per generation, as the provider names it (`stop`, `length`,
   * `tool_calls`, `end_turn`…). Absent when the meter does not read them; empty when none arrived.
   */
  finishReasons?: readonly string[];
  /**
   * The generated text the response delivered so far (content, tool-call arguments, reasoning),
   * for estimating usage when none arrived (an aborted or broken stream). Called only then. A long
   * text may be given as a sample and the length of the rest (DeferredText keeps 16 Ki chars).
   * Null when the meter saw no part of the response (e.g. a body too large to buffer).
   */
  outputText?: () => string | OutputSample | null;
}

/** The first part of a long text, verbatim, and how many characters followed it. */
export interface OutputSample {
  text: string;
  moreChars: number;
}

/** Reads usage while bytes pass through; never throws into the stream (the runner guards it). */
export interface Meter {
  /** One server-sent event of a streamed response. */
  event(event: SSEEvent): void;
  /** The whole body of a non-streamed JSON response. */
  json(body: unknown): void;
  /**
   * Each chunk of a body in a binary framing the core does not parse — neither server-sent events
   * nor JSON by its content type, e.g. AWS's `application/vnd.amazon.eventstream` — as it passes.
   * After each chunk `result().terminal` is asked, as after events. Without it such a body is read
   * as JSON.
   */
  chunk?(bytes: Uint8Array): void;
  result(): MeterResult;
}

/** What a meter may know of the response it reads, besides its body. */
export interface MeteredResponse {
  status: number;
  /** The upstream's response headers (e.g. Bedrock's `x-amzn-bedrock-input-token-count`). */
  headers: Headers;
}
