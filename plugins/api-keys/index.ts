/**
 * `apiKeys()`: keys mode. Every call must carry a proxy API key (from `agent-attr keys create`)
 * where its SDK sends the provider key: `Authorization: Bearer` (OpenAI, and AWS Bedrock's bearer
 * `token`) or `x-api-key` (Anthropic). The key fixes or restricts the agent and users the call may claim; the proxy then
 * calls the provider with its own key (OPENAI_API_KEY / ANTHROPIC_API_KEY or the provider's
 * `apiKey`), never with the client's.
 */
import {
  ProxyError,
  definePlugin,
  normalizeIdentifier,
  parseOptions,
  presentedCredential,
  sqliteKeyStore,
  type Principal,
  type ProxyKeyStore,
} from "agent-attr";
import { z } from "zod";

const optionsSchema = z
  .object({
    /** A claimed agent/user the key does not allow: "reject" (403) or "record" it beside the verified identity. */
    onMismatch: z.enum(["reject", "record"]).default("reject"),
    /** A SQLite database of their own for the keys. Default: the primary store's keys (beside the trail), where the CLI writes them. */
    path: z.string().min(1).optional(),
  })
  .strict();

const howToSend =
  "Send a proxy key (from 'agent-attr keys create') as your OpenAI or Anthropic API key (AWS Bedrock: as the SDK's bearer `token`, not a SigV4 signature).";

export function apiKeys(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("api-keys", optionsSchema, options);
  let store: ProxyKeyStore | null = null;
  let own: (ProxyKeyStore & { close(): void }) | null = null;
  return definePlugin({
    name: "api-keys",
    /** Keys kept apart from the trail (`path`): `agent-attr keys` writes them there too. */
    ownKeys: opts.path === undefined ? undefined : { where: opts.path, open: () => sqliteKeyStore(opts.path!) },
    setup({ keys }) {
      own = opts.path === undefined ? null : sqliteKeyStore(opts.path);
      store = own ?? keys;
    },
    teardown() {
      own?.close();
      own = store = null;
    },
    async authenticate(ctx): Promise<Principal> {
      const presented = presentedCredential(ctx.request.headers);
      if (!presented) throw new ProxyError("unauthorized", `This proxy requires a proxy API key and the call carried none. ${howToSend}`);
      if (!store) throw new Error("the proxy keys are not open (setup has not run)");
      const key = await store.find(presented);
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
        tags: key.tags,
        onMismatch: opts.onMismatch,
      };
    },
  });
}
