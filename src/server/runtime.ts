/** Builds the runtime (store opened, sinks fed, plugins set up) from a validated config, and closes it. */
import { anthropic, headerAttribution, openai, otel, otelWantedByEnvironment, pricing } from "../../plugins/index.ts";
import type { Config } from "../config/schema.ts";
import { ConfigError } from "../config/load.ts";
import { errorMessage } from "../errors.ts";
import { PluginError, type Logger, type Plugin } from "../plugin.ts";
import { consentPolicy, consentHeader, sweepConsentExpiries } from "../pipeline/consent.ts";
import { Metrics } from "../pipeline/metrics.ts";
import { SinkFeed } from "../pipeline/sinks.ts";
import type { AuditStore } from "../store/contract.ts";
import { primaryStore } from "../store/open.ts";
import { neverUpstreamWith } from "../proxy/headers.ts";
import { tagKey } from "../tags.ts";
import { UpstreamSlots, type Runtime } from "../pipeline/runtime.ts";
import { createLogger } from "../log.ts";
import { pluginProblems } from "./startup-check.ts";

/** No `plugins` in the config: these, and the store `--log-db` names. */
export function defaultPlugins(): Plugin[] {
  return [openai(), anthropic(), headerAttribution(), pricing()];
}

/** Calls are always priced: a config whose plugins price nothing gets the built-in `pricing()`. */
export function withPricing(plugins: Plugin[]): Plugin[] {
  return plugins.some((plugin) => plugin.price) ? plugins : [...plugins, pricing()];
}

/**
 * Spans are exported when the environment asks for them (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set): a config without an `otel()` plugin gets one, last.
 */
export function withTracing(plugins: Plugin[], env: Record<string, string | undefined> = process.env): Plugin[] {
  return otelWantedByEnvironment(env) && !plugins.some((plugin) => plugin.name === "otel") ? [...plugins, otel()] : plugins;
}

/** The pipeline a config runs: its plugins (or the defaults), priced, traced when the environment asks. */
export function configuredPlugins(config: Config): Plugin[] {
  return withTracing(withPricing(config.plugins ?? defaultPlugins()));
}

/**
 * Opens the primary store (a plugin's `auditStore`, else `--log-db`'s), feeds the secondary sinks
 * from it, commits what a previous process left, then sets the plugins up. `startProxy` has
 * checked the config (./startup-check.ts) before.
 */
export async function createRuntime(config: Config, options: { logDb: string; log?: Logger }): Promise<Runtime> {
  const log = options.log ?? createLogger(config.server.log);
  const plugins = configuredPlugins(config);
  const problems = pluginProblems(plugins, options.logDb);
  if (problems.length > 0) throw new ConfigError("The plugins cannot run:", problems);
  const { checkpoint, signingKey, retentionDays, maxBacklog } = config.audit;
  const audit = { checkpoint, signingKey, retentionDays, maxBacklog };
  const primary = primaryStore(plugins, options.logDb);
  let store: AuditStore;
  try {
    store = await primary.provider.open({ logDb: options.logDb, log, audit });
  } catch (error) {
    throw primary.source === "--log-db" ? error : new PluginError(primary.source.replace(/^plugin /, ""), "auditStore.open", error);
  }
  const sinks = new SinkFeed(
    plugins.flatMap((p) => (p.audit ? [{ plugin: p.name, sink: p.audit }] : [])),
    log,
  );
  const metrics = new Metrics({ backlog: () => store.backlog });
  const pluginMetrics = metrics.forPlugins();
  const ready: Plugin[] = [];
  try {
    if (!sinks.empty) store.onCommitted((records) => sinks.deliver(records));
    const { interrupted, finished } = await store.recover();
    if (interrupted > 0) log.warn(`${interrupted} call(s) were in flight when the proxy last stopped; recorded as interrupted`);
    if (finished > 0)
      log.warn(`${finished} call(s) had finished but were not committed when the proxy last stopped; committed from the intent log`);
    for (const plugin of plugins) {
      try {
        await plugin.setup?.({ logDb: options.logDb, log, audit, keys: store.keys, metrics: pluginMetrics, trail: store.trail });
      } catch (error) {
        throw new PluginError(plugin.name, "setup", error);
      }
      ready.push(plugin);
    }
    const providers = plugins.flatMap((p) => (p.provider ? [{ plugin: p.name, adapter: p.provider }] : []));
    return {
      plugins,
      providers,
      store,
      sinks,
      reader: store.reader,
      trail: store.trail,
      keys: store.keys,
      consents: store.consents,
      consent: consentPolicy(config.consent),
      stopConsentSweep: sweepConsentExpiries({ consents: store.consents, log }),
      hashKey: store.hashKey,
      limits: {
        maxBodyBytes: config.server.maxBodyBytes,
        upstreamTimeoutMs: config.server.upstreamTimeoutMs,
        streamIdleTimeoutMs: config.server.streamIdleTimeoutMs,
        bodyTimeoutMs: config.server.bodyTimeoutMs,
        maxConnectionsPerClient: config.server.maxConnectionsPerClient,
        maxUploadBytes: config.server.maxUploadBytes,
        unknownPaths: config.server.unknownPaths,
      },
      tags: { ...config.tags, personalSet: new Set(config.tags.personal.map((key) => tagKey(key) ?? key)) },
      neverUpstream: neverUpstreamWith([consentHeader, ...plugins.flatMap((plugin) => plugin.inboundHeaders ?? [])]),
      failClosed: !config.audit.failOpen,
      log,
      inflight: new Set(),
      upstreamSlots: new UpstreamSlots(config.server.maxUpstreamConnections),
      metrics,
    };
  } catch (error) {
    await teardown(ready, log);
    await store.close().catch((closing: unknown) => log.error(`closing the audit store: ${errorMessage(closing)}`));
    await sinks.close();
    throw error;
  }
}

/** Waits until in-flight calls have finished and recorded, or `ms` passed. */
export async function waitForInflight(rt: Runtime, ms: number): Promise<void> {
  if (rt.inflight.size > 0) await Promise.race([Promise.all(rt.inflight), Bun.sleep(ms)]);
}

/**
 * Closes the store (it commits what is queued: the sinks are given those records too), lets the
 * sinks write what they were given and flushes them, then tears plugins down in reverse order.
 */
export async function closeRuntime(rt: Runtime): Promise<void> {
  rt.stopConsentSweep();
  await rt.store.close().catch((error: unknown) => rt.log.error(`closing the audit store: ${errorMessage(error)}`));
  await rt.sinks.close();
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
