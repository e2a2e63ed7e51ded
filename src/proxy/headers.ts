/**
 * Header hygiene for a transparent proxy (RFC 9110 §7.6.1): hop-by-hop headers and those named in
 * `Connection` never cross the proxy; attribution headers are for the proxy only.
 */
const hopByHop = [
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** Inbound headers that identify the caller to the proxy; stripped before the upstream call. */
export const attributionHeaders = [
  "x-agent-id",
  "x-user-id",
  "x-task-context",
  "x-session-id",
  "x-parent-agent-id",
  "traceparent",
  "tracestate",
];

function removeHopByHop(headers: Headers): void {
  const named = headers.get("connection");
  if (named) for (const name of named.split(",")) headers.delete(name.trim());
  for (const name of hopByHop) headers.delete(name);
}

export function upstreamRequestHeaders(inbound: Headers): Headers {
  const headers = new Headers(inbound);
  removeHopByHop(headers);
  // Bun computes the length of the body it sends; the upstream picks its own host. We ask for an
  // identity encoding so the bytes we tap are the bytes the client gets.
  for (const name of ["host", "content-length", "accept-encoding", ...attributionHeaders]) headers.delete(name);
  return headers;
}

export function clientResponseHeaders(upstream: Headers): Headers {
  const headers = new Headers(upstream);
  removeHopByHop(headers);
  // Bun's fetch has already decoded the body but keeps these; forwarding them would mislabel it.
  headers.delete("content-encoding");
  headers.delete("content-length");
  return headers;
}
