/**
 * The one catalogue of errors the proxy itself produces — on proxied calls and on the audit API
 * alike. Each code has a fixed HTTP status and an error `type` in the OpenAI vocabulary;
 * `toWireError` renders it in the shape the caller's SDK understands (OpenAI
 * `{error:{message,type,code}}`, Anthropic `{type:"error",error:{type,message}}`); the audit API
 * answers in the OpenAI shape (`apiError`).
 */
import type { Endpoint, WireFormat } from "./pipeline/context.ts";

export const errorCatalogue = {
  invalid_json: { status: 400, type: "invalid_request_error" },
  missing_model: { status: 400, type: "invalid_request_error" },
  invalid_body: { status: 400, type: "invalid_request_error" },
  invalid_attribution: { status: 400, type: "invalid_request_error" },
  /** The audit API: a query string or path parameter it cannot use. */
  invalid_query: { status: 400, type: "invalid_request_error" },
  unauthorized: { status: 401, type: "authentication_error" },
  forbidden: { status: 403, type: "permission_error" },
  /** No active consent covers the call (`consent: "enforce"`): it is recorded and not forwarded. */
  consent_required: { status: 403, type: "permission_error" },
  not_found: { status: 404, type: "not_found_error" },
  method_not_allowed: { status: 405, type: "invalid_request_error" },
  /** The dashboard's sign-in, on a proxy with no access token (loopback only: nothing to sign in to). */
  no_sign_in: { status: 409, type: "invalid_request_error" },
  /** An export found a record that does not match the chain: nothing is signed (`audit verify` says what changed). */
  export_refused: { status: 409, type: "api_error" },
  /** An erasure found a record to redact that does not match the chain (edited in the database): nothing is erased (`audit verify` says what changed). */
  erasure_refused: { status: 409, type: "api_error" },
  body_timeout: { status: 408, type: "invalid_request_error" },
  no_provider: { status: 404, type: "not_found_error" },
  budget_exceeded: { status: 402, type: "insufficient_quota" },
  body_too_large: { status: 413, type: "request_too_large" },
  exceeds_limit: { status: 413, type: "request_too_large" },
  rate_limited: { status: 429, type: "rate_limit_error" },
  too_many_connections: { status: 429, type: "rate_limit_error" },
  upstream_unreachable: { status: 502, type: "api_error" },
  upstream_timeout: { status: 504, type: "timeout_error" },
  audit_unavailable: { status: 503, type: "api_error" },
  limits_unavailable: { status: 503, type: "api_error" },
  proxy_busy: { status: 503, type: "api_error" },
  plugin_error: { status: 500, type: "api_error" },
  provider_key_missing: { status: 500, type: "api_error" },
  internal_error: { status: 500, type: "api_error" },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export class ProxyError extends Error {
  readonly status: number;
  readonly type: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ProxyError";
    this.status = errorCatalogue[code].status;
    this.type = errorCatalogue[code].type;
  }
}

/** Anthropic names a few error types differently from OpenAI. */
const anthropicType: Record<string, string> = {
  invalid_request_error: "invalid_request_error",
  authentication_error: "authentication_error",
  permission_error: "permission_error",
  not_found_error: "not_found_error",
  request_too_large: "request_too_large",
  rate_limit_error: "rate_limit_error",
  insufficient_quota: "billing_error",
  timeout_error: "api_error",
  api_error: "api_error",
};

function wireErrorBody(error: ProxyError, wire: WireFormat): unknown {
  if (wire === "anthropic") {
    return { type: "error", error: { type: anthropicType[error.type] ?? "api_error", message: error.message } };
  }
  return { error: { message: error.message, type: error.type, code: error.code, param: null } };
}

/** An error answer of the audit API (OpenAI shape), from the catalogue. */
export function apiError(code: ErrorCode, message: string, headers: Record<string, string> = {}): Response {
  return toWireError(new ProxyError(code, message, headers), "openai");
}

/**
 * An error answer for a call to `endpoint`: in its own shape when it has one (a provider's wire
 * format, `Endpoint.errorResponse`), else OpenAI's or Anthropic's. The error's headers and
 * `extraHeaders` are set on it either way.
 */
export function endpointError(error: ProxyError, endpoint: Endpoint, extraHeaders: Record<string, string> = {}): Response {
  if (!endpoint.errorResponse) return toWireError(error, endpoint.wire, extraHeaders);
  let response: Response;
  try {
    response = endpoint.errorResponse(error);
  } catch {
    return toWireError(error, "openai", extraHeaders);
  }
  for (const [name, value] of Object.entries({ ...error.headers, ...extraHeaders })) response.headers.set(name, value);
  return response;
}

export function toWireError(error: ProxyError, wire: WireFormat, extraHeaders: Record<string, string> = {}): Response {
  return Response.json(wireErrorBody(error, wire), {
    status: error.status,
    headers: { ...error.headers, ...extraHeaders },
  });
}

/** Message of any thrown value, for logs and records; never includes a stack. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
