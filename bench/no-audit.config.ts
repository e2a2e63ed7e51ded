/**
 * The bench's reference target "no audit": agent-attr's default pipeline (providers, header
 * attribution, pricing) with a primary audit sink that keeps nothing — no intent log, no writer
 * thread, no SQLite insert (the audit API reads an empty log). Not a setup to run: by difference
 * with the real agent-attr it shows what the durable audit trail costs per call.
 */
import { defineConfig, definePlugin } from "agent-attr";
import { anthropic, headerAttribution, openai, pricing, sqliteAudit } from "agent-attr/plugins";

const emptyLog = sqliteAudit();

const discard = definePlugin({
  name: "bench-discard",
  setup: (context) => emptyLog.setup?.(context),
  teardown: () => emptyLog.teardown?.(),
  audit: {
    begin: () => Promise.resolve(),
    write: () => {},
    get reader() {
      return emptyLog.audit!.reader;
    },
  },
});

export default defineConfig({ plugins: [openai(), anthropic(), headerAttribution(), pricing(), discard] });
