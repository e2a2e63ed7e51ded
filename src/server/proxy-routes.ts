/**
 * The proxied endpoints as Bun-native routes: each hands the untouched Request to the pipeline
 * runner. They bypass the web framework on purpose — the hot path pays for no per-request routing
 * or context beyond Bun's own — and lift the idle timeout, since LLM streams can be quiet for
 * minutes (the pipeline enforces its own deadlines, the request body's included).
 *
 * The model calls are static routes. Everything else under /v1 (the rest of the OpenAI and
 * Anthropic APIs, and paths the proxy does not know) and under the prefixes providers claim for
 * their own APIs (`ProviderAdapter.endpoints`) is one wildcard route per prefix, resolved per
 * request: the providers that claim the prefix first, in plugin order, then for /v1 the core's
 * surface (../pipeline/endpoints.ts).
 *
 * Bun.serve has no bound per client, so the routes count the requests each client address has
 * open (from arrival until the call is over) and refuse past `server.maxConnectionsPerClient` with
 * 429, before reading the body and without lifting the idle timeout.
 */
import type { Server } from "bun";
import { ProxyError, apiError, errorMessage } from "../errors.ts";
import { refuseCall, runCall } from "../pipeline/index.ts";
import type { Endpoint } from "../pipeline/context.ts";
import { endpointFor, endpointsByPath, v1Endpoint } from "../pipeline/endpoints.ts";
import { callHookSync } from "../pipeline/hooks.ts";
import type { RoutedProvider, Runtime } from "../pipeline/runtime.ts";
import { isWebSocketUpgrade, upgradeSocket, type SocketBridge } from "./websocket/index.ts";

export type ProxyRoute = (request: Request, server: Server<SocketBridge>) => Promise<Response | undefined>;

/** The endpoint of a request, and the provider that resolved it when it is one of a provider's own paths. */
type Resolved = { endpoint: Endpoint; provider: RoutedProvider | null };

export function proxyRoutes(rt: Runtime): Record<string, ProxyRoute> {
  const serve = admission(rt);
  const routes: Record<string, ProxyRoute> = {};
  for (const [path, candidates] of endpointsByPath()) {
    const method = candidates[0]!.method;
    // The Responses API's WebSocket mode: an upgrade on the same path (a socket counts as open until it closes).
    const socket = candidates.find((endpoint) => endpoint.kind === "responses");
    routes[path] = (request, server) => {
      if (socket !== undefined && isWebSocketUpgrade(request)) return serve(request, server, { endpoint: socket, provider: null }, true);
      // Another method on a model call's path is another endpoint (GET /v1/chat/completions lists stored completions).
      return request.method === method
        ? serve(request, server, { endpoint: endpointFor(candidates, request.headers), provider: null })
        : resolveUnder("/v1/", request, server);
    };
  }
  const claims = prefixClaims(rt.providers);
  const resolveUnder = (prefix: string, request: Request, server: Server<SocketBridge>): Promise<Response | undefined> => {
    const url = new URL(request.url);
    let resolved: Resolved | null;
    try {
      resolved = resolveRequest(prefix, claims.get(prefix) ?? [], request, url);
    } catch (error) {
      rt.log.error(errorMessage(error));
      return Promise.resolve(apiError("plugin_error", errorMessage(error)));
    }
    if (!resolved) return Promise.resolve(apiError("not_found", `agent-attr does not proxy ${request.method} ${url.pathname}.`));
    if (resolved.endpoint.kind === "other" && rt.limits.unknownPaths === "refuse") {
      return refuseCall(request, resolved.endpoint, rt, unknownPath(request.method, url.pathname));
    }
    return serve(request, server, resolved);
  };
  for (const prefix of new Set(["/v1/", ...claims.keys()])) {
    routes[`${prefix}*`] = (request, server) => resolveUnder(prefix, request, server);
  }
  return routes;
}

/** The providers that claim each prefix, in plugin order. */
function prefixClaims(providers: readonly RoutedProvider[]): Map<string, RoutedProvider[]> {
  const claims = new Map<string, RoutedProvider[]>();
  for (const provider of providers) {
    for (const prefix of provider.adapter.endpoints?.prefixes ?? []) claims.set(prefix, [...(claims.get(prefix) ?? []), provider]);
  }
  return claims;
}

function resolveRequest(prefix: string, claimants: readonly RoutedProvider[], request: Request, url: URL): Resolved | null {
  const inbound = { method: request.method, path: url.pathname, query: url.searchParams, headers: request.headers };
  for (const provider of claimants) {
    const endpoint = callHookSync(provider.plugin, "provider.endpoints.resolve", () => provider.adapter.endpoints!.resolve(inbound));
    if (endpoint) return { endpoint, provider };
  }
  return prefix === "/v1/" ? { endpoint: v1Endpoint(request.method, url.pathname, request.headers), provider: null } : null;
}

/**
 * Runs admitted calls: the per-client bound, then the pipeline with the idle timeout lifted. An
 * upgrade (`socket`) opens the Responses API's WebSocket instead, counted as open until it closes.
 */
function admission(rt: Runtime) {
  const perClient = rt.limits.maxConnectionsPerClient;
  const open = new Map<string, number>();
  return (
    request: Request,
    server: Server<SocketBridge>,
    { endpoint, provider }: Resolved,
    socket = false,
  ): Promise<Response | undefined> => {
    const call = (onEnd?: () => void) =>
      socket ? upgradeSocket(request, server, endpoint, rt, onEnd ?? (() => {})) : runCall(request, endpoint, rt, onEnd, provider);
    const address = perClient > 0 ? server.requestIP(request)?.address : undefined;
    if (address === undefined) {
      server.timeout(request, 0);
      return call();
    }
    const count = open.get(address) ?? 0;
    if (count >= perClient) return refuseCall(request, endpoint, rt, tooManyOpen(perClient));
    open.set(address, count + 1);
    server.timeout(request, 0);
    return call(() => {
      const left = open.get(address)! - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  };
}

function unknownPath(method: string, path: string): ProxyError {
  return new ProxyError(
    "not_found",
    `agent-attr does not forward ${method} ${path}: it is no endpoint the proxy knows, and server.unknownPaths is "refuse" in agent-attr.config.ts.`,
  );
}

function tooManyOpen(limit: number): ProxyError {
  return new ProxyError(
    "too_many_connections",
    `This client address already has ${limit} requests open at the proxy (server.maxConnectionsPerClient); wait for some to finish, or raise the limit in agent-attr.config.ts (0 turns it off, as behind a load balancer, where every client shares its address).`,
    // Its body is never read: the connection cannot carry another request.
    { "retry-after": "1", connection: "close" },
  );
}
