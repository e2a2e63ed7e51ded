/**
 * `agent-attr keys create|list|revoke`: proxy API keys, stored hashed. They go where the proxy
 * looks them up: the config's `apiKeys({ path })`, else the audit database the proxy uses
 * (--log-db, AGENT_ATTR_LOG_DB, the config's audit.logDb, ./audit.db) — the same config
 * (--config, AGENT_ATTR_CONFIG, ./agent-attr.config.ts) as `proxy start`.
 */
import { defineCommand } from "citty";
import { z } from "zod";
import { errorMessage } from "../errors.ts";
import { checkIdentifier } from "../identifiers.ts";
import type { Config } from "../config/schema.ts";
import { ProxyKeyStore } from "../store/sqlite/keys.ts";
import { storeKindFor } from "../store/open.ts";
import { openPgKeys } from "../store/postgres/index.ts";
import { cliActor } from "./audit-trail.ts";
import { type NewProxyKey, type ProxyKey } from "../store/keys.ts";
import { cliLog, configArg, configuredSettings, logDbArg, opening, parseFlag, requireExistingDb, resolveLogDb, UsageError } from "./_shared.ts";

const units: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `90d`, `12h`, `30m`, `2w`, or an ISO 8601 date/time in the future. */
export function parseExpiry(value: string, now = new Date()): Date {
  const relative = /^(\d+)([mhdw])$/.exec(value.trim());
  const at = relative ? new Date(now.getTime() + Number(relative[1]) * units[relative[2]!]!) : new Date(value);
  if (Number.isNaN(at.getTime())) throw new UsageError(`--expires: '${value}' is neither a duration (90d, 12h, 30m, 2w) nor an ISO 8601 date.`);
  if (at.getTime() <= now.getTime()) throw new UsageError(`--expires: ${at.toISOString()} is not in the future.`);
  return at;
}

/** One ID or glob, held to the identifier rules of the ids claimed against it (NFC, nothing invisible). */
const idGlob = z.string().transform((glob, ctx) => {
  try {
    return checkIdentifier(glob, { where: JSON.stringify(glob), max: 256 })!;
  } catch (error) {
    ctx.addIssue({ code: "custom", message: errorMessage(error) });
    return z.NEVER;
  }
});

const globList = z
  .string()
  .transform((value) => value.split(",").map((part) => part.trim()).filter(Boolean))
  .pipe(z.array(idGlob).min(1, "give at least one ID or glob"));

const formatArg = { type: "enum" as const, options: ["text", "json"], default: "text", description: "Output format" };
const keysDbArg = { ...logDbArg, description: "Audit database holding the keys (default: as 'proxy start': AGENT_ATTR_LOG_DB, the config's audit.logDb, ./audit.db)" };

interface KeysDatabase {
  path: string;
  /** Whether the config's pipeline checks proxy keys at all (it has apiKeys()). */
  checked: boolean;
}

/** Where the proxy running this config looks keys up. */
function keysDatabase(config: Config, logDbFlag: string | undefined): KeysDatabase {
  const plugin = config.plugins?.find((p) => p.name === "api-keys");
  const own = plugin && "keysPath" in plugin && typeof plugin.keysPath === "string" ? plugin.keysPath : undefined;
  return { path: own ?? resolveLogDb(logDbFlag, config.audit.logDb), checked: plugin !== undefined };
}

/** The keys, in SQLite or (a postgres:// URL) in PostgreSQL, where changes are chain events naming the CLI's user. */
interface CliKeys {
  create(options: NewProxyKey): Promise<{ key: string; record: ProxyKey }>;
  list(): Promise<ProxyKey[]>;
  revoke(id: string): Promise<ProxyKey | null>;
  close(): Promise<void>;
}

async function openKeys(args: { config?: string; "log-db"?: string }, options: { mustExist: boolean }): Promise<{ where: KeysDatabase; store: CliKeys }> {
  const { config } = await configuredSettings(args.config);
  const where = keysDatabase(config, args["log-db"]);
  if (storeKindFor(where.path) === "postgres") {
    const { keys, close } = await opening(`cannot open the keys database`, () => openPgKeys(where.path));
    const actor = cliActor();
    return {
      where,
      store: {
        create: (o) => keys.create({ agents: o.agents, users: o.users ?? null, tier: o.tier ?? null, expires_at: o.expiresAt?.toISOString() ?? null }, actor),
        list: () => keys.list(),
        revoke: (id) => keys.revoke(id, actor),
        close,
      },
    };
  }
  if (options.mustExist) requireExistingDb(where.path);
  const local = opening(`cannot open the keys database ${where.path}`, () => new ProxyKeyStore(where.path));
  return {
    where,
    store: {
      create: async (o) => local.create(o),
      list: async () => local.list(),
      revoke: async (id) => local.revoke(id),
      close: async () => local.close(),
    },
  };
}

const describeKey = (key: ProxyKey) =>
  [
    `agent ${key.agents.join(",")}`,
    `users ${key.users?.join(",") ?? "none"}`,
    `tier ${key.tier ?? "default"}`,
    `expires ${key.expires_at ?? "never"}`,
    key.revoked_at ? `REVOKED ${key.revoked_at}` : null,
  ]
    .filter(Boolean)
    .join("  ");

const create = defineCommand({
  meta: { name: "create", description: "Create a proxy API key (printed once; only its hash is stored)" },
  args: {
    agent: { type: "string", required: true, description: "Agent ID the key acts as (or comma-separated globs it may act as)" },
    users: { type: "string", description: "Comma-separated user-ID globs the key may act for; '*' for any (default: none)" },
    tier: { type: "string", description: "Rate-limit tier of calls made with this key" },
    expires: { type: "string", description: "Lifetime (90d, 12h, 2w) or an ISO 8601 date (default: never)" },
    format: formatArg,
    "log-db": keysDbArg,
    config: configArg,
  },
  async run({ args }) {
    const agents = parseFlag("agent", globList, args.agent);
    const users = args.users === undefined ? null : parseFlag("users", globList, args.users);
    const tier = args.tier === undefined ? null : parseFlag("tier", z.string().min(1).max(64), args.tier);
    const expiresAt = args.expires === undefined ? null : parseExpiry(args.expires);
    const { where, store } = await openKeys(args, { mustExist: false });
    try {
      const { key, record } = await store.create({ agents, users, tier, expiresAt });
      if (!where.checked) {
        cliLog().warn("the config has no apiKeys() plugin: the proxy does not ask for keys until you add apiKeys() to its plugins");
      }
      if (args.format === "json") {
        process.stdout.write(`${JSON.stringify({ ...record, key }, null, 2)}\n`);
        return;
      }
      process.stdout.write(`Created ${record.id}  ${describeKey(record)}\n${key}\n`);
      process.stderr.write(`This key is shown once: store it now. Clients send it as their OpenAI or Anthropic API key. (Stored in ${storeKindFor(where.path) === "postgres" ? "the PostgreSQL trail" : where.path}.)\n`);
    } finally {
      await store.close();
    }
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List proxy API keys (never their secrets)" },
  args: { format: formatArg, "log-db": keysDbArg, config: configArg },
  async run({ args }) {
    const { store } = await openKeys(args, { mustExist: true });
    try {
      const keys = await store.list();
      if (args.format === "json") process.stdout.write(`${JSON.stringify({ keys }, null, 2)}\n`);
      else if (keys.length === 0) process.stdout.write("No proxy keys. Create one with 'agent-attr keys create --agent ID'.\n");
      else process.stdout.write(keys.map((key) => `${key.id}  ${describeKey(key)}\n`).join(""));
    } finally {
      await store.close();
    }
  },
});

const revoke = defineCommand({
  meta: { name: "revoke", description: "Revoke a proxy API key; a running proxy refuses it from the next call" },
  args: {
    id: { type: "positional", required: true, description: "Key id (key_...), as shown by keys list" },
    "log-db": keysDbArg,
    config: configArg,
  },
  async run({ args }) {
    const { store, where } = await openKeys(args, { mustExist: true });
    try {
      const key = await store.revoke(args.id);
      if (!key) throw new UsageError(`No proxy key has id '${args.id}' in ${storeKindFor(where.path) === "postgres" ? "the PostgreSQL trail" : where.path}; 'agent-attr keys list' shows them.`);
      process.stdout.write(`Revoked ${key.id} (${key.revoked_at})\n`);
    } finally {
      await store.close();
    }
  },
});

export const keysCommand = defineCommand({
  meta: { name: "keys", description: "Manage proxy API keys" },
  subCommands: { create, list, revoke },
});
