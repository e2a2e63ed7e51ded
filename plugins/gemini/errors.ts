/**
 * The proxy's own errors in the Gemini API's shape (google.rpc.Status), which `@google/genai`
 * reads: `{ "error": { "code": 404, "message": "…", "status": "NOT_FOUND" } }`.
 */
import type { WireError } from "agent-attr";

const statusOf: Record<number, string> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  402: "RESOURCE_EXHAUSTED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  405: "INVALID_ARGUMENT",
  408: "DEADLINE_EXCEEDED",
  409: "ABORTED",
  413: "INVALID_ARGUMENT",
  429: "RESOURCE_EXHAUSTED",
  500: "INTERNAL",
  502: "UNAVAILABLE",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

export function geminiError(error: WireError): Response {
  const status = statusOf[error.status] ?? (error.status >= 500 ? "INTERNAL" : "INVALID_ARGUMENT");
  return Response.json({ error: { code: error.status, message: error.message, status } }, { status: error.status });
}
