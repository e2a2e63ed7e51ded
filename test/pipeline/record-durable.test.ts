// Stage 8 (record), at the other end of a call: its final record — usage and cost — is durable
// before the client has the whole answer, so a kill -9 right after can never turn a call the client
// saw finish into an `interrupted` one. Pricing is slow here, and the database locked, so the final
// record can only be in the intent log, and only if the answer waited for it.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { readSegment } from "../../src/store/sqlite/intent-recovery.ts";
import { columns } from "../../src/trail/row.ts";
import { definePlugin } from "../../src/plugin.ts";
import { anthropic, headerAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  const slowPrice = definePlugin({
    name: "slow-price",
    async price() {
      await Bun.sleep(300);
      return { cost_nano_usd: 4242, price_source: "test:slow" };
    },
  });
  proxy = await startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      anthropic({ baseURL: upstream.url }),
      headerAttribution(),
      slowPrice,
      sqliteAudit(),
    ],
  });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

/** The final record of a call as the intent log holds it right now (null if it holds none). */
function finalInIntentLog(logDb: string, id: string): Record<string, unknown> | null {
  const rows = readdirSync(dirname(logDb))
    .filter((name) => name.startsWith(`${basename(logDb)}.intents-`))
    .flatMap((name) => readSegment(readFileSync(join(dirname(logDb), name), "utf8")));
  const row = rows.find((r) => r[0] === id && r[columns.indexOf("outcome")] !== null);
  return row ? Object.fromEntries(columns.map((column, i) => [column, row[i]])) : null;
}

const cases = [
  { name: "a JSON answer", path: "/v1/chat/completions", body: { model: "gpt-4o", messages: [] }, scenario: "", input: 12 },
  {
    name: "a JSON answer sent in chunks",
    path: "/v1/chat/completions",
    body: { model: "gpt-4o", messages: [] },
    scenario: "chunked-json",
    input: 12,
  },
  {
    name: "an OpenAI stream",
    path: "/v1/chat/completions",
    body: { model: "gpt-4o", messages: [], stream: true },
    scenario: "",
    input: 12,
  },
  {
    name: "an Anthropic stream",
    path: "/v1/messages",
    body: { model: "claude-sonnet-4", max_tokens: 10, messages: [], stream: true },
    scenario: "",
    input: 18,
  },
];

for (const c of cases) {
  test(`${c.name}: the final record with usage and cost is durable when the client has the last byte`, async () => {
    const lock = new Database(proxy.logDb);
    // The writer may be committing the previous case's records (held back by its lock) right now: wait for it.
    lock.run("PRAGMA busy_timeout = 10000");
    lock.run("BEGIN IMMEDIATE"); // nothing commits: the final record can only be in the intent log
    try {
      const response = await fetch(`${proxy.url}${c.path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-agent-id": "durable",
          "x-fake-scenario": c.scenario,
          "anthropic-version": "2023-06-01",
        },
        body: JSON.stringify(c.body),
      });
      expect(response.status).toBe(200);
      await response.text(); // the whole answer, as a client that saw the call finish has it
      const final = finalInIntentLog(proxy.logDb, response.headers.get("x-audit-record-id")!);
      expect(final).toMatchObject({
        outcome: "completed",
        usage_source: "provider",
        input_tokens: c.input,
        cost_nano_usd: 4242,
        price_source: "test:slow",
      });
    } finally {
      lock.run("ROLLBACK");
      lock.close();
    }
  }, 15_000);
}
