/**
 * The proxy's own errors in Bedrock's shape, as the AWS SDKs read them: `{ "message": "…" }`, the
 * exception named by the `x-amzn-ErrorType` header. The names are Bedrock runtime's own
 * exceptions (by HTTP status), so `instanceof ThrottlingException` and the SDK's retry rules work
 * as they do against AWS; the status stays the proxy's (402 for an exhausted budget, 401 for a
 * missing proxy key).
 */
import type { ProxyError } from "agent-attr";

function exceptionOf(status: number): string {
  if (status === 401 || status === 403) return "AccessDeniedException";
  if (status === 404) return "ResourceNotFoundException";
  if (status === 402) return "ServiceQuotaExceededException";
  if (status === 429) return "ThrottlingException";
  if (status === 504) return "ModelTimeoutException";
  if (status === 502 || status === 503) return "ServiceUnavailableException";
  if (status >= 500) return "InternalServerException";
  return "ValidationException";
}

export function bedrockError(error: ProxyError): Response {
  return Response.json({ message: error.message }, { status: error.status, headers: { "x-amzn-errortype": exceptionOf(error.status) } });
}
