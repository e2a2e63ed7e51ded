/**
 * The proxied endpoints as Bun-native routes: each hands the untouched Request to the pipeline
 * runner. They bypass the web framework on purpose — the hot path pays for no per-request routing
 * or context beyond Bun's own — and lift the idle timeout, since LLM streams can be quiet for
 * minutes (the pipeline enforces its own deadlines, the request body's included).
 *
 * Bun.serve has no bound per client, so the routes count the requests each client address has
 * open (from arrival until the call is over) and refuse past `server.maxConnectionsPerClient` with
 * 429, before reading the body and without lifting the idle timeout.
 */
import type { Server } from "bun";
import { ProxyError } from "../errors.ts";
import { refuseCall, runCall } from "../pipeline/index.ts";
import { endpointFor, endpointsByPath } from "../pipeline/endpoints.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import { isWebSocketUpgrade, upgradeSocket, type SocketBridge } from "./websocket/index.ts";

export type ProxyRoute = (request: Request, server: Server<SocketBridge>) => Promise<Response | undefined>;

export function proxyRoutes(rt: Runtime): Record<string, ProxyRoute> {
  const perClient = rt.limits.maxConnectionsPerClient;
  const open = new Map<string, number>();
  const routes: Record<string, ProxyRoute> = {};
  for (const [path, candidates] of endpointsByPath()) {
    // The Responses API's WebSocket mode: an upgrade on the same path (a socket counts as open until it closes).
    const socket = candidates.find((endpoint) => endpoint.kind === "responses");
    routes[path] = (request, server) => {
      const upgrade = socket !== undefined && isWebSocketUpgrade(request);
      const endpoint = upgrade ? socket : endpointFor(candidates, request.headers);
      const call = (onEnd: () => void = () => {}) =>
        upgrade ? upgradeSocket(request, server, endpoint, rt, onEnd) : runCall(request, endpoint, rt, onEnd);
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
  return routes;
}

function tooManyOpen(limit: number): ProxyError {
  return new ProxyError(
    "too_many_connections",
    `This client address already has ${limit} requests open at the proxy (server.maxConnectionsPerClient); wait for some to finish, or raise the limit in agent-attr.config.ts (0 turns it off, as behind a load balancer, where every client shares its address).`,
    // Its body is never read: the connection cannot carry another request.
    { "retry-after": "1", connection: "close" },
  );
}
