// GET /audit/verify on a tampered trail: 409 naming the first bad seq and the reason.
import { expect, test } from "bun:test";
import type { VerifyReport } from "../../src/trail/verify.ts";
import { proxyBeforeAll } from "../helpers/proxy.ts";
import { tamper } from "../helpers/records.ts";

const setup = proxyBeforeAll();

test("a record edited behind the proxy's back: 409 with the seq and reason", async () => {
  for (let i = 0; i < 3; i++) {
    const response = await fetch(`${setup.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bot", "x-user-id": `u${i}` },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    await response.arrayBuffer();
  }
  await setup.proxy.records();
  tamper(setup.proxy.logDb, "UPDATE audit_records SET input_tokens = 1 WHERE seq = 2");
  const response = await fetch(`${setup.proxy.url}/audit/verify`);
  expect(response.status).toBe(409);
  const report = (await response.json()) as VerifyReport;
  expect(report).toMatchObject({ ok: false, failure: { seq: 2, reason: "edited" } });
});
