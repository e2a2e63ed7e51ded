/**
 * Which store is primary: the one a plugin provides (`Plugin.auditStore`; two are a config
 * error, see ../server/startup-check.ts), else the one `--log-db` names (`storeFor`). The runtime
 * opens the proxy's store through it, the CLI its admin handle, and the start-up check asks it
 * for problems — so all three agree on where the trail is.
 */
import type { Plugin } from "../plugin.ts";
import type { AdminContext, AuditAdmin, AuditStore, AuditStoreProvider, StoreContext } from "./contract.ts";
import { postgresStore } from "./postgres/index.ts";
import { sqliteStore } from "./sqlite/index.ts";

/**
 * The driver for a `--log-db` value: a file path is SQLite. A driver for a kind of URL is added
 * here (PostgreSQL: `postgres://` and `postgresql://`).
 */
export function storeFor(logDb: string): AuditStoreProvider {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(logDb)?.[1];
  if (scheme === undefined) return sqliteStore();
  if (/^postgres(ql)?$/i.test(scheme)) return postgresStore();
  return noDriver(scheme);
}

/**
 * The store `--log-db` names, chosen when it is opened: what `sqliteAudit()` without a path
 * provides, so a config that lists it (as `agent-attr init` writes them) follows a
 * `postgres://` --log-db like the default pipeline does.
 */
export function logDbStore(): AuditStoreProvider {
  return {
    problems: (ctx) => storeFor(ctx.logDb).problems?.(ctx) ?? [],
    open: (ctx) => storeFor(ctx.logDb).open(ctx),
    openAdmin: (ctx) => storeFor(ctx.logDb).openAdmin(ctx),
  };
}

export function openStoreFor(logDb: string, ctx: Omit<StoreContext, "logDb">): Promise<AuditStore> {
  return storeFor(logDb).open({ ...ctx, logDb });
}

export function openAdminFor(logDb: string, ctx: Omit<AdminContext, "logDb">): Promise<AuditAdmin> {
  return storeFor(logDb).openAdmin({ ...ctx, logDb });
}

/** The plugins that provide a primary store, by name (more than one is a config error). */
export function storeProviders(plugins: readonly Plugin[]): { plugin: string; provider: AuditStoreProvider }[] {
  return plugins.flatMap((plugin) => (plugin.auditStore ? [{ plugin: plugin.name, provider: plugin.auditStore }] : []));
}

/** The primary store of a pipeline: the first plugin's that provides one, else `--log-db`'s. */
export function primaryStore(plugins: readonly Plugin[], logDb: string): { source: string; provider: AuditStoreProvider } {
  const [provided] = storeProviders(plugins);
  return provided
    ? { source: `plugin ${provided.plugin}`, provider: provided.provider }
    : { source: "--log-db", provider: storeFor(logDb) };
}

/** A URL no driver serves: `problems` says so (the URL itself is not repeated: it may hold a password). */
function noDriver(scheme: string): AuditStoreProvider {
  const problem = `--log-db names a ${scheme}:// server, and this build has no audit store for ${scheme}://; give --log-db a file path (SQLite).`;
  const refuse = () => Promise.reject(new Error(problem));
  return { problems: () => [problem], open: refuse, openAdmin: refuse };
}
