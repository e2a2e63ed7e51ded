/** `agent-attr proxy start`: run the proxy until SIGTERM/SIGINT. */
import { defineCommand } from "citty";
import { ConfigError } from "../config/load.ts";
import { errorMessage } from "../errors.ts";
import { createLogger, resolveLogSettings } from "../log.ts";
import { startProxy } from "../server/serve.ts";
import { ensureFetchCap } from "./fetch-cap.ts";
import { startArgs, startSettings } from "./_shared.ts";
import { removeWhatAFailedStartCreated } from "./start-files.ts";

const start = defineCommand({
  meta: { name: "start", description: "Start the proxy" },
  args: startArgs,
  async run({ args }) {
    const { configFile, config, logDb } = await startSettings(args);
    let log: ReturnType<typeof createLogger>;
    try {
      log = createLogger(resolveLogSettings(config.server.log));
    } catch (error) {
      throw new ConfigError("The proxy cannot start:", [errorMessage(error)]);
    }
    ensureFetchCap(config.server.maxUpstreamConnections, log.warn);
    const proxy = await removeWhatAFailedStartCreated(logDb, config, () =>
      startProxy(config, {
        logDb,
        adminToken: process.env.AGENT_ATTR_ADMIN_TOKEN || undefined,
        auditorToken: process.env.AGENT_ATTR_AUDITOR_TOKEN || undefined,
        log,
      }),
    );
    log.info(`proxy listening on ${proxy.url} (config: ${configFile ?? "built-in defaults"}, audit: ${withoutPassword(logDb)})`);
    const shutdown = async (signal: string) => {
      log.info(`${signal}: finishing in-flight calls and flushing the audit log`);
      await proxy.stop();
      log.info("stopped");
      process.exit(0);
    };
    process.once("SIGTERM", () => void shutdown("SIGTERM"));
    process.once("SIGINT", () => void shutdown("SIGINT"));
  },
});

export const proxyCommand = defineCommand({
  meta: { name: "proxy", description: "Run the proxy" },
  subCommands: { start },
});

/** A `--log-db` URL as it may be logged: its password (postgres://user:PASSWORD@…) masked. */
function withoutPassword(logDb: string): string {
  if (!URL.canParse(logDb)) return logDb;
  const url = new URL(logDb);
  if (!url.password) return logDb;
  url.password = "***";
  return url.toString();
}
