/**
 * Starting and stopping the proxy process: binds the port (never shared: reusePort is off),
 * lifts the idle timeout on proxied calls so quiet streams live, and on SIGTERM/SIGINT stops
 * accepting, lets in-flight calls finish (bounded), flushes every record and exits 0.
 */
import type { Server } from "bun";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import type { Runtime } from "../pipeline/runtime.ts";
import type { Logger } from "../plugin.ts";
import { accessDenials, createApp } from "./app.ts";
import { proxyRoutes } from "./proxy-routes.ts";
import { socketHandlers, type SocketBridge } from "./websocket/index.ts";
import { closeRuntime, configuredPlugins, createRuntime, waitForInflight } from "./runtime.ts";
import { checkStartup } from "./startup-check.ts";
import { createLogger } from "../log.ts";

export interface ProxyServer {
  server: Server<SocketBridge>;
  runtime: Runtime;
  url: string;
  /** Graceful stop: no new connections, in-flight calls finish (up to the grace time), records flushed. */
  stop(): Promise<void>;
}

export interface StartOptions {
  logDb: string;
  /** AGENT_ATTR_ADMIN_TOKEN: a token with the admin role. */
  adminToken?: string;
  /** AGENT_ATTR_AUDITOR_TOKEN: a token with the auditor role. */
  auditorToken?: string;
  /** Where plugins and start-up warnings log (default: the console). */
  log?: Logger;
}

export async function startProxy(config: Config, options: StartOptions): Promise<ProxyServer> {
  const { host, port } = config.server;
  const log = options.log ?? createLogger(config.server.log);
  const env = { ...process.env, AGENT_ATTR_ADMIN_TOKEN: options.adminToken, AGENT_ATTR_AUDITOR_TOKEN: options.auditorToken };
  const check = checkStartup(config, { plugins: configuredPlugins(config), logDb: options.logDb, env });
  if (check.problems.length > 0) throw new ConfigError("The proxy cannot start:", check.problems);
  const { tokens } = check;
  for (const warning of check.warnings) log.warn(warning);
  const runtime = await createRuntime(config, { logDb: options.logDb, log });
  const denials = accessDenials(runtime);
  let server: Server<SocketBridge> | undefined;
  const clientAddress = (request: Request) => server?.requestIP(request)?.address ?? null;
  const app = createApp(runtime, { tokens, denials, clientAddress, dashboard: config.dashboard.enabled });
  const handle = app.fetch;
  try {
    server = Bun.serve({
      hostname: host,
      port,
      reusePort: false,
      idleTimeout: 30,
      // The pipeline enforces the configured limit (and records the refusal); this is a backstop.
      maxRequestBodySize: Math.max(config.server.maxBodyBytes * 4, config.server.maxUploadBytes + 1024 * 1024),
      routes: proxyRoutes(runtime),
      websocket: socketHandlers(runtime),
      fetch: (request) => handle(request),
    });
  } catch (error) {
    await denials.close();
    await closeRuntime(runtime);
    const code = (error as { code?: string }).code;
    if (code === "EADDRINUSE") {
      throw new ConfigError(`Port ${port} on ${host} is already in use (is another agent-attr running?). Choose another with --port.`);
    }
    throw error;
  }
  let stopping: Promise<void> | null = null;
  return {
    server,
    runtime,
    url: `http://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${server.port}`,
    stop() {
      stopping ??= (async () => {
        const closing = server.stop(false);
        await waitForInflight(runtime, config.server.shutdownGraceMs);
        // Past the grace time, cut what is left: those calls record as aborted before the flush.
        server.stop(true);
        await waitForInflight(runtime, 1000);
        await denials.close();
        await closeRuntime(runtime);
        await closing;
      })();
      return stopping;
    },
  };
}
