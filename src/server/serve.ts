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
import { resolveAccessTokens, type AccessToken } from "./roles.ts";
import { closeRuntime, createRuntime, waitForInflight } from "./runtime.ts";
import { errorMessage } from "../errors.ts";

export interface ProxyServer {
  server: Server<undefined>;
  runtime: Runtime;
  url: string;
  /** Graceful stop: no new connections, in-flight calls finish (up to the grace time), records flushed. */
  stop(): Promise<void>;
}

const loopback = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

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
  let tokens: AccessToken[];
  try {
    tokens = resolveAccessTokens(config.admin.tokens, {
      ...process.env,
      AGENT_ATTR_ADMIN_TOKEN: options.adminToken,
      AGENT_ATTR_AUDITOR_TOKEN: options.auditorToken,
    });
  } catch (error) {
    throw new ConfigError(errorMessage(error));
  }
  if (!loopback.has(host) && !tokens.some((t) => t.role === "admin")) {
    throw new ConfigError(
      `Refusing to listen on ${host} without an admin token: the audit API would be open to the network. ` +
        "Set AGENT_ATTR_ADMIN_TOKEN (or add { tokenEnv, role: \"admin\" } to admin.tokens in the config), or listen on 127.0.0.1.",
    );
  }
  const runtime = await createRuntime(config, { logDb: options.logDb, log: options.log });
  if (!loopback.has(host) && !runtime.plugins.some((plugin) => plugin.authenticate)) {
    runtime.log.warn(
      `Listening on ${host} in open mode: any client that reaches this port can assert any agent, user or task (records say attribution "asserted"). ` +
        "To verify identity, add apiKeys() to the config's plugins and hand out keys from 'agent-attr keys create', or add jwtAttribution({...}).",
    );
  }
  const denials = accessDenials(runtime);
  let server: Server<undefined> | undefined;
  const clientAddress = (request: Request) => server?.requestIP(request)?.address ?? null;
  const app = createApp(runtime, { tokens, denials, clientAddress });
  const handle = app.fetch;
  try {
    server = Bun.serve({
      hostname: host,
      port,
      reusePort: false,
      idleTimeout: 30,
      // The pipeline enforces the configured limit (and records the refusal); this is a backstop.
      maxRequestBodySize: config.server.maxBodyBytes * 4,
      routes: proxyRoutes(runtime),
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
