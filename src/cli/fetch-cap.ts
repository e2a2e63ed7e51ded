/**
 * Bun's fetch runs at most BUN_CONFIG_MAX_HTTP_REQUESTS requests at once (default 256) and queues
 * the rest silently: with 256 long calls open, every other call would wait for one of them to end.
 * Bun reads the variable once, at process start, so setting it from code does nothing; the proxy
 * instead re-executes itself (same pid, same arguments, `process.execve`) with the variable set from
 * `server.maxUpstreamConnections`, plus headroom for its own calls (checkpoint webhooks, JWKS).
 */
import { fetchHeadroom } from "../config/schema.ts";

/** Marks the re-executed process, so a variable something else overrides cannot cause a loop. */
const reexecMark = "AGENT_ATTR_FETCH_CAP_SET";

/** The fetch limit the proxy needs for `maxUpstreamConnections` calls. */
export function fetchCapFor(maxUpstreamConnections: number): number {
  return Math.min(65_535, maxUpstreamConnections + fetchHeadroom);
}

/**
 * Returns when this process's fetch limit is at least what the config needs; otherwise replaces
 * the process with one that has it (and does not return). Where that cannot be done, warns.
 */
export function ensureFetchCap(maxUpstreamConnections: number, warn: (message: string) => void): void {
  const wanted = fetchCapFor(maxUpstreamConnections);
  const current = Number(process.env.BUN_CONFIG_MAX_HTTP_REQUESTS ?? 256);
  if (current >= wanted) return;
  const why = `Bun's fetch would run only ${current} upstream calls at once and queue the rest`;
  if (process.env[reexecMark]) {
    warn(`${why}: BUN_CONFIG_MAX_HTTP_REQUESTS=${wanted} was set but not applied; set it in the environment that starts the proxy.`);
    return;
  }
  if (typeof process.execve !== "function") {
    warn(`${why}: set BUN_CONFIG_MAX_HTTP_REQUESTS=${wanted} in the environment that starts the proxy.`);
    return;
  }
  // A compiled binary's argv[1] is its own embedded entry (/$bunfs/root/...), which it adds itself.
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN");
  const args = compiled ? process.argv.slice(2) : [...process.execArgv, ...process.argv.slice(1)];
  try {
    process.execve(process.execPath, [process.execPath, ...args], {
      ...process.env,
      BUN_CONFIG_MAX_HTTP_REQUESTS: String(wanted),
      [reexecMark]: "1",
    });
  } catch (error) {
    // E.g. ENOEXEC under an emulator (qemu-user) that cannot exec its own guest binary: start
    // anyway, with Bun's limit, and say how to lift it.
    const reason = error instanceof Error ? error.message : String(error);
    warn(
      `${why}: re-executing with BUN_CONFIG_MAX_HTTP_REQUESTS=${wanted} failed (${reason}); set it in the environment that starts the proxy.`,
    );
  }
}
