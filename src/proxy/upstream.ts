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

function withoutKeyParam(pathAndQuery: string): string {
  const at = pathAndQuery.indexOf("?");
  if (at < 0 || !/(^|&)key=/.test(pathAndQuery.slice(at + 1))) return pathAndQuery;
  const params = new URLSearchParams(pathAndQuery.slice(at + 1));
  params.delete("key");
  const query = params.toString();
  return pathAndQuery.slice(0, at) + (query ? `?${query}` : "");
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
