/** Builds the runtime (plugins set up, sinks chosen) from a validated config, and closes it. */
import { anthropic, headerAttribution, openai, pricing, sqliteAudit } from "../../plugins/index.ts";
import { loadHashKey } from "../trail/secret.ts";
import type { Config } from "../config/schema.ts";
import { ConfigError } from "../config/load.ts";
import { errorMessage } from "../errors.ts";
import { PluginError, type Logger, type Plugin } from "../plugin.ts";
import { Metrics } from "../pipeline/metrics.ts";
import { neverUpstreamWith } from "../proxy/headers.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import { createLogger } from "../log.ts";
import { pluginProblems } from "./startup-check.ts";

export function defaultPlugins(): Plugin[] {
  return [openai(), anthropic(), headerAttribution(), pricing(), sqliteAudit()];
}

/** Calls are always priced: a config whose plugins price nothing gets the built-in `pricing()`. */
export function withPricing(plugins: Plugin[]): Plugin[] {
  return plugins.some((plugin) => plugin.price) ? plugins : [...plugins, pricing()];
}

/** The pipeline a config runs: its plugins (or the defaults), priced. */
export function configuredPlugins(config: Config): Plugin[] {
  return withPricing(config.plugins ?? defaultPlugins());
}

/** Sets the plugins up; `startProxy` has checked the config (./startup-check.ts) before. */
export async function createRuntime(config: Config, options: { logDb: string; log?: Logger }): Promise<Runtime> {
  const log = options.log ?? createLogger(config.server.log);
  const plugins = configuredPlugins(config);
  const problems = pluginProblems(plugins);
  if (problems.length > 0) throw new ConfigError("The plugins cannot run:", problems);
  const ready: Plugin[] = [];
  try {
    for (const plugin of plugins) {
      try {
        const { checkpoint, signingKey, retentionDays, maxBacklog } = config.audit;
        await plugin.setup?.({ logDb: options.logDb, log, audit: { checkpoint, signingKey, retentionDays, maxBacklog } });
      } catch (error) {
        throw new PluginError(plugin.name, "setup", error);
      }
      ready.push(plugin);
    }
    const sinks = plugins.flatMap((p) => (p.audit ? [{ plugin: p.name, sink: p.audit }] : []));
    const reader = sinks[0]?.sink.reader;
    if (!reader) throw new ConfigError(`The primary audit sink (plugin ${sinks[0]?.plugin}) has no reader after setup.`);
    const providers = plugins.flatMap((p) => (p.provider ? [{ plugin: p.name, adapter: p.provider }] : []));
    return {
      plugins,
      providers,
      sinks,
      reader,
      trail: sinks[0]?.sink.trail ?? null,
      keys: sinks[0]?.sink.keys ?? null,
      hashKey: sinks[0]?.sink.hashKey ?? loadHashKey(options.logDb),
      limits: {
        maxBodyBytes: config.server.maxBodyBytes,
        upstreamTimeoutMs: config.server.upstreamTimeoutMs,
        streamIdleTimeoutMs: config.server.streamIdleTimeoutMs,
      },
      neverUpstream: neverUpstreamWith(plugins.flatMap((plugin) => plugin.inboundHeaders ?? [])),
      failClosed: !config.audit.failOpen,
      log,
      inflight: new Set(),
      metrics: new Metrics(),
    };
  } catch (error) {
    await teardown(ready, log);
    throw error;
  }
}

/** Waits until in-flight calls have finished and recorded, or `ms` passed. */
export async function waitForInflight(rt: Runtime, ms: number): Promise<void> {
  if (rt.inflight.size > 0) await Promise.race([Promise.all(rt.inflight), Bun.sleep(ms)]);
}

/** Tears plugins down in reverse order (sinks flush and close). */
export async function closeRuntime(rt: Runtime): Promise<void> {
  await teardown(rt.plugins, rt.log);
}

async function teardown(plugins: readonly Plugin[], log: Logger): Promise<void> {
  for (const plugin of [...plugins].reverse()) {
    try {
      await plugin.teardown?.();
    } catch (error) {
      log.error(`[plugin ${plugin.name}] teardown: ${errorMessage(error)}`);
    }
  }
}
