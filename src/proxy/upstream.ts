/** Helpers for provider adapters: building the upstream URL and making the upstream call. */
import type { UpstreamCall, UpstreamSocket, UpstreamSocketCall } from "../plugin.ts";

/**
 * `base` + the part of the inbound path after `stripPrefix`, keeping the query string but for a
 * `key` parameter: Google's APIs take their API key as `?key=`, and a key meant for Google must not
 * reach another provider (gemini() moves it into its own header).
 */
export function upstreamURL(base: string, call: Pick<UpstreamCall, "ctx">, stripPrefix = ""): string {
  // An inbound request URL is absolute ("http://host:port/path?query"): its path starts at the
  // first "/" after the scheme's "//".
  const url = call.ctx.request.url;
  const pathAndQuery = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  const path = pathAndQuery.startsWith(stripPrefix) ? pathAndQuery.slice(stripPrefix.length) : pathAndQuery;
  return (base.endsWith("/") ? base.replace(/\/+$/, "") : base) + withoutKeyParam(path);
}

/**
 * The path and query without its `key` parameters — by their decoded name, as a server reads them
 * (`%6Bey=` is one too) — and every other byte of the query as the client sent it (re-encoding the
 * rest would change `%20` into `+` and `flag` into `flag=`).
 */
function withoutKeyParam(pathAndQuery: string): string {
  const at = pathAndQuery.indexOf("?");
  if (at < 0) return pathAndQuery;
  const query = pathAndQuery.slice(at + 1);
  if (!/(^|&)(key|[^&=]*%)/i.test(query)) return pathAndQuery; // no `key` nor an encoded name: the usual case
  const kept = query.split("&").filter((pair) => !isKeyParam(pair));
  return pathAndQuery.slice(0, at) + (kept.length > 0 ? `?${kept.join("&")}` : "");
}

function isKeyParam(pair: string): boolean {
  const end = pair.indexOf("=");
  const name = (end < 0 ? pair : pair.slice(0, end)).replaceAll("+", " ");
  try {
    return decodeURIComponent(name) === "key";
  } catch {
    return false; // a malformed escape names no parameter a server would read as `key`
  }
}

/**
 * Sends the call with Bun's fetch: no idle timeout of its own (the core enforces deadlines through
 * `call.signal`), redirects passed to the client as they are. `setHeaders` are set on the call's
 * own copy of the headers.
 */
export function fetchUpstream(url: string, call: UpstreamCall, setHeaders: Record<string, string> = {}): Promise<Response> {
  const headers = call.headers;
  for (const name in setHeaders) headers.set(name, setHeaders[name]!);
  const principalHeaders = call.ctx.principal?.upstreamHeaders;
  if (principalHeaders) for (const name in principalHeaders) headers.set(name, principalHeaders[name]!);
  return fetch(url, {
    method: call.ctx.endpoint.method,
    headers,
    body: call.body,
    signal: call.signal,
    redirect: "manual",
    timeout: false,
  });
}

/**
 * `upstreamURL` for a WebSocket: the same URL with `http:` turned into `ws:` and `https:` into
 * `wss:`, and the provider's upstream headers (the principal's) set on the call's copy, after `setHeaders`.
 */
export function upstreamSocket(
  base: string,
  call: UpstreamSocketCall,
  stripPrefix = "",
  setHeaders: Record<string, string> = {},
): UpstreamSocket {
  const url = new URL(upstreamURL(base, call, stripPrefix));
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  const headers = call.headers;
  for (const name in setHeaders) headers.set(name, setHeaders[name]!);
  const principalHeaders = call.ctx.principal?.upstreamHeaders;
  if (principalHeaders) for (const name in principalHeaders) headers.set(name, principalHeaders[name]!);
  return { url: url.href, headers };
}

/** A matcher from glob patterns (`*` matches any run of characters, nothing else is special): true when any matches. */
export function globMatcher(patterns: readonly string[]): (model: string) => boolean {
  const regexes = patterns.map(
    (pattern) =>
      new RegExp(
        `^${pattern
          .split("*")
          .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
          .join(".*")}$`,
      ),
  );
  return (model) => regexes.some((regex) => regex.test(model));
}

/** `globMatcher`, for model names (its first use). */
export const modelMatcher = globMatcher;
