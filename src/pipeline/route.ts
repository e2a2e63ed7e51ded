/** Stage 1, route: the first provider whose `match` says yes serves the call. */
import { ProxyError } from "../errors.ts";
import type { Endpoint } from "./context.ts";
import type { RoutedProvider, Runtime } from "./runtime.ts";
import { callHookSync } from "./hooks.ts";

export function route(endpoint: Endpoint, model: string | null, rt: Runtime): RoutedProvider {
  for (const provider of rt.providers) {
    if (callHookSync(provider.plugin, "provider.match", () => provider.adapter.match(endpoint, model))) return provider;
  }
  throw new ProxyError(
    "no_provider",
    model
      ? `No configured provider serves model '${model}' on ${endpoint.path}; add a provider whose models match it.`
      : `No configured provider serves ${endpoint.path}.`,
  );
}
