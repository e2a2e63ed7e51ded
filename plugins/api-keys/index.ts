/**
 * `apiKeys()`: keys mode. Every call must carry a proxy API key (from `agent-attr keys create`)
 * where its SDK sends the provider key: `Authorization: Bearer` (OpenAI) or `x-api-key`
 * (Anthropic). The key fixes or restricts the agent and users the call may claim; the proxy then
 * calls the provider with its own key (OPENAI_API_KEY / ANTHROPIC_API_KEY or the provider's
 * `apiKey`), never with the client's.
 */
import { ProxyError, ProxyKeyStore, definePlugin, normalizeIdentifier, openPgKeys, storeKindFor, type Principal, type ProxyKey } from "agent-attr";
import { z } from "zod";
import { parseOptions, presentedCredential } from "../options.ts";

const optionsSchema = z
  .object({
    /** A claimed agent/user the key does not allow: "reject" (403) or "record" it beside the verified identity. */
    onMismatch: z.enum(["reject", "record"]).default("reject"),
    /** Database holding the keys. Default: the audit database (`--log-db`), where the CLI writes them. */
    path: z.string().min(1).optional(),
  })
  .strict();

const howToSend = "Send a proxy key (from 'agent-attr keys create') as your OpenAI or Anthropic API key.";

export function apiKeys(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("api-keys", optionsSchema, options);
  let store: ProxyKeyStore | null = null;
  /** Keys in PostgreSQL (`--log-db postgres://…`): shared by every replica, asked on every call. */
  let shared: Awaited<ReturnType<typeof openPgKeys>> | null = null;
  const find = async (presented: string): Promise<ProxyKey | null> => (shared ? shared.keys.find(presented) : store!.find(presented));
  return definePlugin({
    name: "api-keys",
    /** The keys database when it is not the audit database; `agent-attr keys` reads it from here. */
    keysPath: opts.path,
    async setup({ logDb }) {
      const where = opts.path ?? logDb;
      if (storeKindFor(where) === "postgres") shared = await openPgKeys(where);
      else store = new ProxyKeyStore(where);
    },
    async teardown() {
      store?.close();
      store = null;
      await shared?.close();
      shared = null;
    },
    async authenticate(ctx): Promise<Principal> {
      const presented = presentedCredential(ctx.request.headers);
      if (!presented) throw new ProxyError("unauthorized", `This proxy requires a proxy API key and the call carried none. ${howToSend}`);
      const key = await find(presented);
      if (!key) throw new ProxyError("unauthorized", `The API key sent is not a key of this proxy. ${howToSend}`);
      if (key.revoked_at) throw new ProxyError("unauthorized", `Proxy key ${key.id} was revoked at ${key.revoked_at}; ask for a new one.`);
      if (key.expires_at && Date.parse(key.expires_at) <= Date.now()) {
        throw new ProxyError("unauthorized", `Proxy key ${key.id} expired at ${key.expires_at}; ask for a new one.`);
      }
      // In NFC like the ids claimed against them (a key written by an older version may not be).
      const agents = key.agents.map(normalizeIdentifier);
      const single = agents.length === 1 && !agents[0]!.includes("*") ? agents[0]! : null;
      return {
        keyId: key.id,
        tier: key.tier ?? undefined,
        identity: single ? { agent_id: single } : undefined,
        agents: single ? undefined : agents,
        // A key made without --users acts for no user; --users '*' allows any.
        users: key.users?.map(normalizeIdentifier) ?? [],
        onMismatch: opts.onMismatch,
      };
    },
  });
}

