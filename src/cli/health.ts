/**
 * `agent-attr health`: asks a running proxy's `/healthz` and exits 0 when it answers ok — the
 * container HEALTHCHECK (the image has no curl). It finds the proxy where `proxy start` would
 * listen with the same flags, environment (PORT, HOST) and config, on loopback when it listens on
 * every address; `--url` names another.
 */
import { defineCommand } from "citty";
import { z } from "zod";
import { errorMessage } from "../errors.ts";
import { configArg, exitCodes, parseFlag, startSettings, UsageError } from "./_shared.ts";

/** Where a proxy listening on `host:port` answers this machine. */
export function localURL(host: string, port: number): string {
  const local = host === "0.0.0.0" ? "127.0.0.1" : host === "::" || host === "[::]" ? "[::1]" : host;
  return `http://${local.includes(":") && !local.startsWith("[") ? `[${local}]` : local}:${port}`;
}

export const healthCommand = defineCommand({
  meta: { name: "health", description: "Check that a running proxy answers /healthz (exit 0 healthy, 7 not)" },
  args: {
    url: {
      type: "string",
      description: "The proxy's base URL (default: where 'proxy start' listens with these flags, PORT/HOST and the config)",
      valueHint: "URL",
    },
    port: { type: "string", description: "Port the proxy listens on (default: PORT, the config's server.port, or 8080)" },
    host: { type: "string", description: "Address it listens on (default: HOST, the config's server.host, or 127.0.0.1)" },
    timeout: { type: "string", description: "Milliseconds to wait for the answer (default 3000)" },
    config: configArg,
  },
  async run({ args }) {
    const timeout = parseFlag("timeout", z.coerce.number().int().positive().default(3000), args.timeout);
    let base = args.url;
    if (base === undefined) {
      const { config } = await startSettings({ port: args.port, host: args.host, config: args.config });
      base = localURL(config.server.host, config.server.port);
    } else if (!URL.canParse(base)) {
      throw new UsageError(`--url: '${base}' is not a URL (e.g. http://127.0.0.1:8080)`);
    }
    const url = new URL("/healthz", base);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(timeout) });
      const body = await response.text();
      if (response.ok) {
        process.stdout.write(`healthy: ${url} answered ${response.status} ${body.trim()}\n`);
        return;
      }
      process.stdout.write(`unhealthy: ${url} answered ${response.status}\n`);
    } catch (error) {
      process.stdout.write(`unhealthy: ${url} did not answer (${errorMessage(error)})\n`);
    }
    process.exitCode = exitCodes.unhealthy;
  },
});
