// Stage 10, observe: every plugin that observes is told of each ended call once — refused calls
// too — with its final record and finish reasons; one that throws is logged and changes nothing.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { definePlugin, type ObservedCall } from "../../src/index.ts";
import { headerAttribution, openai } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const seen: ObservedCall[] = [];
const errors: string[] = [];
let upstream: FakeUpstream;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(
    upstream.url,
    {
      plugins: [
        definePlugin({
          name: "throws",
          observe() {
            throw new Error("telemetry broke");
          },
        }),
        openai({ baseURL: `${upstream.url}/v1` }),
        headerAttribution(),
        definePlugin({ name: "watcher", observe: (call) => void seen.push(call) }),
      ],
    },
    { log: { info() {}, warn() {}, error: (m) => errors.push(m) } },
  );
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

test("each ended call once, after its record: answered, streamed and refused calls", async () => {
  const post = (body: unknown) =>
    fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bot" },
      body: JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, text: await r.text(), id: r.headers.get("x-audit-record-id") }));
  const plain = await post({ model: "gpt-4o", messages: [] });
  const streamed = await post({ model: "gpt-4o", messages: [], stream: true });
  const refused = await post({ messages: [] });
  expect([plain.status, streamed.status, refused.status]).toEqual([200, 200, 400]);
  expect(plain.text).toContain("Hello world");
  await proxy.records();
  expect(seen.map((c) => c.record.id as string | null)).toEqual([plain.id, streamed.id, refused.id]);
  const [first, second, third] = seen;
  expect(first!.record.outcome).toBe("completed");
  expect(first!.finishReasons).toEqual(["stop"]);
  expect(first!.ctx.attribution.agent_id).toBe("bot");
  expect(first!.tier).toBeNull();
  expect(second!.finishReasons).toEqual(["stop"]);
  expect(second!.record.stream).toBe(true);
  expect(third!.record.outcome).toBe("rejected");
  expect(third!.finishReasons).toEqual([]);
  expect(errors.filter((e) => e === "[plugin throws] observe: telemetry broke")).toHaveLength(3);
});
