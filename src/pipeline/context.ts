/**
 * The typed state one call carries through the pipeline (see ./index.ts for the stages).
 */
import type { AttributionKind, Usage } from "../audit/record.ts";
import type { SSEEvent } from "../proxy/sse.ts";

export type WireFormat = "openai" | "anthropic";

export type EndpointKind =
  | "chat.completions"
  | "responses"
  | "embeddings"
  | "completions"
  | "models"
  | "messages"
  | "messages.count_tokens";

export interface Endpoint {
  kind: EndpointKind;
  wire: WireFormat;
  /** The inbound path, e.g. `/v1/chat/completions`. */
  path: string;
  method: "GET" | "POST";
}

/** Who is calling, as established by an `authenticate` hook. */
export interface Principal {
  keyId: string;
  tier?: string;
  /** Headers to put on the upstream call (e.g. the provider key the proxy holds). */
  upstreamHeaders?: Record<string, string>;
}

export interface Attribution {
  agent_id: string | null;
  user_id: string | null;
  task_context: string | null;
  session_id: string | null;
  parent_agent_id: string | null;
  trace_id: string | null;
  attribution: AttributionKind;
}

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
}

/** What a provider's meter learned from a response (DESIGN §6 normalised usage). */
export interface MeterResult {
  usage: Usage | null;
  responseModel: string | null;
  /** The stream reached its terminal event (`[DONE]`, `message_stop`, `response.completed`). */
  terminal: boolean;
  errorType: string | null;
  /**
   * The generated text the response delivered so far (content, tool-call arguments, reasoning),
   * for estimating usage when none arrived (an aborted or broken stream). Called only then.
   */
  outputText?: () => string;
}

/** Reads usage while bytes pass through; never throws into the stream (the runner guards it). */
export interface Meter {
  /** One server-sent event of a streamed response. */
  event(event: SSEEvent): void;
  /** The whole body of a non-streamed JSON response. */
  json(body: unknown): void;
  result(): MeterResult;
}
