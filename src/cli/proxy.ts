/** `agent-attr proxy start`: run the proxy until SIGTERM/SIGINT. */
import { defineCommand } from "citty";
import { findConfigFile, loadConfig } from "../config/load.ts";
import { consoleLogger } from "../pipeline/runtime.ts";
import { startProxy } from "../server/serve.ts";
import { ensureFetchCap } from "./fetch-cap.ts";
import { logDbArg, parseFlag, portSchema, resolveLogDb, withUserErrors } from "./_shared.ts";

const start = defineCommand({
  meta: { name: "start", description: "Start the proxy" },
  args: {
    port: { type: "string", description: "Port to listen on (default 8080)" },
    host: { type: "string", description: "Address to bind (default 127.0.0.1)" },
    "log-db": logDbArg,
    config: { type: "string", description: "Config file (default: AGENT_ATTR_CONFIG or ./agent-attr.config.ts)" },
  },
  run: withUserErrors(async ({ args }) => {
    const configFile = findConfigFile(args.config);
    const config = await loadConfig(configFile);
    if (args.port !== undefined) config.server.port = parseFlag("port", portSchema, args.port);
    if (args.host !== undefined) config.server.host = args.host;
    const logDb = resolveLogDb(args["log-db"], config.audit.logDb);
    ensureFetchCap(config.server.maxUpstreamConnections, consoleLogger.warn);
    const proxy = await startProxy(config, {
      logDb,
      adminToken: process.env.AGENT_ATTR_ADMIN_TOKEN || undefined,
      auditorToken: process.env.AGENT_ATTR_AUDITOR_TOKEN || undefined,
    });
    console.log(
      `agent-attr: proxy listening on ${proxy.url} (config: ${configFile ?? "built-in defaults"}, audit: ${logDb})`,
    );
    const shutdown = async (signal: string) => {
      console.log(`agent-attr: ${signal}: finishing in-flight calls and flushing the audit log`);
      await proxy.stop();
      console.log("agent-attr: stopped");
      process.exit(0);
    };
    process.once("SIGTERM", () => void shutdown("SIGTERM"));
    process.once("SIGINT", () => void shutdown("SIGINT"));
  }),
});

export const proxyCommand = defineCommand({
  meta: { name: "proxy", description: "Run the proxy" },
  subCommands: { start },
});
