// The OpenAI Agents SDK's Responses WebSocket transport (`useResponsesWebSocket: true`) pointed at
// the proxy: the agent runs (a plain answer and a streamed one) over one socket, each model call
// is its own completed record with the provider's usage, and nothing fell back to HTTP.
import { Agent, OpenAIProvider, Runner, setTracingDisabled } from "@openai/agents";
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI from "openai";
import { socketUsage, startFakeResponsesSocket, type FakeResponsesSocket } from "../helpers/fake-responses-socket.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeResponsesSocket;
let proxy: TestProxy;

beforeAll(async () => {
  setTracingDisabled(true);
  upstream = await startFakeResponsesSocket();
  proxy = await startTestProxy(upstream.url);
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

test("an agent runs over the proxy's WebSocket, each model call recorded with its usage", async () => {
  const client = new OpenAI({
    apiKey: "sk-agents-client",
    baseURL: `${proxy.url}/v1`,
    defaultHeaders: { "x-agent-id": "agents-sdk-bot", "x-user-id": "bob" },
  });
  const provider = new OpenAIProvider({ openAIClient: client, useResponsesWebSocket: true });
  const runner = new Runner({ modelProvider: provider });
  const agent = new Agent({ name: "greeter", instructions: "Greet briefly.", model: "gpt-5.5" });
  try {
    const first = await runner.run(agent, "Say hi");
    expect(first.finalOutput).toBe("Hello from the fake socket.");
    const streamed = await runner.run(agent, "Say hi again", { stream: true });
    let text = "";
    for await (const chunk of streamed.toTextStream()) text += chunk;
    await streamed.completed;
    expect(text).toBe("Hello from the fake socket.");
  } finally {
    await provider.close();
  }
  expect(upstream.httpCalls).toBe(0);
  expect(upstream.handshakes.length).toBe(1);
  expect(upstream.handshakes[0]!.headers.authorization).toBe("Bearer sk-agents-client");
  const records = await proxy.settled(2, 30_000);
  expect(records.map((r) => [r.endpoint, r.outcome, r.model, r.stream, r.usage_source])).toEqual([
    ["/v1/responses", "completed", "gpt-5.5", true, "provider"],
    ["/v1/responses", "completed", "gpt-5.5", true, "provider"],
  ]);
  for (const record of records) {
    expect(record).toMatchObject({
      agent_id: "agents-sdk-bot",
      user_id: "bob",
      input_tokens: socketUsage.input_tokens,
      output_tokens: socketUsage.output_tokens,
    });
  }
  expect(records.some((r) => r.outcome === "rejected")).toBe(false);
});
