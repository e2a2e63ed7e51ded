/**
 * Header hygiene for a transparent proxy (RFC 9110 §7.6.1): hop-by-hop headers and those named in
 * `Connection` never cross the proxy; headers plugins read for the proxy alone never go upstream.
 */
import { tagHeaderPrefix } from "../tags.ts";

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

const neverUpstream = [
  ...hopByHop,
  // Bun computes the length of the body it sends; the upstream picks its own host. Bun's fetch
  // sends its own Accept-Encoding (what it decodes) and hands over the decoded body: the bytes we
  // tap are the bytes the client gets (Content-Encoding is dropped on the way back).
  "host",
  "content-length",
  "accept-encoding",
];

// Bun's fetch has already decoded the body but keeps these; forwarding them would mislabel it.
const neverToClient = [...hopByHop, "content-encoding", "content-length"];

/**
 * A copy of `source` without the names in `drop` nor those listed in its `Connection` header.
 * Copying the whole list and deleting is done natively, and measured cheaper than building a new
 * list from an iteration (which also crosses into JavaScript once per header).
 */
function filtered(source: Headers, drop: readonly string[]): Headers {
  const headers = new Headers(source);
  const named = source.get("connection");
  for (const name of drop) headers.delete(name);
  if (named) {
    for (const token of named.split(",")) {
      const name = token.trim();
      // A token that is no header name (e.g. "x y") names nothing to drop; Headers.delete would throw.
      if (headerName.test(name)) headers.delete(name);
    }
  }
  return headers;
}

/** RFC 9110 §5.1: a field name is a token. */
const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * What is never sent upstream: hop-by-hop headers, `host`, the length and encoding Bun sets
 * itself, and `proxyOnly` — the headers plugins read for the proxy alone (`Plugin.inboundHeaders`,
 * e.g. the attribution headers). Built once per runtime.
 */
export function neverUpstreamWith(proxyOnly: readonly string[]): readonly string[] {
  return [...new Set([...neverUpstream, ...proxyOnly.map((name) => name.toLowerCase())])];
}

/**
 * A copy of the inbound headers without `drop` (from `neverUpstreamWith`), those `Connection`
 * names, every `x-attr-tag-*` header (tags are for the proxy alone, whichever plugin reads them),
 * and the dashboard's session cookie (a browser sends it with any request to this origin, `/v1/*`
 * included: an admin session must never reach an upstream); the client's other cookies pass.
 */
export function upstreamRequestHeaders(inbound: Headers, drop: readonly string[]): Headers {
  const headers = filtered(inbound, drop);
  for (const name of inbound.keys()) if (name.startsWith(tagHeaderPrefix)) headers.delete(name);
  const cookie = headers.get("cookie");
  if (cookie?.includes(sessionCookiePrefix)) {
    const kept = cookie
      .split(";")
      .map((pair) => pair.trim())
      .filter((pair) => pair !== "" && !pair.startsWith(sessionCookiePrefix));
    if (kept.length > 0) headers.set("cookie", kept.join("; "));
    else headers.delete("cookie");
  }
  return headers;
}

/** The dashboard's session cookie (../server/sessions.ts `sessionCookie`). */
const sessionCookiePrefix = "agent_attr_session=";

export function clientResponseHeaders(upstream: Headers): Headers {
  return filtered(upstream, neverToClient);
}
