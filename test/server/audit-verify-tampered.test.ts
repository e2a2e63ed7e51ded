// GET /audit/verify on a tampered trail, on both drivers: 409 naming the first bad seq and the reason.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { VerifyReport } from "../../src/trail/verify.ts";
import { postgresDriver, proxyOn, sqliteDriver, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("verify_409");
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("GET /audit/verify on $name", (driver: TestDriver) => {
  test("a record edited behind the proxy's back: 409 with the seq and reason", async () => {
    const trail = await driver.open("tampered");
    const proxy = await proxyOn(trail, upstream.url);
    try {
      for (let i = 0; i < 3; i++) {
        const response = await fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-agent-id": "bot", "x-user-id": `u${i}` },
          body: JSON.stringify({ model: "gpt-4o", messages: [] }),
        });
        await response.arrayBuffer();
      }
      await proxy.records();
      await trail.tamper("UPDATE audit_records SET input_tokens = 1 WHERE seq = 2");
      const response = await fetch(`${proxy.url}/audit/verify`);
      expect(response.status).toBe(409);
      const report = (await response.json()) as VerifyReport;
      expect(report).toMatchObject({ ok: false, failure: { seq: 2, reason: "edited" } });
    } finally {
      await proxy.stop();
    }
  });
});
