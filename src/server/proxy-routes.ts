/**
 * The proxied endpoints as Bun-native routes: each hands the untouched Request to the pipeline
 * runner. They bypass the web framework on purpose — the hot path pays for no per-request routing
 * or context beyond Bun's own — and lift the idle timeout, since LLM streams can be quiet for
 * minutes (the pipeline enforces its own deadlines).
 */
import type { Server } from "bun";
import { runCall } from "../pipeline/index.ts";
import { endpointFor, endpointsByPath } from "../pipeline/endpoints.ts";
import type { Runtime } from "../pipeline/runtime.ts";

export type ProxyRoute = (request: Request, server: Server<undefined>) => Promise<Response>;

export function proxyRoutes(rt: Runtime): Record<string, ProxyRoute> {
  const routes: Record<string, ProxyRoute> = {};
  for (const [path, candidates] of endpointsByPath()) {
    routes[path] = (request, server) => {
      server.timeout(request, 0);
      return runCall(request, endpointFor(candidates, request.headers), rt);
    };
  }
  return routes;
}
