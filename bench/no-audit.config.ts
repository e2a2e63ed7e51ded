/**
 * The bench's reference target "no audit": agent-attr's default pipeline (providers, header
 * attribution, pricing) with a primary store that keeps nothing — no intent log, no writer thread,
 * no SQLite insert (the audit API reads an empty log). Not a setup to run: by difference with the
 * real agent-attr it shows what the durable audit trail costs per call.
 */
import { defineConfig, definePlugin, sqliteStore, type AuditStore } from "agent-attr";
import { anthropic, headerAttribution, openai, pricing } from "agent-attr/plugins";

const sqlite = sqliteStore();

const discard = definePlugin({
  name: "bench-discard",
  auditStore: {
    async open(context): Promise<AuditStore> {
      const store = await sqlite.open(context);
      return {
        begin: () => Promise.resolve(),
        commit: () => {},
        onCommitted: (listener) => store.onCommitted(listener),
        reader: store.reader,
        trail: store.trail,
        keys: store.keys,
        consents: store.consents,
        hashKey: store.hashKey,
        recover: () => store.recover(),
        flush: () => store.flush(),
        close: () => store.close(),
      };
    },
    openAdmin: (context) => sqlite.openAdmin(context),
  },
});

export default defineConfig({ plugins: [openai(), anthropic(), headerAttribution(), pricing(), discard] });
