/** Helpers for provider adapters: building the upstream URL and making the upstream call. */
import type { UpstreamCall } from "../plugin.ts";

/** `base` + the part of the inbound path after `stripPrefix`, keeping the query string. */
export function upstreamURL(base: string, call: UpstreamCall, stripPrefix = ""): string {
  const inbound = new URL(call.ctx.request.url);
  const path = inbound.pathname.startsWith(stripPrefix) ? inbound.pathname.slice(stripPrefix.length) : inbound.pathname;
  return base.replace(/\/+$/, "") + path + inbound.search;
}

/**
 * Sends the call with Bun's fetch: no idle timeout of its own (the core enforces deadlines through
 * `call.signal`), redirects passed to the client as they are.
 */
export function fetchUpstream(url: string, call: UpstreamCall, setHeaders: Record<string, string> = {}): Promise<Response> {
  const headers = new Headers(call.headers);
  for (const [name, value] of Object.entries(setHeaders)) headers.set(name, value);
  for (const [name, value] of Object.entries(call.ctx.principal?.upstreamHeaders ?? {})) headers.set(name, value);
  return fetch(url, {
    method: call.ctx.endpoint.method,
    headers,
    body: call.body,
    signal: call.signal,
    redirect: "manual",
    timeout: false,
  });
}

/** A model-name matcher from glob patterns (`*` matches any run of characters). */
export function modelMatcher(patterns: readonly string[]): (model: string) => boolean {
  const regexes = patterns.map(
    (pattern) => new RegExp(`^${pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`),
  );
  return (model) => regexes.some((regex) => regex.test(model));
}
