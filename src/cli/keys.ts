/**
 * `agent-attr keys create|list|revoke`: proxy API keys, stored hashed. They go where the proxy
 * looks them up: the config's `apiKeys({ path })`, else the primary store the proxy uses (a
 * plugin's `auditStore`, else --log-db, AGENT_ATTR_LOG_DB, the config's audit.logDb, ./audit.db),
 * where creating and revoking are chain events (for `apiKeys({ path })` keys too, in the primary
 * trail) — the same config (--config, AGENT_ATTR_CONFIG, ./agent-attr.config.ts) as `proxy start`.
 */
import { defineCommand } from "citty";
import { existsSync } from "node:fs";
import { z } from "zod";
import { errorMessage } from "../errors.ts";
import { checkIdentifier } from "../identifiers.ts";
import type { ProxyKeyStore } from "../store/contract.ts";
import type { ProxyKey } from "../store/keys.ts";
import { tagFilter } from "../store/filters.ts";
import { flagValues } from "./filter-args.ts";
import { cliAuditSettings, openCliAdmin } from "./audit-settings.ts";
import { cliActor } from "./audit-trail.ts";
import { OwnKeysInTrail } from "./own-keys.ts";
import { cliLog, configArg, IoError, logDbArg, opening, parseFlag, UsageError } from "./_shared.ts";

const units: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** `90d`, `12h`, `30m`, `2w`, or an ISO 8601 date/time in the future. */
export function parseExpiry(value: string, now = new Date()): Date {
  const relative = /^(\d+)([mhdw])$/.exec(value.trim());
  const at = relative ? new Date(now.getTime() + Number(relative[1]) * units[relative[2]!]!) : new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new UsageError(`--expires: '${value}' is neither a duration (90d, 12h, 30m, 2w) nor an ISO 8601 date.`);
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
  .transform((value) =>
    value
      .split(",")
      .map((part) => part.trim())
      .filter(Boolean),
  )
  .pipe(z.array(idGlob).min(1, "give at least one ID or glob"));

const formatArg = { type: "enum" as const, options: ["text", "json"], default: "text", description: "Output format" };
const keysDbArg = {
  ...logDbArg,
  description: "Audit database holding the keys (default: as 'proxy start': AGENT_ATTR_LOG_DB, the config's audit.logDb, ./audit.db)",
};

/** What apiKeys({ path }) offers for keys kept apart from the trail. */
interface OwnKeys {
  where: string;
  open(): ProxyKeyStore & { close(): void };
}

/**
 * The keys the proxy running this config looks up: the SQLite database of `apiKeys({ path })`, else
 * the primary store's (beside the trail; creating and revoking are chain events there, in the same
 * transaction). `writes`: changes to `apiKeys({ path })` keys are recorded in the primary trail too
 * (./own-keys.ts). `checked`: whether the config's pipeline asks for keys at all (it has apiKeys()).
 */
async function openKeys(args: { config?: string; "log-db"?: string }, options: { create: boolean; writes: boolean }) {
  const settings = await cliAuditSettings({ logDb: args["log-db"], config: args.config });
  const plugin = settings.config.plugins?.find((p) => p.name === "api-keys");
  const checked = plugin !== undefined;
  const own = plugin && "ownKeys" in plugin ? (plugin.ownKeys as OwnKeys | undefined) : undefined;
  if (own) {
    if (!options.create && !existsSync(own.where))
      throw new IoError(`No keys database at ${own.where} (apiKeys({ path }) in the config); create a key first.`);
    const table = opening(`cannot open the keys database ${own.where}`, () => own.open());
    if (!options.writes) return { where: own.where, checked, keys: table, close: async () => table.close() };
    // Changes are chain events in the primary trail (./own-keys.ts), created if there is none yet.
    const admin = await openCliAdmin(settings, { create: true }).then(
      (handle) => ({ handle }),
      (error: unknown) => ({ error }),
    );
    const keys = new OwnKeysInTrail(table, admin, settings.logDb);
    return {
      where: own.where,
      checked,
      keys,
      close: async () => {
        table.close();
        await keys.close();
      },
    };
  }
  const admin = await openCliAdmin(settings, { create: options.create });
  return { where: settings.logDb, checked, keys: admin.keys, close: () => admin.close() };
}

const describeKey = (key: ProxyKey) =>
  [
    `agent ${key.agents.join(",")}`,
    `users ${key.users?.join(",") ?? "none"}`,
    `tier ${key.tier ?? "default"}`,
    Object.keys(key.tags).length > 0
      ? `tags ${Object.entries(key.tags)
          .map(([k, v]) => `${k}=${v}`)
          .join(",")}`
      : null,
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
    tag: { type: "string", description: "A tag the key fixes, KEY=VALUE (e.g. team=platform; repeat for several)" },
    expires: { type: "string", description: "Lifetime (90d, 12h, 2w) or an ISO 8601 date (default: never)" },
    format: formatArg,
    "log-db": keysDbArg,
    config: configArg,
  },
  async run({ args, rawArgs }) {
    const agents = parseFlag("agent", globList, args.agent);
    const users = args.users === undefined ? null : parseFlag("users", globList, args.users);
    const tier = args.tier === undefined ? null : parseFlag("tier", z.string().min(1).max(64), args.tier);
    const expiresAt = args.expires === undefined ? null : parseExpiry(args.expires);
    const tags = args.tag === undefined ? undefined : parseFlag("tag", tagFilter, flagValues(rawArgs, "tag"));
    const opened = await openKeys(args, { create: true, writes: true });
    try {
      const request = { agents, users, tier, tags, expires_at: expiresAt?.toISOString() ?? null };
      const { key, record } = await opened.keys.create(request, cliActor());
      if (!opened.checked) {
        cliLog().warn("the config has no apiKeys() plugin: the proxy does not ask for keys until you add apiKeys() to its plugins");
      }
      if (args.format === "json") {
        process.stdout.write(`${JSON.stringify({ ...record, key }, null, 2)}\n`);
        return;
      }
      process.stdout.write(`Created ${record.id}  ${describeKey(record)}\n${key}\n`);
      process.stderr.write(
        `This key is shown once: store it now. Clients send it as their OpenAI or Anthropic API key. (Stored in ${opened.where}.)\n`,
      );
    } finally {
      await opened.close();
    }
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List proxy API keys (never their secrets)" },
  args: { format: formatArg, "log-db": keysDbArg, config: configArg },
  async run({ args }) {
    const opened = await openKeys(args, { create: false, writes: false });
    try {
      const keys = await opened.keys.list();
      if (args.format === "json") process.stdout.write(`${JSON.stringify({ keys }, null, 2)}\n`);
      else if (keys.length === 0) process.stdout.write("No proxy keys. Create one with 'agent-attr keys create --agent ID'.\n");
      else process.stdout.write(keys.map((key) => `${key.id}  ${describeKey(key)}\n`).join(""));
    } finally {
      await opened.close();
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
    const opened = await openKeys(args, { create: false, writes: true });
    try {
      const key = await opened.keys.revoke(args.id, cliActor());
      if (!key) throw new UsageError(`No proxy key has id '${args.id}' in ${opened.where}; 'agent-attr keys list' shows them.`);
      process.stdout.write(`Revoked ${key.id} (${key.revoked_at})\n`);
    } finally {
      await opened.close();
    }
  },
});

export const keysCommand = defineCommand({
  meta: { name: "keys", description: "Manage proxy API keys" },
  subCommands: { create, list, revoke },
});
