// An upstream stream that breaks off mid-body: the client's connection is broken off too (as a
// direct call's would be), the record says what happened, and what the process prints about it
// holds no part of the upstream URL (a query string can carry a signature) and no stack trace.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { spawnProxy, type ProxyProcess } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: ProxyProcess;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await spawnProxy(["--log-db", join(tempDir(), "audit.db")], {
    env: { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`, OPENAI_API_KEY: "sk-test" },
  });
});
afterAll(async () => {
  proxy.child.kill("SIGKILL");
  await proxy.child.exited;
  await upstream.stop();
});

test("a stream the upstream breaks off: the client's breaks too, recorded upstream_error, nothing of the URL or a stack printed", async () => {
  const response = await fetch(`${proxy.url}/v1/chat/completions?sig=SECRET-SIG-42`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-fake-scenario": "break", "x-agent-id": "broken-stream" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], stream: true }),
  });
  expect(response.status).toBe(200);
  await expect(response.text()).rejects.toThrow();
  let record: { outcome: string } | undefined;
  for (let i = 0; i < 100 && !record; i++, await Bun.sleep(50)) {
    const page = (await (await fetch(`${proxy.url}/audit/records?agent=broken-stream`)).json()) as { records: { outcome: string }[] };
    record = page.records[0];
  }
  expect(record).toMatchObject({ outcome: "upstream_error" });
  await Bun.sleep(200);
  const printed = proxy.output();
  expect(printed).not.toContain("SECRET-SIG-42");
  expect(printed).not.toContain(upstream.url);
  expect(printed).not.toMatch(/^\s*at /m); // no stack frames
});
