// The config's `audit.checkpoint` reaches the running proxy, on both drivers: checkpoints every N
// records, also appended to a file and POSTed to a webhook outside the database; verify reads that file.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Checkpoint } from "../../src/trail/checkpoint.ts";
import { checkpointPayload } from "../../src/trail/checkpoint.ts";
import { parsePublicKey, verifyBytes } from "../../src/trail/signing.ts";
import { postgresDriver, proxyOn, sqliteDriver, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/proxy.ts";

/** `n` chat calls one after the other, each recorded before the next. */
async function chatCalls(proxy: { url: string; records(): Promise<unknown> }, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bot" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    await response.arrayBuffer();
    await proxy.records();
  }
}

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("checkpoint_file");
});
afterAll(async () => {
  await pg.drop();
});

test.each([sqliteDriver, postgresDriver(() => pg)])(
  "on $name: checkpoints go to the configured file and webhook, signed with the key GET /audit/pubkey shows",
  async (driver: TestDriver) => {
    const received: Checkpoint[] = [];
    const hook = Bun.serve({
      port: 0,
      async fetch(request) {
        received.push((await request.json()) as Checkpoint);
        return new Response(null, { status: 204 });
      },
    });
    const upstream = await startFakeUpstream();
    const file = join(tempDir(), "checkpoints.ndjson");
    const proxy = await proxyOn(await driver.open("hook"), upstream.url, {
      audit: { checkpoint: { everyRecords: 2, everySeconds: 600, file, webhook: `http://127.0.0.1:${hook.port}/checkpoints` } },
    });
    try {
      await chatCalls(proxy, 2);
      for (let waited = 0; received.length === 0 && waited < 3000; waited += 20) await Bun.sleep(20);
      expect(received).toHaveLength(1);
      expect(received[0]).toMatchObject({ seq: 2 });
      const fromFile = readFileSync(file, "utf8")
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Checkpoint);
      expect(fromFile).toEqual(received);
      const key = parsePublicKey(await (await fetch(`${proxy.url}/audit/pubkey`)).text());
      expect(verifyBytes(key, checkpointPayload(received[0]!), received[0]!.signature)).toBe(true);
    } finally {
      await proxy.stop();
      await upstream.stop();
      await hook.stop();
    }
  },
);

test("a bad checkpoint setting is a config error naming its path", async () => {
  const { parseConfig } = await import("../../src/config/load.ts");
  expect(() => parseConfig({ audit: { checkpoint: { everyRecords: 0 } } })).toThrow("audit.checkpoint.everyRecords");
  expect(() => parseConfig({ audit: { checkpoint: { webhook: "not a url" } } })).toThrow("audit.checkpoint.webhook");
});

test.each([sqliteDriver, postgresDriver(() => pg)])(
  "on $name: GET /audit/verify checks the configured checkpoint file: checkpoints deleted from the database plus a truncated tail are caught",
  async (driver: TestDriver) => {
    const upstream = await startFakeUpstream();
    const file = join(tempDir(), "checkpoints.ndjson");
    const trail = await driver.open("file");
    const proxy = await proxyOn(trail, upstream.url, { audit: { checkpoint: { everyRecords: 3, everySeconds: 600, file } } });
    try {
      await chatCalls(proxy, 3);
      for (let waited = 0; !readFileSync(file, { flag: "a+" }).length && waited < 3000; waited += 20) await Bun.sleep(20);
      await trail.tamper("DELETE FROM audit_checkpoints");
      await trail.tamper("DELETE FROM audit_records WHERE seq = 3");
      const response = await fetch(`${proxy.url}/audit/verify`);
      expect(response.status).toBe(409);
      expect(((await response.json()) as { failure: unknown }).failure).toMatchObject({ seq: 3, reason: "truncated" });
    } finally {
      await proxy.stop();
      await upstream.stop();
    }
  },
);
